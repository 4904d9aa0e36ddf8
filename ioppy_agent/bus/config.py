"""
How to reach the bus: the settings both programs share.
"""

from dataclasses import dataclass
from typing import Optional, Tuple

from .tls import TLSSettings
from .url import BrokerURL

DEFAULT_EXCHANGE = "amq.topic"
DEFAULT_HEARTBEAT = 10
# Deliveries a consumer may hold unacknowledged: the broker then keeps what
# a stalled receiver has not taken in its queue, where the queue's length
# limit bounds it.
DEFAULT_PREFETCH = 1024


@dataclass(frozen=True)
class BusConfig:
    """
    The brokers to connect to and how, already validated.

    @ivar urls: One L{BrokerURL} per broker (the nodes of a cluster); the
        first is tried first, and each failure moves on to the next.
    @ivar exchange: The topic exchange to publish and bind on.
    @ivar tls: What to trust and present for C{amqps://} URLs (the system's
        CAs if C{None}).
    @ivar heartbeat: The AMQP heartbeat in seconds; 0 for none.
    @ivar prefetch: Deliveries the programs' consumers may hold
        unacknowledged; 0 to consume without acknowledgements.
    """

    urls: Tuple[BrokerURL, ...]
    exchange: str = DEFAULT_EXCHANGE
    tls: Optional[TLSSettings] = None
    heartbeat: int = DEFAULT_HEARTBEAT
    prefetch: int = DEFAULT_PREFETCH

    def __post_init__(self):
        if not self.urls:
            raise ValueError("a bus configuration needs at least one broker URL")

    @property
    def url(self):
        """
        @return: The first broker's URL.
        """
        return self.urls[0]
