"""
Interface configuration over netlink with pyroute2: addresses, MTU, link
state and moving an interface into another network namespace.  Nothing here
runs a shell command.

These calls block for the few milliseconds the kernel takes to answer; they
run at start-up and when a C{tun.start} message re-addresses the interface.
"""

import os

from pyroute2 import IPRoute, NetNS
from pyroute2.netlink.exceptions import NetlinkError

NETNS_DIR = "/var/run/netns"

# IFA_F_NODAD: use an IPv6 address at once, without duplicate detection
# (a TUN interface has no neighbours to collide with).
IFA_F_NODAD = 0x02
# IN6_ADDR_GEN_MODE_NONE: the kernel adds no link-local address of its own,
# so that fe80::<host>, which the agent announces, is the only one.
ADDR_GEN_MODE_NONE = 1


class NetlinkFailure(Exception):
    """
    The kernel refused an interface change.  The message says which.
    """


def netns_exists(name):
    """
    @return: Whether C{ip netns} knows a namespace called C{name}.
    """
    return os.path.exists(os.path.join(NETNS_DIR, name))


def require_netns(name, exists=netns_exists):
    """
    @raise NetlinkFailure: naming the command that creates C{name}, if
        there is no such namespace.
    """
    if not exists(name):
        raise NetlinkFailure(f"network namespace {name!r} does not exist "
                             f"(create it with 'ip netns add {name}')")


def _open(netns):
    try:
        return NetNS(netns) if netns else IPRoute()
    except (OSError, NetlinkError) as e:
        where = f"network namespace {netns!r}" if netns else "the host"
        raise NetlinkFailure(f"cannot open netlink in {where}: {e}") from None


def _index(ipr, ifname, netns):
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        where = f" in network namespace {netns!r}" if netns else ""
        raise NetlinkFailure(f"interface {ifname!r} not found{where}")
    return found[0]


def move_to_netns(ifname, netns, new_name):
    """
    Move interface C{ifname} from this namespace into C{netns} and rename it
    there to C{new_name}.

    @raise NetlinkFailure: if the namespace does not exist, or the name is
        taken there.
    """
    require_netns(netns)
    ipr = _open(None)
    try:
        index = _index(ipr, ifname, None)
        ipr.link("set", index=index, net_ns_fd=netns)
    except NetlinkError as e:
        raise NetlinkFailure(f"cannot move {ifname!r} into network namespace "
                             f"{netns!r}: {e}") from None
    finally:
        ipr.close()
    ns = _open(netns)
    try:
        index = _index(ns, ifname, netns)
        if new_name != ifname:
            ns.link("set", index=index, ifname=new_name)
    except NetlinkError as e:
        raise NetlinkFailure(f"cannot rename {ifname!r} to {new_name!r} in network "
                             f"namespace {netns!r}: {e} (is the name taken?)") from None
    finally:
        ns.close()


def _check_unused(ipr, index, addresses, netns):
    """
    @raise NetlinkFailure: if another interface in the namespace already has
        one of C{addresses} (link-local ones may repeat across interfaces).
    """
    mine = {str(a.ip) for a in addresses if not a.ip.is_link_local}
    for existing in ipr.get_addr():
        address = existing.get_attr("IFA_ADDRESS")
        if existing["index"] != index and address in mine:
            links = ipr.get_links(existing["index"])
            other = links[0].get_attr("IFLA_IFNAME") if links else f"#{existing['index']}"
            where = f" in network namespace {netns!r}" if netns else " on this host"
            option = "--ipv4" if ":" not in address else "--ipv6-prefix/--ipv6-host"
            raise NetlinkFailure(f"address {address} is already in use on {other}{where}; "
                                 f"choose another with {option}")


def configure(ifname, addresses, mtu, netns=None):
    """
    Give interface C{ifname} exactly C{addresses} (replacing any it has),
    set its MTU and bring it up.

    @param addresses: L{ipaddress.IPv4Interface} and
        L{ipaddress.IPv6Interface} objects.
    @param netns: The network namespace the interface is in, or C{None} for
        this process's own.
    @raise NetlinkFailure: if the kernel refuses, or another interface has
        one of the addresses; the message says what.
    """
    ipr = _open(netns)
    try:
        index = _index(ipr, ifname, netns)
        _check_unused(ipr, index, addresses, netns)
        ipr.link("set", index=index, mtu=mtu)
        ipr.link("set", index=index, IFLA_AF_SPEC={"attrs": [["AF_INET6", {"attrs": [
            ["IFLA_INET6_ADDR_GEN_MODE", ADDR_GEN_MODE_NONE]]}]]})
        wanted = {(str(a.ip), a.network.prefixlen) for a in addresses}
        for existing in ipr.get_addr(index=index):
            key = (existing.get_attr("IFA_ADDRESS"), existing["prefixlen"])
            if key not in wanted:
                ipr.addr("del", index=index, address=key[0], prefixlen=key[1])
        have = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"])
                for a in ipr.get_addr(index=index)}
        for address in addresses:
            key = (str(address.ip), address.network.prefixlen)
            if key in have:
                continue
            kwargs = {}
            if address.version == 6:
                kwargs["flags"] = IFA_F_NODAD
            ipr.addr("add", index=index, address=key[0], prefixlen=key[1], **kwargs)
        ipr.link("set", index=index, state="up")
    except NetlinkError as e:
        raise NetlinkFailure(f"cannot configure interface {ifname!r}: {e}") from None
    finally:
        ipr.close()


def route(ifname, networks, remove=False, netns=None):
    """
    Route C{networks} (L{ipaddress} networks) into interface C{ifname}, or
    with C{remove} no longer.

    @raise NetlinkFailure: if the kernel refuses.
    """
    ipr = _open(netns)
    try:
        index = _index(ipr, ifname, netns)
        for net in networks:
            try:
                ipr.route("del" if remove else "replace", dst=str(net), oif=index)
            except NetlinkError as e:
                if not remove:
                    raise NetlinkFailure(f"cannot route {net} into {ifname!r}: {e}") from None
    finally:
        ipr.close()
