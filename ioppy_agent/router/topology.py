"""
Topologies: fixed routes between agents, as ioppytest's router uses, parsed
from the text of a topology file (L{ioppy_agent.router.tap} reads it).
"""

import json
from dataclasses import dataclass, field

from ..model.addressing import BadAddress, check_name


class BadTopology(ValueError):
    """
    A topology file that cannot be used.
    """


@dataclass(frozen=True)
class Topology:
    """
    Fixed routes: which agents exchange packets, and which observe all.

    @ivar links: Pairs of agent names that exchange packets both ways.
    @ivar observers: Agents that get a copy of every packet.
    """

    links: frozenset = field(default_factory=frozenset)
    observers: frozenset = field(default_factory=frozenset)

    def peers_of(self, name):
        """
        @return: The agents a packet from C{name} goes to.
        """
        peers = {b for a, b in self.links if a == name}
        peers |= {a for a, b in self.links if b == name}
        peers |= self.observers
        peers.discard(name)
        return peers


def parse_topology(text):
    """
    Parse a topology file::

        {"links": [["agent_1", "agent_2"]], "observers": ["agent_TT"]}

    @raise BadTopology: saying what is wrong.
    """
    try:
        obj = json.loads(text)
    except ValueError as e:
        raise BadTopology(f"not JSON: {e}") from None
    if not isinstance(obj, dict):
        raise BadTopology('the file must hold a JSON object with "links" and '
                          '"observers"')
    unknown = set(obj) - {"links", "observers"}
    if unknown:
        raise BadTopology(f"unknown keys {sorted(unknown)}; only \"links\" and "
                          "\"observers\" are read")
    links = obj.get("links", [])
    observers = obj.get("observers", [])
    if not isinstance(links, list) or not isinstance(observers, list):
        raise BadTopology('"links" and "observers" must be lists')
    pairs = set()
    try:
        for link in links:
            if not (isinstance(link, list) and len(link) == 2):
                raise BadTopology(f"link {link!r} is not a pair of agent names")
            a, b = (check_name(n) for n in link)
            if a == b:
                raise BadTopology(f"link {link!r} joins an agent to itself")
            pairs.add((a, b))
        watchers = frozenset(check_name(n) for n in observers)
    except BadAddress as e:
        raise BadTopology(str(e)) from None
    if not pairs and not watchers:
        raise BadTopology("the topology has no links and no observers")
    return Topology(frozenset(pairs), watchers)
