"""
Routing policies: who gets a copy of each agent's packets.

A policy is an L{IRoutingPolicy}.  L{PacketRouter} asks it for the peers of
each packet's sender and tells it which agents announce themselves and
leave; a new way of routing is a new class here.
"""

from zope.interface import Attribute, Interface, implementer

# Peer lists kept per sender, at most.
_CACHED = 4096


def _cache(peers, sender, compute):
    """
    @return: C{peers[sender]}, computed and kept if missing.
    """
    found = peers.get(sender)
    if found is None:
        if len(peers) >= _CACHED:
            peers.clear()
        found = peers[sender] = compute()
    return found


class IRoutingPolicy(Interface):
    """
    Decides which agents a packet from an agent goes to.
    """

    description = Attribute("A few words for the log: how this policy routes.")

    def learn(name):
        """
        Agent C{name} announced itself, or sent a packet.

        @return: Whether it was new to the policy.
        """

    def forget(name):
        """
        Agent C{name} left.

        @return: Whether the policy knew it.
        """

    def agents():
        """
        @return: The agents known, sorted.
        """

    def peers_of(sender):
        """
        @return: The agents a packet from C{sender} goes to, sorted, as a
            tuple.
        """

    def observers():
        """
        @return: The agents that get a copy of every packet, as a set.
        """


class _KnownAgents:
    """
    The agents that announced themselves and have not left, and the peer
    lists computed from them, kept until they change.
    """

    def __init__(self):
        self._agents = set()
        self._peers = {}

    def learn(self, name):
        if name in self._agents:
            return False
        self._agents.add(name)
        self._changed()
        return True

    def forget(self, name):
        if name not in self._agents:
            return False
        self._agents.discard(name)
        self._changed()
        return True

    def agents(self):
        return sorted(self._agents)

    def _changed(self):
        """
        The agents known changed.
        """


@implementer(IRoutingPolicy)
class FanOut(_KnownAgents):
    """
    Every agent known gets every other agent's packets.
    """

    description = "every agent's packets to every other agent"

    def observers(self):
        return frozenset()

    def _changed(self):
        self._peers.clear()

    def peers_of(self, sender):
        return _cache(self._peers, sender, lambda: tuple(sorted(self._agents - {sender})))


@implementer(IRoutingPolicy)
class FixedTopology(_KnownAgents):
    """
    The links and observers of a L{Topology}, whoever announces itself; the
    agents seen are remembered only to be listed.
    """

    description = "the links of a fixed topology"

    def __init__(self, topology):
        _KnownAgents.__init__(self)
        self.topology = topology

    def observers(self):
        return self.topology.observers

    def peers_of(self, sender):
        return _cache(self._peers, sender,
                      lambda: tuple(sorted(self.topology.peers_of(sender))))
