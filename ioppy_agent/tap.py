"""
Command-line options and service construction for the twistd plugins
C{ioppy-agent} and C{ioppy-router}.

C{postOptions} validates and converts every option; C{make_*_service} only
builds objects and does no I/O.
"""

import os
import re

from twisted.application import service
from twisted.python import usage

from .addressing import BadAddress, check_name, default_addresses
from .agent import AgentConfig, AgentService
from .amqp import DEFAULT_HEARTBEAT
from .process import ProcessControl
from .router import BadTopology, RouterConfig, RouterService, parse_topology
from .tun import IFNAMSIZ
from .url import DEFAULT_URL, BadURL, parse_amqp_url

_EXCHANGE = re.compile(r"[A-Za-z0-9_.:-]{1,255}\Z")
_NETNS = re.compile(r"[A-Za-z0-9_.-]{1,64}\Z")
_IFNAME = re.compile(r"[A-Za-z0-9_.-]{1,%d}\Z" % (IFNAMSIZ - 1))


class _BusOptions(usage.Options):
    """
    Options shared by the agent and the router.
    """

    optParameters = [
        ["url", "u", None,
         "AMQP URL amqp://user:password@host[:port]/vhost (default: $AMQP_URL, "
         "else " + DEFAULT_URL + ")"],
        ["exchange", "x", "amq.topic", "Topic exchange to publish and bind on."],
    ]

    def postOptions(self):
        text = self["url"] or os.environ.get("AMQP_URL") or DEFAULT_URL
        try:
            self["url"] = parse_amqp_url(text)
        except BadURL as e:
            raise usage.UsageError(f"--url: {e}") from None
        if not _EXCHANGE.match(self["exchange"] or ""):
            raise usage.UsageError(
                f"--exchange {self['exchange']!r}: use 1 to 255 letters, digits, "
                "'_', '-', '.' or ':'")


class AgentOptions(_BusOptions):
    """
    Options of C{twistd ioppy-agent}.
    """

    synopsis = "--name agent_1 [--url amqp://user:pass@host/vhost] [options]"
    longdesc = (
        "Open a TUN interface and carry its IP packets over AMQP: packets the "
        "host sends into it are published as fromAgent.<name>.ip.tun.packet.raw; "
        "packets consumed from toAgent.<name>.ip.tun.packet.raw are written "
        "into it. Needs root (or CAP_NET_ADMIN) and /dev/net/tun.")

    optParameters = _BusOptions.optParameters + [
        ["name", "N", None, "Agent name (letters, digits, '_', '-'), such as agent_1. "
                            "Required."],
        ["ipv4", None, None, "IPv4 address/prefix of the TUN (default 10.2.0.N/24 "
                             "for agent_N)."],
        ["ipv6-prefix", None, None, "IPv6 prefix (default bbbb, giving bbbb::N)."],
        ["ipv6-host", None, None, "IPv6 host part (default N for agent_N); the "
                                  "link-local address is fe80::<host>."],
        ["mtu", None, "1500", "MTU of the TUN interface (576..65535)."],
        ["tun-name", None, "tun0", "Name of the TUN interface."],
        ["netns", None, None, "Put the TUN interface in this existing network "
                              "namespace; the agent itself stays where it is."],
    ]

    def postOptions(self):
        _BusOptions.postOptions(self)
        if self["name"] is None:
            raise usage.UsageError("--name is required, for example --name agent_1")
        try:
            check_name(self["name"])
            self["addresses"] = default_addresses(
                self["name"], self["ipv4"], self["ipv6-prefix"], self["ipv6-host"])
        except BadAddress as e:
            raise usage.UsageError(str(e)) from None
        try:
            self["mtu"] = int(self["mtu"])
        except ValueError:
            raise usage.UsageError(f"--mtu {self['mtu']!r} is not a whole number") from None
        if not 576 <= self["mtu"] <= 65535:
            raise usage.UsageError(f"--mtu {self['mtu']} is outside 576..65535 "
                                   "(IPv4 needs 576, IPv6 needs 1280 to be usable)")
        if not _IFNAME.match(self["tun-name"] or ""):
            raise usage.UsageError(
                f"--tun-name {self['tun-name']!r}: use 1 to {IFNAMSIZ - 1} letters, "
                "digits, '_', '-' or '.'")
        if self["netns"] is not None and not _NETNS.match(self["netns"]):
            raise usage.UsageError(f"--netns {self['netns']!r} is not a namespace name "
                                   "(letters, digits, '_', '-', '.')")


class RouterOptions(_BusOptions):
    """
    Options of C{twistd ioppy-router}.
    """

    synopsis = "[--url amqp://user:pass@host/vhost] [--topology FILE]"
    longdesc = (
        "Forward every fromAgent.<name>.ip.tun.packet.raw message to "
        "toAgent.<peer>.ip.tun.packet.raw for the agents that should see it: "
        "every other agent known on the vhost, or the links of --topology.")

    optParameters = _BusOptions.optParameters + [
        ["topology", "t", None,
         'JSON file of fixed routes: {"links": [["agent_1", "agent_2"]], '
         '"observers": ["agent_TT"]}'],
    ]

    def postOptions(self):
        _BusOptions.postOptions(self)
        if self["topology"] is not None:
            path = self["topology"]
            try:
                with open(path, encoding="utf-8") as f:
                    self["topology"] = parse_topology(f.read())
            except OSError as e:
                raise usage.UsageError(f"--topology {path}: {e.strerror}") from None
            except BadTopology as e:
                raise usage.UsageError(f"--topology {path}: {e}") from None


def _wrap(child, process):
    """
    @return: A parent service that starts C{process} (a L{ProcessControl})
        before C{child}.
    """
    parent = service.MultiService()
    process.setServiceParent(parent)
    child.setServiceParent(parent)
    return parent


def make_agent_service(options, reactor=None, process=None):
    """
    @return: The agent service for parsed L{AgentOptions}.
    """
    if reactor is None:
        from twisted.internet import reactor
    if process is None:
        process = ProcessControl(reactor)
    config = AgentConfig(
        name=options["name"], url=options["url"], addresses=options["addresses"],
        exchange=options["exchange"], mtu=options["mtu"], tun_name=options["tun-name"],
        netns=options["netns"], heartbeat=DEFAULT_HEARTBEAT)
    return _wrap(AgentService(reactor, config, process), process)


def make_router_service(options, reactor=None, process=None):
    """
    @return: The router service for parsed L{RouterOptions}.
    """
    if reactor is None:
        from twisted.internet import reactor
    if process is None:
        process = ProcessControl(reactor)
    config = RouterConfig(url=options["url"], exchange=options["exchange"],
                          topology=options["topology"], heartbeat=DEFAULT_HEARTBEAT)
    return _wrap(RouterService(reactor, config, process), process)
