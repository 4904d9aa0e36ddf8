"""
L{Steering}: what the router knows of each agent, and the routes it tells
each agent that takes part in direct delivery.

An agent is learned from its C{tun.started} (its addresses, the prefixes
routed behind it, whether it takes packets straight from the broker), or,
for an original ioppytest agent that has not announced itself to this
router, from the sources of its packets.  Who may reach whom is the
L{IRoutingPolicy}'s; L{Steering.routes_for} turns it into bindings,
destinations and senders (L{ioppy_agent.model.routes.Routes}).

A destination is reached straight through the broker only if every agent
that should get the packet (its owner, and the observers) takes direct
delivery and has said (C{ioppy.bound}) that it has taken routes with this
sender's addresses, to check packets against; until then, and for original
agents, the packet goes through the router, which forwards it to all of
them, so that none is lost while routes are on their way.  Pure: no I/O.
"""

import ipaddress
from dataclasses import dataclass, field
from typing import List, Optional

from ..model.routes import DIRECT, NONE, ROUTER, Directory, Peer, Routes

# Sources learned from the packets of an agent that never announced its
# addresses, at most.
MAX_OBSERVED = 4


@dataclass
class Agent:
    """
    One agent as the router knows it.

    @ivar networks: Its addresses and routed prefixes (L{ipaddress}
        networks).
    @ivar direct: Whether it takes packets straight from the broker.
    @ivar announced: Whether the networks came from its C{tun.started}
        (else they were seen as the sources of its packets).
    @ivar broadcast: The broadcast address of its IPv4 network, C{bytes}.
    """

    name: str
    networks: List = field(default_factory=list)
    direct: bool = False
    announced: bool = False
    broadcast: Optional[bytes] = None


class Steering:
    """
    The agents known, the owner of each address, and the routes last sent.

    @ivar mode: L{DIRECT}, or L{ROUTER} to have every packet go through the
        router (while a lossy link drops packets).
    """

    def __init__(self, policy, router_id):
        """
        @param policy: The L{IRoutingPolicy}.
        @param router_id: Names this router in the routes it sends.
        """
        self.policy = policy
        self.router_id = router_id
        self.agents = {}
        self.directory = Directory()
        self.mode = DIRECT
        self._serial = 0
        self._sent = {}
        self._numbered = {}
        self._acked = {}

    def announce(self, name, networks, direct, broadcast=None):
        """
        Agent C{name} announced its C{networks}.

        @return: Whether anything changed.
        """
        old = self.agents.get(name)
        new = Agent(name, list(networks), direct, True, broadcast)
        if old == new:
            return False
        self.agents[name] = new
        self._rebuild()
        return True

    def observed(self, name, version, source):
        """
        Agent C{name}, which never announced its addresses, sent a packet
        from C{source}: take it for one of its addresses.

        @return: Whether that is new.
        """
        agent = self.agents.setdefault(name, Agent(name))
        if agent.announced or len(agent.networks) >= MAX_OBSERVED:
            return False
        net = ipaddress.ip_network((ipaddress.ip_address(source), 32 if version == 4 else 128))
        if net in agent.networks:
            return False
        agent.networks.append(net)
        self._rebuild()
        return True

    def forget(self, name):
        """
        @return: Whether agent C{name} was known.
        """
        if self.agents.pop(name, None) is None:
            return False
        for table in (self._sent, self._numbered, self._acked):
            table.pop(name, None)
        self._rebuild()
        return True

    def reconnected(self, name):
        """
        Agent C{name} announced itself on a new connection: it has no routes
        until it is sent them again, and takes packets straight only once it
        says it has them.
        """
        for table in (self._sent, self._numbered, self._acked):
            table.pop(name, None)

    def acknowledged(self, name, router, serial):
        """
        Agent C{name} says it has bound what routes C{serial} of C{router}
        ask.

        @return: Whether those are the routes it was last sent, now known
            bound.
        """
        routes = self._numbered.get(name)
        if routes is None or (routes.router, routes.serial) != (router, serial):
            return False
        if self._acked.get(name) is routes:
            return False
        self._acked[name] = routes
        return True

    def _bound_for(self, receiver, sender):
        """
        @return: Whether C{receiver} takes direct delivery and has said it
            has routes with C{sender}'s current addresses.
        """
        agent = self.agents.get(receiver)
        routes = self._acked.get(receiver)
        if agent is None or not agent.direct or routes is None:
            return False
        addresses = tuple(str(n) for n in self.agents[sender].networks)
        return routes.senders.get(sender) == addresses

    def _rebuild(self):
        self.directory = Directory((a.name, a.networks) for a in self.agents.values())

    def is_broadcast(self, sender, version, destination):
        """
        @return: Whether C{destination} is the broadcast address of
            C{sender}'s IPv4 network.
        """
        agent = self.agents.get(sender)
        return version == 4 and agent is not None and agent.broadcast == destination

    def receivers(self, sender, owner):
        """
        @return: Who gets a unicast packet from C{sender} to C{owner}: the
            owner and the observers, if C{sender} may reach the owner;
            nobody otherwise.
        """
        peers = self.policy.peers_of(sender)
        if owner not in peers:
            return []
        return [owner] + [o for o in sorted(self.policy.observers())
                          if o in peers and o != owner]

    def routes_for(self, name):
        """
        @return: The L{Routes} of agent C{name}, with serial 0.
        """
        agents, policy = self.agents, self.policy
        peers = policy.peers_of(name)
        known = name in agents

        def direct(names):
            return known and agents[name].direct and all(self._bound_for(n, name)
                                                         for n in names)

        destinations = {}
        for peer in peers:
            agent = agents.get(peer)
            if agent is None or not agent.networks:
                continue
            path = DIRECT if direct(self.receivers(name, peer)) else ROUTER
            destinations[peer] = Peer(tuple(str(n) for n in agent.networks), path)
        group = [p for p in peers if p in agents]
        multicast = NONE if not group else (DIRECT if direct(group) else ROUTER)
        senders = {s: tuple(str(n) for n in a.networks) for s, a in agents.items()
                   if s != name and name in policy.peers_of(s)}
        observers = tuple(sorted(o for o in policy.observers() if o in peers))
        return Routes(self.router_id, 0, self.mode, destinations, multicast, senders,
                      observers)

    def updates(self):
        """
        @return: C{(name, routes)} for each agent taking direct delivery
            whose routes changed since they were last sent, numbered.
        """
        out = []
        for name in sorted(self.agents):
            if not self.agents[name].direct:
                continue
            routes = self.routes_for(name)
            if self._sent.get(name) == routes:
                continue
            self._sent[name] = routes
            self._serial += 1
            numbered = Routes(routes.router, self._serial, routes.mode, routes.destinations,
                              routes.multicast, routes.senders, routes.observers)
            self._numbered[name] = numbered
            out.append((name, numbered))
        return out

    def resend(self):
        """
        Forget what was sent, so that L{updates} sends every agent its routes
        again.
        """
        self._sent.clear()
        self._acked.clear()
