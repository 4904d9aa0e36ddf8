"""
L{PacketRouter}: what the router does with each message it consumes,
without doing it.

The router steers: it learns the agents from their announcements (their
addresses, in L{Steering}), and tells each agent that takes direct
delivery its routes, which are put in L{PacketRouter.outbox} for the
service to publish.  Packets between such agents go straight
through the broker and never reach the router.

It still carries what cannot go straight: packets from original ioppytest
agents, and packets some of whose receivers are original agents: those
sent without the mark of a packet sent straight, which the broker hands it
(see L{ioppy_agent.model.keys}).  For each of those
it checks that
the source belongs to the sender, finds who should get it (the owner of a
unicast destination and the observers, or every peer for multicast), and
returns a L{Forward} of the body, unchanged, to their C{toAgent} keys.
C{routing.lossy.link.start} has every agent send through the router until
the next N packets are dropped.  L{RouterService} carries the actions out.
"""

import ipaddress

from twisted.logger import Logger

from ..model import control, keys, wire
from ..model.actions import Drop, Forward
from ..model.addressing import BadAddress, check_name
from ..model.grants import Claims
from ..model.routes import DIRECT, ROUTER, addresses_of, is_group, source_allowed
from .policy import FanOut
from .steering import Steering

# Agents the router learns at most, and names a log line lists at most.
MAX_AGENTS = 1024
LISTED = 16


def _shown(version, address):
    return str(ipaddress.ip_address(address))


def _from(user_id):
    return f"sent by user {user_id!r}" if user_id else "sent with no user_id"


def _listed(names):
    """
    @return: C{names} for a log line: at most L{LISTED} of them, and how
        many more.
    """
    if not names:
        return "none"
    shown = ", ".join(names[:LISTED])
    return shown if len(names) <= LISTED else f"{shown} and {len(names) - LISTED} more"


class PacketRouter:
    """
    Decides where each message goes, and what to tell the agents.

    @ivar policy: The L{IRoutingPolicy}.
    @ivar steering: The L{Steering}: agents, addresses, routes.
    @ivar to_drop: Packets still to drop for C{routing.lossy.link.start}.
    @ivar outbox: Control messages to publish (routes), in order.
    @ivar reports: The last C{tun.stats} report of each agent (see
        L{control.stats_of}), by name.
    """

    _log = Logger()

    def __init__(self, policy=None, router_id="router", grants=None, session=None):
        """
        @param policy: An L{IRoutingPolicy} (L{FanOut} if not given).
        @param router_id: Names this router in the routes it sends.
        @param grants: The L{ioppy_agent.model.grants.Grants} agents' claims must
            keep within, or C{None}: the first claim of an address wins.
        @param session: The vhost of a session made by C{ioppy-session},
            or C{None}.  In a session, the messages whose routing key does
            not name their sender (a component's ready and shutdown, the
            lossy link) are taken only with a C{user_id} the broker
            checked, and only from who may send them.
        """
        self.policy = policy if policy is not None else FanOut()
        self.claims = Claims(grants)
        self.session = session
        self.steering = Steering(self.policy, router_id)
        self.to_drop = 0
        self.outbox = []
        self.reports = {}
        self._keys = {}
        self._known = set()

    @property
    def agents(self):
        """
        @return: The agents known, sorted.
        """
        return self.policy.agents()

    def take_control(self):
        """
        @return: The control messages to publish now, taken from the outbox.
        """
        out, self.outbox = self.outbox, []
        return out

    def _steer(self):
        for name, routes in self.steering.updates():
            self.outbox.append(control.routes_message(name, routes))

    def connected(self):
        """
        A new session: every agent gets its routes again once it announces
        itself.
        """
        self.steering.resend()

    def roll_call(self, names):
        """
        @return: A roll call (L{control.roll_call}) for each agent of C{names}
            the router does not know yet, sorted: an original agent that
            started before the router, and has said nothing since, announces
            itself again.
        """
        return [control.roll_call(name) for name in sorted(names)
                if name not in self.steering.agents]

    def route(self, routing_key, body, content_type, user_id=None):
        """
        @param user_id: The message's C{user_id}, which the broker checked,
            or C{None}.
        @return: What to do with one message, or C{None} for nothing.
        """
        kind, name = keys.parse(routing_key) or (None, None)
        if kind == keys.PACKET_FROM:
            return self._packet(name, routing_key, body, content_type)
        if kind == keys.TUN_STARTED:
            return self._started(name, routing_key, body)
        if kind == keys.BOUND:
            return self._acknowledged(name, routing_key, body)
        if kind == keys.STATS:
            return self._stats(name, routing_key, body)
        if kind == keys.SHUTDOWN:
            return self._component(routing_key, body, user_id, self._forget)
        if kind == keys.LOSSY:
            return self._lossy(routing_key, body, user_id)
        return None

    def _sender(self, user_id):
        """
        @return: Who sent a message with C{user_id} in this session: an
            agent's name, L{keys.SESSION_ROUTER}, or C{None} for unknown.
        """
        return keys.speaker(self.session, user_id)

    def _bad(self, routing_key, error):
        return Drop("bad message", f"dropped a message on {routing_key}: {error}")

    def _learn(self, name):
        """
        Know agent C{name}, if it may be one.

        @return: C{None}, or the L{Drop} of what it sent when it may not: the
            router's own name, a name no agent may have, or one more than
            L{MAX_AGENTS}.
        """
        if name in self._known:
            return None
        if name == keys.ROUTER_NAME:
            return Drop("not an agent", f"ignored a message from {name}: the router's name")
        try:
            check_name(name)
        except BadAddress as e:
            return Drop("not an agent", f"ignored a message: {e}")
        grants = self.claims.grants
        if grants is not None and name not in grants.networks:
            return Drop("not an agent", f"ignored a message from {name}: not a participant "
                                        "of the grants")
        if len(self._known) >= MAX_AGENTS:
            return Drop("too many agents", f"ignored agent {name}: the router knows "
                                           f"{MAX_AGENTS} agents already")
        self._known.add(name)
        if self.policy.learn(name):
            self._log.info("agent {name} joined; agents: {agents}", name=name,
                           agents=_listed(self.agents))
            self._steer()
        return None

    def _forget(self, name):
        self._known.discard(name)
        self.reports.pop(name, None)
        self.claims.release(name)
        if self.policy.forget(name) | self.steering.forget(name):
            self._log.info("agent {name} left; agents: {agents}", name=name,
                           agents=_listed(self.agents))
            self._steer()

    def _component(self, routing_key, body, user_id, action):
        try:
            component = control.component_of(body)
        except wire.BadMessage as e:
            return self._bad(routing_key, e)
        if self.session is not None:
            sender = self._sender(user_id)
            if sender not in (component, keys.SESSION_ROUTER):
                return Drop("not allowed", f"ignored {routing_key} naming {component}: "
                                                f"{_from(user_id)}, not {component}'s")
        action(component)
        return None

    def _started(self, name, routing_key, body):
        try:
            check_name(name)
            networks, direct, broadcast = control.started_info(body)
        except (BadAddress, wire.BadMessage) as e:
            return self._bad(routing_key, e)
        refused = self._learn(name)
        if refused is not None:
            return refused
        networks, claimed = self.claims.admit(name, networks)
        for net, why in claimed:
            self._log.error("refused {name}'s claim of {net}: {why}", name=name, net=str(net),
                            why=why)
        if self.steering.announce(name, networks, direct, broadcast):
            self._log.info("agent {name} has {networks}{how}", name=name,
                           networks=", ".join(str(n) for n in networks) or "no address",
                           how=", direct delivery" if direct else "")
        # An agent announces itself on each new connection: one that was
        # killed and started again has no routes, whatever it had before.
        self.steering.reconnected(name)
        self._steer()
        return None

    def _acknowledged(self, name, routing_key, body):
        try:
            router, serial = control.bound_of(body)
        except wire.BadMessage as e:
            return self._bad(routing_key, e)
        if self.steering.acknowledged(name, router, serial):
            self._steer()
        return None

    def _stats(self, name, routing_key, body):
        try:
            check_name(name)
            report = control.stats_of(body)
        except (BadAddress, wire.BadMessage) as e:
            return self._bad(routing_key, e)
        if name in self.agents:
            self.reports[name] = report
        return None

    def _lossy(self, routing_key, body, user_id):
        if self.session is not None and self._sender(user_id) != keys.SESSION_ROUTER:
            return Drop("not allowed", f"ignored {routing_key}: {_from(user_id)}; only "
                                            "the router's user may start a lossy link")
        try:
            self.to_drop = control.packets_to_drop(body)
        except wire.BadMessage as e:
            return self._bad(routing_key, e)
        self._log.info("lossy link: dropping the next {n} packets", n=self.to_drop)
        self.steering.mode = ROUTER if self.to_drop else DIRECT
        self._steer()
        return None

    def _observed(self, sender, version, source):
        """
        An agent that never announced its addresses sent from C{source}:
        take it for one of its addresses, if no one else holds it.
        """
        net = ipaddress.ip_network((ipaddress.ip_address(source), 32 if version == 4 else 128))
        if self.claims.refusal(sender, net) is not None:
            return False
        if not self.steering.observed(sender, version, source):
            return False
        self.claims.held.setdefault(sender, []).append(net)
        return True

    def _key_to(self, peer):
        key = self._keys.get(peer)
        if key is None:
            if len(self._keys) > 4096:
                self._keys.clear()
            key = self._keys[peer] = keys.packet_to(peer)
        return key

    def _packet(self, sender, routing_key, body, content_type):
        try:
            packet = wire.packet_of(body, content_type)
            body = wire.as_bytes(body)
        except wire.BadMessage as e:
            return self._bad(routing_key, e)
        refused = self._learn(sender)
        if refused is not None:
            return refused
        found = addresses_of(packet)
        if found is None:
            return Drop("not IP", f"dropped a message on {routing_key}: its data is not an "
                                  "IPv4 or IPv6 packet")
        version, source, destination = found
        steering = self.steering
        agent = steering.agents.get(sender)
        if agent is not None and agent.announced:
            if not source_allowed(steering.directory, sender, packet, version, source,
                                  link_local=not agent.direct):
                return Drop("source not sender's", f"dropped a packet from {sender}: its source "
                                                   f"{_shown(version, source)} is not one of "
                                                   f"{sender}'s addresses")
        elif self._observed(sender, version, source):
            self._steer()
        if self.to_drop:
            self.to_drop -= 1
            if not self.to_drop:
                steering.mode = DIRECT
                self._steer()
            return Drop("lossy link")
        if is_group(version, destination) or steering.is_broadcast(sender, version,
                                                                   destination):
            receivers = self.policy.peers_of(sender)
        else:
            owner = steering.directory.owner(version, destination)
            receivers = steering.receivers(sender, owner) if owner is not None else ()
            if not receivers:
                return Drop("no route", f"dropped a packet from {sender} to "
                                        f"{_shown(version, destination)}: no agent it may "
                                        "reach owns that address")
        content_type = content_type or wire.JSON
        return Forward(tuple(wire.Message(self._key_to(peer), body, content_type)
                             for peer in receivers), len(body), packet)
