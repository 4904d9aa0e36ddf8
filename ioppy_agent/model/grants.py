"""
Who may own which addresses: the organiser's grants (L{Grants}, written by
C{ioppy-session create} and read by the router's C{--grants}), and the
router's register of claims (L{Claims}), which admits an agent's
announced addresses and prefixes only within its grant, and never one that
another agent already holds.

The first owner of an address keeps it until it leaves.  A claim that
overlaps what another agent holds, a default route (C{0.0.0.0/0},
C{::/0}), or, with grants, a claim outside the claimant's grant is refused
with a reason.
Pure: no I/O (L{Grants.loads} and L{Grants.dumps} work on text).
"""

import json

from .addressing import BadAddress, check_name, default_addresses
from .routes import network

VERSION = 1


class BadGrants(ValueError):
    """
    A grants file that cannot be used; the message says why.
    """


def default_grant(name):
    """
    @return: The networks agent C{name} owns by default: C{agent_N} gets
        C{10.2.0.N}, C{bbbb::N} and C{fe80::N}, hosts; a name with no
        number (an observer such as C{agent_TT}) none.
    """
    try:
        addresses = default_addresses(name)
    except BadAddress:
        return ()
    return tuple(network(str(a.ip)) for a in addresses.all())


class Grants:
    """
    The networks each participant may own.

    @ivar networks: Name to a tuple of L{ipaddress} networks.
    """

    def __init__(self, networks):
        self.networks = {check_name(name): tuple(nets) for name, nets in networks.items()}
        self._check_disjoint()

    @classmethod
    def default(cls, names, extra=None):
        """
        @param extra: Name to more networks (text) granted beyond the
            defaults (its C{--route} prefixes, other addresses).
        @raise BadGrants: if two participants' grants overlap, or a grant
            is a default route.
        """
        extra = extra or {}
        unknown = sorted(set(extra) - set(names))
        if unknown:
            raise BadGrants(f"a grant for {', '.join(unknown)}, which is not a participant")
        try:
            return cls({name: default_grant(name) + tuple(network(t) for t in
                                                          extra.get(name, ()))
                        for name in names})
        except BadAddress as e:
            raise BadGrants(str(e)) from None

    def _check_disjoint(self):
        seen = []
        for name in sorted(self.networks):
            for net in self.networks[name]:
                if net.prefixlen == 0:
                    raise BadGrants(f"{name} is granted {net}, a default route: it would "
                                    "take every destination no one else owns")
                for other, theirs in seen:
                    if other != name and net.version == theirs.version and \
                            net.overlaps(theirs):
                        raise BadGrants(f"{name}'s {net} overlaps {other}'s {theirs}")
                seen.append((name, net))

    def allows(self, name, net):
        """
        @return: Whether C{name} may own all of C{net}.
        """
        return any(net.version == g.version and net.subnet_of(g)
                   for g in self.networks.get(name, ()))

    def dumps(self):
        return json.dumps({"ioppy_grants": VERSION,
                           "participants": {name: [str(n) for n in nets]
                                            for name, nets in sorted(self.networks.items())}},
                          indent=2) + "\n"

    @classmethod
    def loads(cls, text):
        """
        @raise BadGrants: if C{text} is not a grants file.
        """
        try:
            obj = json.loads(text)
        except ValueError as e:
            raise BadGrants(f"not JSON: {e}") from None
        if not isinstance(obj, dict) or obj.get("ioppy_grants") != VERSION or \
                not isinstance(obj.get("participants"), dict):
            raise BadGrants(f"not an ioppy grants file (version {VERSION}): it needs "
                            '"ioppy_grants": 1 and "participants"')
        try:
            return cls({name: tuple(network(t) for t in _texts(name, nets))
                        for name, nets in obj["participants"].items()})
        except BadAddress as e:
            raise BadGrants(str(e)) from None


def _texts(name, nets):
    if not isinstance(nets, list) or not all(isinstance(t, str) for t in nets):
        raise BadGrants(f"{name}'s grant is not a list of addresses and prefixes")
    return nets


class Claims:
    """
    The networks each agent holds, admitted first come, first served.

    @ivar grants: The L{Grants}, or C{None} (a lab on one shared user: any
        claim that conflicts with no one is admitted).
    @ivar held: Name to the list of networks it holds.
    """

    def __init__(self, grants=None):
        self.grants = grants
        self.held = {}

    def _conflict(self, name, net):
        for other, theirs in self.held.items():
            if other == name:
                continue
            for held in theirs:
                if held.version == net.version and held.overlaps(net):
                    return f"{other} holds {held}"
        return None

    def refusal(self, name, net):
        """
        @return: Why C{name} may not hold C{net}, or C{None} if it may.
        """
        if net.prefixlen == 0:
            return "a default route"
        if self.grants is not None and not self.grants.allows(name, net):
            return f"outside {name}'s grant"
        return self._conflict(name, net)

    def admit(self, name, networks):
        """
        Agent C{name} claims C{networks} (all it holds, from now on).

        @return: C{(admitted, refused)}: the networks it now holds, and
            C{(network, why)} for each refused.
        """
        admitted, refused = [], []
        for net in networks:
            why = self.refusal(name, net)
            if why is None:
                if net not in admitted:
                    admitted.append(net)
            else:
                refused.append((net, why))
        self.held[name] = admitted
        return admitted, refused

    def release(self, name):
        """
        Agent C{name} left: what it held is free.
        """
        self.held.pop(name, None)
