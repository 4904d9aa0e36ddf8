"""
Routes: who owns which addresses, and the decisions made from them for each
packet, shared by the agent and the router.

L{Routes} is what the router tells an agent (the body of
C{ioppy.routes.<name>}): which agents own which addresses and how to reach
each (straight through the broker, or through the router), which observers
get a copy of every packet, and the addresses of the agents it may hear
from.  L{Directory} answers, for one packet, who owns its destination and
whether its source belongs to its sender.

Pure: no I/O, no Twisted.  Addresses are compared as integers, looked up by
exact host first and then by the longest prefix.
"""

import ipaddress
from dataclasses import dataclass, field
from typing import Dict, Tuple

from .addressing import BadAddress, check_name

DIRECT = "direct"
ROUTER = "router"
NONE = "none"
PATHS = (DIRECT, ROUTER)
MODES = (DIRECT, ROUTER)
_V6_UNSPECIFIED = bytes(16)
# Next headers of IPv6 packets that may come from "::" (duplicate-address
# detection and MLD): ICMPv6, and the hop-by-hop header MLD reports use.
_FROM_UNSPECIFIED = (58, 0)


class BadRoutes(ValueError):
    """
    A routes message that cannot be used.
    """


def network(text):
    """
    @return: The L{ipaddress} network C{text} names; a bare address is a
        host (/32 or /128).
    @raise BadAddress: if it is not one.
    """
    try:
        return ipaddress.ip_network(text, strict=False)
    except (TypeError, ValueError) as e:
        raise BadAddress(f"{text!r} is not an IP address or prefix: {e}") from None


def addresses_of(packet):
    """
    @return: C{(version, source, destination)} of an IP packet, the
        addresses as C{bytes}; C{None} if it is too short to hold them.
    """
    version = packet[0] >> 4
    if version == 4:
        if len(packet) < 20:
            return None
        return 4, packet[12:16], packet[16:20]
    if version == 6:
        if len(packet) < 40:
            return None
        return 6, packet[8:24], packet[24:40]
    return None


def is_group(version, destination):
    """
    @return: Whether C{destination} is a multicast or broadcast address
        (IPv4 224.0.0.0/3, which holds the limited broadcast; IPv6 ff00::/8).
    """
    return destination[0] >= 224 if version == 4 else destination[0] == 0xFF


class Directory:
    """
    Owners of addresses: each agent's hosts and prefixes.
    """

    def __init__(self, owners=()):
        """
        @param owners: C{(name, [network, ...])} pairs; networks as text or
            L{ipaddress} networks, or interfaces, which stand for their host
            address.
        """
        self._hosts = {}
        self._prefixes = []
        self.networks = {}
        for name, networks in owners:
            self.add(name, networks)

    def add(self, name, networks):
        """
        Give agent C{name} these C{networks} (with those it had).
        """
        mine = self.networks.setdefault(name, [])
        for net in networks:
            if isinstance(net, str):
                net = network(net)
            elif hasattr(net, "ip"):
                # An interface address (10.2.0.1/24): the host, not its subnet.
                net = ipaddress.ip_network(net.ip)
            mine.append(net)
            if net.prefixlen == net.max_prefixlen:
                self._hosts[net.network_address.packed] = name
            else:
                self._prefixes.append((net.prefixlen, net.version, int(net.network_address),
                                       int(net.netmask), name))
        self._prefixes.sort(reverse=True)

    def owner(self, version, address):
        """
        @return: The agent owning C{address} (C{bytes}), or C{None}.
        """
        name = self._hosts.get(address)
        if name is not None:
            return name
        if self._prefixes:
            value = int.from_bytes(address, "big")
            for _, v, net, mask, name in self._prefixes:
                if v == version and value & mask == net:
                    return name
        return None

    def owns(self, name, version, address):
        """
        @return: Whether agent C{name} owns C{address}.
        """
        return self.owner(version, address) == name


def source_allowed(directory, name, packet, version, source, link_local=False):
    """
    @param link_local: Whether C{name} may also send from any IPv6
        link-local address (C{fe80::/10}).  The router allows it for an
        original ioppytest agent, whose TUN has a kernel-made link-local
        address beside C{fe80::<host>} that it never announces; an ioppy
        agent announces every address it sends from.
    @return: Whether agent C{name} may send C{packet} from C{source}: one of
        its addresses, or for IPv6 the unspecified address on ICMPv6 and
        hop-by-hop packets (duplicate-address detection, MLD).
    """
    if directory.owner(version, source) == name:
        return True
    if version != 6:
        return False
    if link_local and source[0] == 0xFE and source[1] & 0xC0 == 0x80:
        return True
    return source == _V6_UNSPECIFIED and packet[6] in _FROM_UNSPECIFIED


@dataclass(frozen=True)
class Peer:
    """
    An agent a routes message names: its addresses, and how to reach it.
    """

    addresses: Tuple[str, ...]
    path: str = DIRECT


@dataclass(frozen=True)
class Routes:
    """
    What the router tells one agent.

    @ivar router: Which router said it (a random id per router run).
    @ivar serial: Counts up with each routes message the router sends.
    @ivar mode: C{"direct"}, or C{"router"} to send every packet through the
        router (while a lossy link drops packets, say).
    @ivar destinations: The agents it may send to, by name.
    @ivar multicast: How multicast and broadcast go: C{"direct"},
        C{"router"}, or C{"none"} with nobody to send them to.
    @ivar senders: The agents it may hear from, by name, with their
        addresses.
    @ivar observers: The agents that get a copy of each unicast packet it
        sends straight, besides the owner.
    """

    router: str
    serial: int
    mode: str = DIRECT
    destinations: Dict[str, Peer] = field(default_factory=dict)
    multicast: str = NONE
    senders: Dict[str, Tuple[str, ...]] = field(default_factory=dict)
    observers: Tuple[str, ...] = ()

    def to_json(self):
        """
        @return: The routes as a JSON-able dict.
        """
        return {"router": self.router, "serial": self.serial, "mode": self.mode,
                "multicast": self.multicast, "observers": list(self.observers),
                "destinations": {name: {"addresses": list(p.addresses), "path": p.path}
                                 for name, p in sorted(self.destinations.items())},
                "senders": {name: list(a) for name, a in sorted(self.senders.items())}}


def _text_list(value, what):
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadRoutes(f"{what} must be a list of strings")
    return tuple(value)


def _addresses(value, what):
    addresses = _text_list(value, what)
    try:
        for text in addresses:
            network(text)
    except BadAddress as e:
        raise BadRoutes(f"{what}: {e}") from None
    return addresses


def _name(name):
    try:
        return check_name(name)
    except BadAddress as e:
        raise BadRoutes(str(e)) from None


def routes_from_json(obj):
    """
    Check and convert the body of a routes message.

    @raise BadRoutes: saying what is wrong.
    """
    if not isinstance(obj, dict):
        raise BadRoutes("a routes message must be a JSON object")
    router, serial = obj.get("router"), obj.get("serial")
    if not isinstance(router, str) or type(serial) is not int:
        raise BadRoutes("a routes message needs a router id and a whole serial number")
    mode = obj.get("mode", DIRECT)
    multicast = obj.get("multicast", NONE)
    if mode not in MODES or multicast not in (*PATHS, NONE):
        raise BadRoutes(f"unknown mode {mode!r} or multicast path {multicast!r}")
    observers = tuple(_name(name) for name in _text_list(obj.get("observers", []),
                                                          "observers"))
    destinations = obj.get("destinations", {})
    senders = obj.get("senders", {})
    if not isinstance(destinations, dict) or not isinstance(senders, dict):
        raise BadRoutes("destinations and senders must be objects")
    peers = {}
    for name, peer in destinations.items():
        if not isinstance(peer, dict) or peer.get("path", DIRECT) not in PATHS:
            raise BadRoutes(f"destination {name!r} needs addresses and a path")
        peers[_name(name)] = Peer(_addresses(peer.get("addresses", []), f"{name}'s addresses"),
                                  peer.get("path", DIRECT))
    heard = {_name(name): _addresses(addresses, f"{name}'s addresses")
             for name, addresses in senders.items()}
    return Routes(router, serial, mode, peers, multicast, heard, observers)
