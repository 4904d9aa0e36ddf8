"""
What the cores decide, for the services to carry out.

L{ioppy_agent.agent.core.AgentCore} and
L{ioppy_agent.router.core.PacketRouter} do no I/O: given a packet or a
message they return one of these, and the service (L{AgentService},
L{RouterService}) writes, publishes, counts and logs accordingly.
"""

import enum
from typing import NamedTuple, Optional, Tuple

from .addressing import TunAddresses


class DropReason(enum.Enum):
    """
    Every reason the programs drop a packet or a message for: a closed set,
    so that the counters, the status file and the metrics' C{reason} labels
    stay bounded whatever arrives.  The values are what the log, the status
    file and the metrics say.
    """

    NOT_IP = "not IP"
    LARGER_THAN_MTU = "larger than MTU"
    TOO_LARGE = "too large"
    BAD_MESSAGE = "bad message"
    UNKNOWN_CONTENT_TYPE = "unknown content type"
    UNEXPECTED_ROUTING_KEY = "unexpected routing key"
    NO_ROUTE = "no route"
    NO_PEER = "no peer"
    UNKNOWN_SENDER = "unknown sender"
    SOURCE_NOT_SENDERS = "source not sender's"
    SOURCE_OF_NO_PEER = "source of no peer"
    SOURCE_NOT_OURS = "source not ours"
    SOURCE_IS_OURS = "source is ours"
    NOT_AN_AGENT = "not an agent"
    TOO_MANY_AGENTS = "too many agents"
    NOT_ALLOWED = "not allowed"
    LOSSY_LINK = "lossy link"
    TUN_WRITE = "tun write"
    # A publish the session refused (BusSession.refusal).
    NOT_CONNECTED = "not connected"
    BROKER_BLOCKED = "broker blocked"
    SEND_BUFFER_FULL = "send buffer full"
    # Anything else: an agent's report naming a reason of its own.
    OTHER = "other"


DROP_REASONS = frozenset(reason.value for reason in DropReason)


def drop_reason(text):
    """
    @param text: A L{DropReason}, or its value.
    @return: The value of C{text} if it is one of L{DropReason}'s, else
        C{"other"}.
    """
    if isinstance(text, DropReason):
        return text.value
    return text if text in DROP_REASONS else DropReason.OTHER.value


class Forward(NamedTuple):
    """
    Publish C{messages}, which carry one packet.

    @ivar size: The bytes to count for it (the packet's, or for a router,
        which does not decode packets, the body's).
    @ivar packet: The packet itself, for a capture; C{None} if it was not
        decoded.
    """

    messages: Tuple
    size: int
    packet: Optional[bytes] = None


class Reroute(NamedTuple):
    """
    New routes from the router: say they are taken, and route C{add_routes}
    (prefixes behind other agents' hosts) into the TUN, no longer
    C{remove_routes}.
    """

    add_routes: Tuple
    remove_routes: Tuple
    summary: str


class Publish(NamedTuple):
    """
    Publish these control C{messages}.
    """

    messages: Tuple


class WriteToTun(NamedTuple):
    """
    Write C{packet} into the TUN interface.
    """

    packet: bytes


class Drop(NamedTuple):
    """
    Drop the input, counted under C{reason} (a L{DropReason} value);
    C{detail}, if any, is a warning worth logging (rate-limited), as text.
    """

    reason: str
    detail: Optional[str] = None


class Readdress(NamedTuple):
    """
    Give the TUN interface these C{addresses}, then announce them.
    """

    addresses: TunAddresses


class Refuse(NamedTuple):
    """
    A control message that cannot be applied: log C{detail} as an error;
    nothing changes.
    """

    detail: str
