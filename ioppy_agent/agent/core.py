"""
L{AgentCore}: what the agent does with each packet and each message,
without doing it.

Given a packet read from the TUN, or a message consumed from the bus, it
returns an action of L{ioppy_agent.actions}: forward this packet under
these routing keys, write this packet into the TUN, drop it for this
reason, change the addresses, announce again.  L{AgentService} carries the
actions out.  No I/O, no reactor: the clock is only read for the time
stamp of each packet.
"""

from .. import wire
from ..actions import Drop, Forward, Publish, Readdress, Refuse, WriteToTun
from ..addressing import BadAddress, make_addresses


class AgentCore:
    """
    The decisions of agent C{name}.

    @ivar addresses: The interface's current L{TunAddresses}.
    @ivar queue: The name of the agent's own queue.
    """

    def __init__(self, name, addresses, clock, mtu=1500, wire_format="json",
                 interface_name="tun0"):
        """
        @param clock: Its C{seconds()} stamps each packet published as JSON.
        @param wire_format: C{"json"} (ioppytest's) or C{"raw"}: how packets
            read from the TUN are published.  Both are read.
        """
        self.name = name
        self.addresses = addresses
        self.mtu = mtu
        self.queue = f"ioppy.agent.{name}"
        self._clock = clock
        self._raw = wire_format == "raw"
        self._interface_name = interface_name
        self._key_out = wire.packet_from(name)
        self._key_in = wire.packet_to(name)
        self._key_start = wire.tun_start(name)

    def bindings(self):
        """
        @return: The routing keys the agent's queue is bound to.
        """
        return (self._key_in, self._key_start, wire.COMPONENT_READY)

    def announcements(self):
        """
        @return: The messages to publish on each new connection: the
            agent's addresses, and that it is ready.
        """
        return (wire.started(self.name, self.addresses), wire.component_ready(self.name))

    def farewell(self):
        """
        @return: The messages to publish before disconnecting.
        """
        return (wire.component_shutdown(self.name),)

    def from_tun(self, packet):
        """
        @return: What to do with a packet the host sent into the TUN: a
            L{Forward} to the agent's own packet key.
        """
        if self._raw:
            message = wire.Message(self._key_out, packet, wire.RAW)
        else:
            message = wire.Message(self._key_out, wire.encode_packet(
                packet, self._clock.seconds(), self._interface_name), wire.JSON)
        return Forward((message,), len(packet), packet)

    def from_bus(self, routing_key, body, content_type):
        """
        @return: What to do with a message consumed from the agent's queue,
            or C{None} for nothing.
        """
        if routing_key == self._key_in:
            return self._packet(routing_key, body, content_type)
        if routing_key == self._key_start:
            return self._tun_start(body)
        if routing_key == wire.COMPONENT_READY:
            return self._component_ready(body)
        return Drop("unexpected routing key", f"dropped a message on {routing_key}: the "
                                              "agent's queue is not bound to that key")

    def _packet(self, routing_key, body, content_type):
        try:
            packet = wire.packet_of(body, content_type)
        except wire.UnknownContentType as e:
            return Drop("unknown content type", f"dropped a message on {routing_key}: {e}")
        except wire.BadMessage as e:
            return Drop("bad message", f"dropped a message on {routing_key}: {e}")
        if packet[0] >> 4 not in (4, 6):
            return Drop("not IP", f"dropped a message on {routing_key}: its data is not an "
                                  "IPv4 or IPv6 packet")
        if len(packet) > self.mtu:
            return Drop("larger than MTU", f"dropped a {len(packet)}-byte packet: larger "
                                           f"than the MTU {self.mtu}")
        return WriteToTun(packet)

    def _tun_start(self, body):
        try:
            return Readdress(make_addresses(*wire.tun_start_addresses(body)))
        except (wire.BadMessage, BadAddress) as e:
            return Refuse(f"cannot apply tun.start: {e}")

    def _component_ready(self, body):
        """
        When the packet router announces itself, announce this agent again,
        so that a router started after the agents learns them at once.
        """
        try:
            component = wire.component_of(body)
        except wire.BadMessage:
            return None
        if component == wire.ROUTER_NAME:
            return Publish((wire.started(self.name, self.addresses),))
        return None

    def readdressed(self, addresses):
        """
        The interface now has C{addresses}.

        @return: The announcement of them.
        """
        self.addresses = addresses
        return Publish((wire.started(self.name, addresses),))
