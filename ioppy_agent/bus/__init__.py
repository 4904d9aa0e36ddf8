"""
The AMQP bus: everything between the programs and RabbitMQ.

One module per concern, each used by the next:

  - L{errors}: the error types, and AMQP's reply codes;
  - L{framing}: frames as bytes, packing and field tables (pure);
  - L{reader}: the broker's bytes in, methods and deliveries out (pure);
  - L{content}: L{Delivery}, assembled from its three frames (pure);
  - L{conversation}: which of the broker's methods may come now (pure);
  - L{spec}: the AMQP spec file, and the txamqp internals relied on;
  - L{delegate}: txamqp's delegate and channel, as the protocol uses them;
  - L{protocol}: the txamqp protocol, with the reader on its data path;
  - L{replies}: the reply code and text of a request the broker refused;
  - L{session}: declaring, consuming, publishing, closing on one channel;
  - L{streams}: where a reader of a stream starts (the router's look at
    the record);
  - L{login}: the login and the first channel, and each way they fail;
  - L{url}: AMQP URLs, and their masked form for logs;
  - L{endpoint}: the broker's address (DNS without threads) and TLS;
  - L{tls}: the TLS settings from the command line;
  - L{config}: L{BusConfig}, the settings every program shares;
  - L{connector}: L{BusConnector}, which keeps a session open.
"""

from .config import DEFAULT_EXCHANGE, DEFAULT_HEARTBEAT, BusConfig
from .connector import BusConnector, State
from .errors import (AccessRefused, BusError, ExchangeMissing, FatalBusError, LoginRefused,
                     NotFound, ProtocolViolation, QueueHeld, QueueLocked, QueueMismatch,
                     StreamMismatch, TLSFailed)
from .session import DEFAULT_QUEUE_LIMIT, BusSession

__all__ = ["DEFAULT_EXCHANGE", "DEFAULT_HEARTBEAT", "DEFAULT_QUEUE_LIMIT", "AccessRefused",
           "BusConfig", "BusConnector", "BusError", "BusSession", "ExchangeMissing",
           "FatalBusError", "LoginRefused", "NotFound", "ProtocolViolation", "QueueHeld",
           "QueueLocked", "QueueMismatch", "State", "StreamMismatch", "TLSFailed"]
