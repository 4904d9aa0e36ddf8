"""
Agent names and the addresses of an agent's TUN interface.
"""

import ipaddress
import re
from dataclasses import dataclass

NAME_MAX_LENGTH = 64
_NAME = re.compile(r"[A-Za-z0-9_-]{1,%d}\Z" % NAME_MAX_LENGTH)
_NUMBERED = re.compile(r".*?(\d+)\Z")


class BadAddress(ValueError):
    """
    An agent name or address that cannot be used.
    """


def check_name(name):
    """
    Agent names become part of routing keys, so only letters, digits, C{_}
    and C{-} are allowed (no C{.}, C{*} or C{#}, which mean something to a
    topic exchange).

    @return: C{name}
    @raise BadAddress: if the name is not allowed.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise BadAddress(
            f"agent name {name!r} is not allowed: use 1 to {NAME_MAX_LENGTH} "
            "letters, digits, '_' or '-' (no '.', '*', '#' or spaces)"
        )
    return name


def name_number(name):
    """
    @return: The number at the end of an agent name (C{agent_2} gives C{2}),
        or C{None} if there is none.
    """
    match = _NUMBERED.match(name)
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class TunAddresses:
    """
    The addresses of one agent's TUN interface.

    @ivar ipv4: The IPv4 address with its prefix length.
    @ivar ipv6_prefix: The first groups of the IPv6 address (C{"bbbb"}).
    @ivar ipv6_host: The last groups of the IPv6 address (C{"1"}).
    """

    ipv4: ipaddress.IPv4Interface
    ipv6_prefix: str = "bbbb"
    ipv6_host: str = "1"

    @property
    def ipv6(self):
        """
        @return: C{<prefix>::<host>/64}
        """
        return _ipv6(f"{self.ipv6_prefix}::{self.ipv6_host}/64")

    @property
    def link_local(self):
        """
        @return: C{fe80::<host>/64}
        """
        return _ipv6(f"fe80::{self.ipv6_host}/64")

    def all(self):
        """
        @return: Every address to put on the interface.
        """
        return [self.ipv4, self.ipv6, self.link_local]

    def started_fields(self):
        """
        @return: The address fields of ioppytest's C{ip.tun.started}.
        """
        return {
            "ipv4_host": str(self.ipv4.ip),
            "ipv4_network": str(self.ipv4.network.network_address),
            "ipv4_netmask": str(self.ipv4.netmask),
            "ipv6_prefix": self.ipv6_prefix,
            "ipv6_host": ":" + self.ipv6_host,
            "ipv6_no_forwarding": False,
        }


def _ipv6(text):
    try:
        return ipaddress.IPv6Interface(text)
    except ValueError as e:
        raise BadAddress(f"{text} is not a valid IPv6 address: {e}") from None


def parse_ipv4(text):
    """
    Parse C{10.2.0.1/24}; a bare address gets C{/24}.
    """
    if "/" not in text:
        text += "/24"
    try:
        iface = ipaddress.IPv4Interface(text)
    except ValueError as e:
        raise BadAddress(f"--ipv4 {text!r} is not an IPv4 address in CIDR form "
                         f"such as 10.2.0.1/24: {e}") from None
    if iface.ip in (iface.network.network_address, iface.network.broadcast_address) \
            and iface.network.prefixlen < 31:
        raise BadAddress(f"--ipv4 {text!r} is the network or broadcast address "
                         "of its subnet; choose a host address")
    return iface


def make_addresses(ipv4, ipv6_prefix, ipv6_host):
    """
    Build and check a L{TunAddresses}.

    @param ipv4: An L{ipaddress.IPv4Interface} or its text.
    @param ipv6_prefix: Such as C{"bbbb"}; a trailing C{:} is ignored.
    @param ipv6_host: Such as C{"1"}; a leading C{:} is ignored (ioppytest's
        old API sends C{":1"}).
    """
    if isinstance(ipv4, str):
        ipv4 = parse_ipv4(ipv4)
    prefix = str(ipv6_prefix).rstrip(":")
    host = str(ipv6_host).lstrip(":")
    if not prefix or not host:
        raise BadAddress(f"IPv6 prefix {ipv6_prefix!r} and host {ipv6_host!r} "
                         "must both be given, as in bbbb and 1 for bbbb::1")
    if "::" in prefix or "::" in host:
        raise BadAddress(f"IPv6 prefix {ipv6_prefix!r} and host {ipv6_host!r} "
                         "must not contain '::'; they are joined with '::'")
    addresses = TunAddresses(ipv4, prefix, host)
    addresses.ipv6  # noqa: B018 -- validates
    addresses.link_local  # noqa: B018
    return addresses


def default_addresses(name, ipv4=None, ipv6_prefix=None, ipv6_host=None):
    """
    Addresses for agent C{name}: C{agent_N} gets C{10.2.0.N/24}, C{bbbb::N}
    and C{fe80::N} unless given otherwise.

    @raise BadAddress: if an address is missing and the name has no number,
        or the number does not fit in 10.2.0.0/24.
    """
    number = name_number(name)
    if number is None and (ipv4 is None or ipv6_host is None):
        raise BadAddress(
            f"agent name {name!r} ends in no number, so no default address "
            "can be derived from it; give --ipv4 and --ipv6-host"
        )
    if ipv4 is None and not 1 <= number <= 254:
        raise BadAddress(
            f"agent name {name!r}: {number} is outside 1..254, so 10.2.0.{number} "
            "is not a host address; give --ipv4"
        )
    return make_addresses(
        ipv4 if ipv4 is not None else f"10.2.0.{number}/24",
        ipv6_prefix if ipv6_prefix is not None else "bbbb",
        ipv6_host if ipv6_host is not None else str(number),
    )
