"""
L{AgentCore}: what the agent does with each packet and each message,
without doing it.

Given a packet read from the TUN, or a message consumed from the bus, it
returns an action of L{ioppy_agent.actions}: forward this packet under
this routing key, write this packet into the TUN, drop it for this reason,
change the addresses, take new routes, announce again.  L{AgentService}
carries the actions out.  No I/O, no reactor: the clock is only read for
the time stamp of each packet.

Until an ioppy-router sends it routes, the agent works as the original
ioppytest agent does: every packet goes to C{fromAgent.<name>.ip.tun.packet.raw}
for a router to forward.  With routes, each packet goes straight to the
queue of the agent that owns its destination
(C{fromAgent.<name>.ip.tun.packet.to.<owner>}), multicast to every peer
that binds it (C{fromAgent.<name>.ip.tun.packet.all}), or, when an original
agent is among its receivers, to the router as before; a packet whose
source is not this agent's, or whose destination nobody owns, is dropped.
A packet that comes straight from another agent is written into the TUN
only if its source is one of that agent's addresses.
"""

import ipaddress

from .. import control, wire
from ..actions import Drop, Forward, Publish, Readdress, Refuse, Reroute, WriteToTun
from ..addressing import BadAddress, make_addresses
from ..routes import (DIRECT, ROUTER, Directory, addresses_of, is_group, network,
                      source_allowed)

_DIRECT_WORDS = ("ip", "tun", "packet")


def _shown(address):
    return str(ipaddress.ip_address(address))


class AgentCore:
    """
    The decisions of agent C{name}.

    @ivar addresses: The interface's current L{TunAddresses}.
    @ivar prefixes: The prefixes routed behind this agent's host.
    @ivar queue: The name of the agent's own queue.
    @ivar routes: The L{ioppy_agent.routes.Routes} from the router, or
        C{None} until it sends some.
    """

    def __init__(self, name, addresses, clock, mtu=1500, wire_format="json",
                 interface_name="tun0", prefixes=()):
        """
        @param clock: Its C{seconds()} stamps each packet published as JSON.
        @param wire_format: C{"json"} (ioppytest's) or C{"raw"}: how packets
            read from the TUN are published.  Both are read.
        @param prefixes: L{ipaddress} networks routed behind this host.
        """
        self.name = name
        self.mtu = mtu
        self.queue = f"ioppy.agent.{name}"
        self.prefixes = tuple(prefixes)
        self.routes = None
        self._clock = clock
        self._raw = wire_format == "raw"
        self._interface_name = interface_name
        self._key_out = wire.packet_from(name)
        self._key_in = wire.packet_to(name)
        self._key_start = wire.tun_start(name)
        self._key_routes = wire.routes_key(name)
        self._paths = {}
        self._group = None
        self._table = Directory()
        self._heard = Directory()
        self._own_addresses(addresses)

    def _own_addresses(self, addresses):
        self.addresses = addresses
        self._own = Directory([(self.name, [*addresses.all(), *self.prefixes])])
        subnet = addresses.ipv4.network
        self._broadcast = subnet.broadcast_address.packed if subnet.prefixlen < 31 else None

    def bindings(self):
        """
        @return: The routing keys the agent's queue is bound to.
        """
        keys = (self._key_in, self._key_start, self._key_routes, wire.COMPONENT_READY)
        return keys + (self.routes.bindings if self.routes is not None else ())

    def announcements(self):
        """
        @return: The messages to publish on each new connection: the
            agent's addresses, and that it is ready.
        """
        return (self._started(), control.component_ready(self.name))

    def _started(self):
        return control.started(self.name, self.addresses, self.prefixes)

    def bound(self):
        """
        @return: The message saying the queue is bound as the current routes
            ask, or C{None} without routes.
        """
        return control.bound(self.name, self.routes) if self.routes is not None else None

    def farewell(self):
        """
        @return: The messages to publish before disconnecting.
        """
        return (control.component_shutdown(self.name),)

    # From the TUN.

    def from_tun(self, packet):
        """
        @return: What to do with a packet the host sent into the TUN: a
            L{Forward} under the key that takes it where it goes, or a
            L{Drop}.
        """
        key = self._key_out
        if self.routes is not None and self.routes.mode == DIRECT:
            key = self._route(packet)
            if type(key) is Drop:
                return key
        if self._raw:
            # The raw body is the packet alone: the time it entered the bus
            # goes in a header, for the session recorder.
            message = wire.Message(key, packet, wire.RAW, self._clock.seconds())
        else:
            body = wire.encode_packet(packet, self._clock.seconds(), self._interface_name)
            message = wire.Message(key, body, wire.JSON)
        return Forward((message,), len(packet), packet)

    def _route(self, packet):
        """
        @return: The routing key for C{packet} under the routes, or a L{Drop}.
        """
        found = addresses_of(packet)
        if found is None:
            return Drop("not IP", "dropped a packet from the TUN: too short for an IP header")
        version, source, destination = found
        if not source_allowed(self._own, self.name, packet, version, source):
            return Drop("source not ours", f"dropped a packet from {_shown(source)}: not one "
                                           "of this agent's addresses or routed prefixes")
        if is_group(version, destination) or (version == 4 and destination == self._broadcast):
            if self._group is None:
                return Drop("no peer")
            return self._group
        # A destination the routes do not name goes to the router, which
        # may know of an agent that joined since, and drops it otherwise.
        return self._paths.get(self._table.owner(version, destination), self._key_out)

    # From the bus.

    def from_bus(self, routing_key, body, content_type):
        """
        @return: What to do with a message consumed from the agent's queue,
            or C{None} for nothing.
        """
        if routing_key == self._key_in:
            return self._packet(routing_key, body, content_type)
        sender = wire.direct_sender(routing_key)
        if sender is not None:
            return self._direct(sender, routing_key, body, content_type)
        if routing_key == self._key_routes:
            return self._new_routes(body)
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

    def _direct(self, sender, routing_key, body, content_type):
        """
        A packet straight from agent C{sender}: written only if its source is
        one of the sender's addresses.
        """
        if sender == self.name:
            return None
        if self.routes is None or sender not in self.routes.senders:
            return Drop("unknown sender", f"dropped a packet from {sender}: the router has "
                                          "not named it as a peer")
        action = self._packet(routing_key, body, content_type)
        if type(action) is not WriteToTun:
            return action
        packet = action.packet
        found = addresses_of(packet)
        if found is None:
            return Drop("not IP", f"dropped a packet from {sender}: too short for an IP header")
        version, source, _ = found
        if not source_allowed(self._heard, sender, packet, version, source):
            return Drop("source not sender's", f"dropped a packet from {sender}: its source "
                                               f"{_shown(source)} is not one of {sender}'s "
                                               "addresses")
        return action

    def _binding_allowed(self, key):
        """
        @return: Whether C{key} is a packet binding this agent may make: the
            packets of one sender or all (C{*}) for this agent or, as an
            observer, for all.
        """
        words = key.split(".")
        if len(words) == 7 and words[0] == "fromAgent" and tuple(words[2:5]) == _DIRECT_WORDS:
            return words[5] == "to" and words[6] in (self.name, "*") and words[1] != ""
        return (len(words) == 6 and words[0] == "fromAgent" and words[1] != ""
                and tuple(words[2:5]) == _DIRECT_WORDS and words[5] == "all")

    def _new_routes(self, body):
        try:
            routes = control.routes_of(body, self._binding_allowed)
        except wire.BadMessage as e:
            return Refuse(f"cannot apply the router's routes: {e}")
        old = self.routes
        old_bindings = old.bindings if old is not None else ()
        old_remote = self._remote_prefixes(old)
        self.routes = routes
        self._table = Directory((name, peer.addresses)
                                for name, peer in routes.destinations.items())
        self._heard = Directory(routes.senders.items())
        self._paths = {name: (wire.packet_direct(self.name, name) if peer.path == DIRECT
                              else self._key_out)
                       for name, peer in routes.destinations.items()}
        self._group = {DIRECT: wire.packet_group(self.name),
                       ROUTER: self._key_out}.get(routes.multicast)
        remote = self._remote_prefixes(routes)
        direct = sum(1 for p in routes.destinations.values() if p.path == DIRECT)
        return Reroute(
            tuple(k for k in routes.bindings if k not in old_bindings),
            tuple(k for k in old_bindings if k not in routes.bindings),
            tuple(n for n in remote if n not in old_remote),
            tuple(n for n in old_remote if n not in remote),
            f"{len(routes.destinations)} destinations ({direct} direct), multicast "
            f"{routes.multicast}, mode {routes.mode} (router {routes.router}, serial "
            f"{routes.serial})")

    def _remote_prefixes(self, routes):
        """
        @return: The networks of other agents that the TUN's own subnets do
            not hold: the host must route them into the TUN.
        """
        if routes is None:
            return ()
        own = self.addresses.all()
        found = []
        for peer in routes.destinations.values():
            for text in peer.addresses:
                net = network(text)
                if not any(net.version == mine.version and net.subnet_of(mine.network)
                           for mine in own):
                    found.append(net)
        return tuple(sorted(set(found), key=lambda n: (n.version, str(n))))

    def _tun_start(self, body):
        try:
            return Readdress(make_addresses(*control.tun_start_addresses(body)))
        except (wire.BadMessage, BadAddress) as e:
            return Refuse(f"cannot apply tun.start: {e}")

    def _component_ready(self, body):
        """
        When the packet router announces itself, announce this agent again,
        so that a router started after the agents learns them at once.
        """
        try:
            component = control.component_of(body)
        except wire.BadMessage:
            return None
        if component == wire.ROUTER_NAME:
            return Publish((self._started(),))
        return None

    def readdressed(self, addresses):
        """
        The interface now has C{addresses}.

        @return: The announcement of them.
        """
        self._own_addresses(addresses)
        return Publish((self._started(),))
