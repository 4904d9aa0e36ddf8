"""
L{PacketRouter}: what the router does with each message it consumes,
without doing it.

It learns agents from their announcements and packets, keeps the
C{routing.lossy.link.start} count, checks each packet message's shape, and
returns an action of L{ioppy_agent.actions}: a L{Forward} of the body,
unchanged, to the peers its L{IRoutingPolicy} names, or a L{Drop}.  A
packet body is forwarded without being decoded (the receiving agent checks
the packet); only a router that captures decodes each one, and drops those
that do not decode.  L{RouterService} carries the actions out.
"""

from twisted.logger import Logger

from .. import wire
from ..actions import Drop, Forward
from ..addressing import BadAddress, check_name
from .policy import FanOut

_PACKET = ".ip.tun.packet.raw"
_STARTED = ".ip.tun.started"


class PacketRouter:
    """
    Decides where each message goes.

    @ivar policy: The L{IRoutingPolicy}.
    @ivar to_drop: Packets still to drop for C{routing.lossy.link.start}.
    """

    _log = Logger()

    def __init__(self, policy=None, capture=False):
        """
        @param policy: An L{IRoutingPolicy} (L{FanOut} if not given).
        @param capture: Decode every packet, for a capture.
        """
        self.policy = policy if policy is not None else FanOut()
        self.to_drop = 0
        self._capture = capture
        self._keys = {}
        self._known = set()

    @property
    def agents(self):
        """
        @return: The agents known, sorted.
        """
        return self.policy.agents()

    def route(self, routing_key, body, content_type):
        """
        @return: What to do with one message, or C{None} for nothing.
        """
        if routing_key.endswith(_PACKET):
            return self._packet(routing_key, body, content_type)
        if routing_key.endswith(_STARTED):
            name = wire.agent_of(routing_key)
            if name:
                self._learn(name)
        elif routing_key == wire.COMPONENT_READY:
            return self._component(routing_key, body, self._learn)
        elif routing_key == wire.COMPONENT_SHUTDOWN:
            return self._component(routing_key, body, self._forget)
        elif routing_key == wire.LOSSY_LINK_START:
            try:
                self.to_drop = wire.packets_to_drop(body)
            except wire.BadMessage as e:
                return self._bad(routing_key, e)
            self._log.info("lossy link: dropping the next {n} packets", n=self.to_drop)
        return None

    def _bad(self, routing_key, error):
        return Drop("bad message", f"dropped a message on {routing_key}: {error}")

    def _learn(self, name):
        if name in self._known:
            return
        if name == wire.ROUTER_NAME:
            return
        try:
            check_name(name)
        except BadAddress:
            return
        if len(self._known) < 4096:
            self._known.add(name)
        if self.policy.learn(name):
            self._log.info("agent {name} joined; agents: {agents}", name=name,
                           agents=", ".join(self.agents))

    def _forget(self, name):
        self._known.discard(name)
        if self.policy.forget(name):
            self._log.info("agent {name} left; agents: {agents}", name=name,
                           agents=", ".join(self.agents) or "none")

    def _component(self, routing_key, body, action):
        try:
            action(wire.component_of(body))
        except wire.BadMessage as e:
            return self._bad(routing_key, e)
        return None

    def _key_to(self, peer):
        key = self._keys.get(peer)
        if key is None:
            if len(self._keys) > 4096:
                self._keys.clear()
            key = self._keys[peer] = wire.packet_to(peer)
        return key

    def _packet(self, routing_key, body, content_type):
        sender = wire.agent_of(routing_key)
        if not sender or not routing_key.startswith("fromAgent."):
            return None
        packet = None
        try:
            if self._capture:
                packet = wire.packet_of(body, content_type)
                body = wire.as_bytes(body)
            else:
                body = wire.check_shape(body, content_type)
        except wire.BadMessage as e:
            return self._bad(routing_key, e)
        self._learn(sender)
        if self.to_drop:
            self.to_drop -= 1
            return Drop("lossy link")
        content_type = content_type or wire.JSON
        return Forward(tuple(wire.Message(self._key_to(peer), body, content_type)
                             for peer in self.policy.peers_of(sender)), len(body), packet)
