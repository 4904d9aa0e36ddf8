"""
What the cores decide, for the services to carry out.

L{ioppy_agent.agent.core.AgentCore} and
L{ioppy_agent.router.core.PacketRouter} do no I/O: given a packet or a
message they return one of these, and the service (L{AgentService},
L{RouterService}) writes, publishes, counts and logs accordingly.
"""

from typing import NamedTuple, Optional, Tuple

from .addressing import TunAddresses


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
    Drop the input, counted under C{reason}; C{detail}, if any, is a
    warning worth logging (rate-limited), as text.
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
