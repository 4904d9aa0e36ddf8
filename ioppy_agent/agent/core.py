"""
L{AgentCore}: what the agent does with each packet and each message,
without doing it.

Given a packet read from the TUN, or a message consumed from the bus, it
returns an action of L{ioppy_agent.model.actions}: forward this packet under
this routing key, write this packet into the TUN, drop it for this reason,
change the addresses, take new routes, announce again.  L{AgentService}
carries the actions out.  No I/O, no reactor: the clock is only read for
the time stamp of each packet.

Every packet goes out on C{fromAgent.<name>.ip.tun.packet.raw}, as the
original ioppytest agent sends it, for ioppytest's sniffer to see.  Until
an ioppy-router sends it routes, that is all: a router forwards it.  With
routes, a packet for an agent that takes direct delivery names the owner's
inbox (and the observers') in its C{CC} header, and the broker takes it
straight there; a multicast packet names every peer's; one for an original
agent names none, and goes to the router as before (see
L{ioppy_agent.model.keys}).  A packet whose source is not this agent's is
dropped.  A packet that comes
straight from another agent (on that agent's C{fromAgent} key, which the
broker lets only that agent publish) is written into the TUN only if its
source is one of that agent's addresses.
"""

import ipaddress

from ..model import control, keys, wire
from ..model.actions import Drop, Forward, Publish, Readdress, Refuse, Reroute, WriteToTun
from ..model.addressing import BadAddress, make_addresses
from ..model.routes import (DIRECT, ROUTER, Directory, addresses_of, is_group, network,
                            source_allowed)

def _shown(address):
    return str(ipaddress.ip_address(address))


_NOBODY = Directory()


def _copies_to(*names):
    """
    @return: The headers of a packet sent straight to the inboxes of
        C{names}: RabbitMQ's C{CC}, and the mark that keeps the router's copy
        out of its queue.
    """
    return (("CC", tuple(keys.inbox(name) for name in names)),
            (keys.DIRECT, keys.DIRECT_VALUE))


class AgentCore:
    """
    The decisions of agent C{name}.

    @ivar addresses: The interface's current L{TunAddresses}.
    @ivar prefixes: The prefixes routed behind this agent's host.
    @ivar queue: The name of the agent's own queue.
    @ivar routes: The L{ioppy_agent.model.routes.Routes} from the router, or
        C{None} until it sends some.
    """

    def __init__(self, name, addresses, clock, mtu=1500, wire_format="json",
                 interface_name="tun0", prefixes=(), session=None):
        """
        @param clock: Its C{seconds()} stamps each packet published as JSON.
        @param wire_format: C{"json"} (ioppytest's) or C{"raw"}: how packets
            read from the TUN are published.  Both are read.
        @param prefixes: L{ipaddress} networks routed behind this host.
        @param session: The vhost of the session made by C{ioppy-session}
            this agent is part of, or C{None}: then a router's announcement
            counts only with the router's C{user_id}.
        """
        self.name = name
        self.session = session
        self.mtu = mtu
        self.queue = keys.agent_queue(name)
        self.prefixes = tuple(prefixes)
        self.routes = None
        self._clock = clock
        self._raw = wire_format == "raw"
        self._interface_name = interface_name
        self._key_out = keys.packet_from(name)
        self._paths = {}
        self._group = False
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
        return keys.agent_bindings(self.name)

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
        @return: The message saying the agent has taken the current routes,
            or C{None} without routes.
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
            L{Forward} with the headers that take it where it goes, or a
            L{Drop}.
        """
        copies = None
        if self.routes is not None and self.routes.mode == DIRECT:
            copies = self._route(packet)
            if type(copies) is Drop:
                return copies
        if self._raw:
            # The raw body is the packet alone: the time it entered the bus
            # goes in a header, for the session recorder.
            message = wire.Message(self._key_out, packet, wire.RAW, self._clock.seconds(),
                                   copies)
        else:
            body = wire.encode_packet(packet, self._clock.seconds(), self._interface_name)
            message = wire.Message(self._key_out, body, wire.JSON, None, copies)
        return Forward((message,), len(packet), packet)

    def _route(self, packet):
        """
        @return: The headers that send C{packet} straight to its receivers
            under the routes, C{None} to have the router forward it, or a
            L{Drop}.
        """
        found = addresses_of(packet)
        if found is None:
            return Drop("not IP", "dropped a packet from the TUN: too short for an IP header")
        version, source, destination = found
        if not source_allowed(self._own, self.name, packet, version, source):
            return Drop("source not ours", f"dropped a packet from {_shown(source)}: not one "
                                           "of this agent's addresses or routed prefixes")
        if is_group(version, destination) or (version == 4 and destination == self._broadcast):
            if self._group is False:
                return Drop("no peer")
            return self._group
        # A destination the routes do not name goes to the router, which
        # may know of an agent that joined since, and drops it otherwise.
        return self._paths.get(self._table.owner(version, destination))

    # From the bus.

    def from_bus(self, routing_key, body, content_type, user_id=None):
        """
        @param user_id: The message's C{user_id}, which the broker checked,
            or C{None}.
        @return: What to do with a message consumed from the agent's queue,
            or C{None} for nothing.
        """
        kind, name = keys.parse(routing_key) or (None, None)
        if kind == keys.PACKET_FROM:
            return self._direct(name, routing_key, body, content_type)
        if name == self.name:
            if kind == keys.PACKET_TO:
                return self._packet(routing_key, body, content_type)
            if kind == keys.ROUTES:
                return self._new_routes(body)
            if kind == keys.TUN_START:
                return self._tun_start(body)
        elif kind == keys.READY:
            return self._component_ready(body, user_id)
        return Drop("unexpected routing key", f"dropped a message on {routing_key}: the "
                                              "agent's queue is not bound to that key")

    def _packet(self, routing_key, body, content_type):
        """
        A packet the router forwarded: written if its source is an address
        of a peer the routes name (or, without routes from an ioppy-router,
        any address but this agent's own).
        """
        action = self._checked(routing_key, body, content_type)
        if type(action) is not WriteToTun:
            return action
        packet = action.packet
        version, source, _ = addresses_of(packet) or (None, None, None)
        if version is None:
            return Drop("not IP", "dropped a packet from the router: too short for an IP "
                                  "header")
        if self._own.owner(version, source) == self.name:
            return Drop("source is ours", f"dropped a packet from the router: its source "
                                          f"{_shown(source)} is this agent's own")
        if self.routes is not None:
            # Beside the peers' addresses: IPv6 link-local ones (the router
            # checked the sender's) and the unspecified address of
            # duplicate-address detection.
            if self._heard.owner(version, source) is None and not source_allowed(
                    _NOBODY, "", packet, version, source, link_local=True):
                return Drop("source of no peer", f"dropped a packet from the router: its "
                                                 f"source {_shown(source)} is no peer's")
        return action

    def _checked(self, routing_key, body, content_type):
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
        action = self._checked(routing_key, body, content_type)
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

    def _new_routes(self, body):
        try:
            routes = control.routes_of(body)
        except wire.BadMessage as e:
            return Refuse(f"cannot apply the router's routes: {e}")
        old = self.routes
        old_remote = self._remote_prefixes(old)
        self.routes = routes
        self._table = Directory((name, peer.addresses)
                                for name, peer in routes.destinations.items())
        self._heard = Directory(routes.senders.items())
        observers = [o for o in routes.observers if o != self.name]
        self._paths = {name: _copies_to(name, *(o for o in observers if o != name))
                       for name, peer in routes.destinations.items() if peer.path == DIRECT}
        self._group = {DIRECT: _copies_to(*sorted(routes.destinations)),
                       ROUTER: None}.get(routes.multicast, False)
        remote = self._remote_prefixes(routes)
        direct = sum(1 for p in routes.destinations.values() if p.path == DIRECT)
        return Reroute(
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
            if control.is_roll_call(body):
                return Publish((self._started(),))
            return Readdress(make_addresses(*control.tun_start_addresses(body)))
        except (wire.BadMessage, BadAddress) as e:
            return Refuse(f"cannot apply tun.start: {e}")

    def _component_ready(self, body, user_id):
        """
        When the packet router announces itself, announce this agent again,
        so that a router started after the agents learns them at once.  In
        a session, only the router's user may say so.
        """
        try:
            component = control.component_of(body)
        except wire.BadMessage:
            return None
        if component != keys.ROUTER_NAME:
            return None
        if self.session is not None and \
                keys.speaker(self.session, user_id) != keys.SESSION_ROUTER:
            return Drop("not allowed", f"ignored the router's announcement: sent by "
                                       f"{user_id or 'no user_id'}, not the session's router")
        return Publish((self._started(),))

    def readdressed(self, addresses):
        """
        The interface now has C{addresses}.

        @return: The announcement of them.
        """
        self._own_addresses(addresses)
        return Publish((self._started(),))
