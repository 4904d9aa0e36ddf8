"""
L{Steering}: what the router knows of each agent, and the routes it tells
each agent that takes part in direct delivery.

An agent is learned from its C{tun.started} (its addresses, the prefixes
routed behind it, whether it takes packets straight from the broker), or,
for an original ioppytest agent that has not announced itself to this
router, from the sources of its packets.  Who may reach whom is the
L{IRoutingPolicy}'s; L{Steering.routes_for} turns it into bindings,
destinations and senders (L{ioppy_agent.routes.Routes}).

The broker steers: L{Steering.steering_bindings} are the bindings of the
headers exchange (L{keys.STEER}) into each agent's own exchange, one per
steering header that agent takes.  A destination is reached straight
through the broker only if every agent that should get the packet (its
owner, and the observers) takes direct delivery and has said
(C{ioppy.bound}) that its queue is bound to its exchange, with this
sender's addresses to check packets against; until then, and for original
agents, the packet goes through the router, which forwards it to all of
them, so that none is lost while bindings are being made.  Pure: no I/O.
"""

import ipaddress
from dataclasses import dataclass, field
from typing import List, Optional

from .. import keys
from ..routes import DIRECT, NONE, ROUTER, Directory, Peer, Routes

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
        @return: Whether C{receiver} has said its queue is bound to its
            exchange, knowing C{sender}'s current addresses.
        """
        agent = self.agents.get(receiver)
        routes = self._acked.get(receiver)
        if agent is None or not agent.direct or routes is None:
            return False
        addresses = tuple(str(n) for n in self.agents[sender].networks)
        return (routes.senders.get(sender) == addresses
                and keys.to_agent(receiver) in routes.bindings)

    def steering_bindings(self):
        """
        @return: The bindings the headers exchange should have, as a set of
            C{(exchange, header, value)}: into each agent's exchange that
            takes direct delivery, the packets for it (C{ioppy-to}), for
            every agent if it is an observer, and the multicast of each
            sender that may reach it (C{ioppy-group}).
        """
        direct = sorted(name for name, agent in self.agents.items() if agent.direct)
        observers = self.policy.observers()
        out = set()
        for name in direct:
            exchange = keys.to_agent(name)
            out.add((exchange, keys.TO, name))
            if name in observers:
                out.update((exchange, keys.TO, other) for other in self.agents
                           if other != name)
        for sender in direct:
            out.update((keys.to_agent(peer), keys.GROUP, sender)
                       for peer in self.policy.peers_of(sender) if peer in direct)
        return out

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
        bindings = (keys.to_agent(name),)
        return Routes(self.router_id, 0, self.mode, bindings, destinations, multicast, senders)

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
            numbered = Routes(routes.router, self._serial, routes.mode, routes.bindings,
                              routes.destinations, routes.multicast, routes.senders)
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
