"""
C{twistd ioppy-agent}'s options (L{AgentOptions}) and service
(L{make_agent_service}).
"""

import re

from twisted.python import usage

from ..host.tun import IFNAMSIZ
from ..model.addressing import BadAddress, check_name, default_addresses
from ..model.routes import network
from ..model.wire import WIRE_FORMATS
from ..program.options import number, writable_path
from ..program.tap import CommonOptions, reactor_and_process, wrap
from .service import AgentConfig, AgentService

_NETNS = re.compile(r"[A-Za-z0-9_.-]{1,64}\Z")
_IFNAME = re.compile(r"[A-Za-z0-9_.-]{1,%d}\Z" % (IFNAMSIZ - 1))


class AgentOptions(CommonOptions):
    """
    Options of C{twistd ioppy-agent}.
    """

    synopsis = "--name agent_1 [--url amqp://user:pass@host/vhost] [options]"
    longdesc = (
        "Open a TUN interface and carry its IP packets over AMQP: packets the "
        "host sends into it are published as fromAgent.<name>.ip.tun.packet.raw, "
        "straight to their owner's inbox once the router has sent routes; "
        "packets from the router (toAgent.<name>.ip.tun.packet.raw) and from "
        "other agents (in ioppy.to.<name>) are written into it. Needs root (or "
        "CAP_NET_ADMIN) and /dev/net/tun.")

    optParameters = CommonOptions.optParameters + [
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
        ["pcap", None, None, "Write every packet the agent moves, both ways, to this "
                             "pcap file."],
        ["report-interval", None, "5", "Seconds between the agent's reports of its "
                                       "counters to the router, for its metrics (0: none)."],
        ["wire", None, "json", "Format of the packets the agent publishes: json "
                               "(ioppytest's) or raw (the packet bytes as "
                               "application/octet-stream; faster). Both are read."],
    ]

    def __init__(self):
        CommonOptions.__init__(self)
        self["routes"] = []

    def opt_route(self, prefix):
        """
        A prefix routed behind this host, such as cccc::/64 for an
        implementation on a 6LoWPAN network behind a border router here: the
        agent announces it, other agents send packets for it here, and this
        agent may send from it.  Give it once per prefix.
        """
        self["routes"].append(prefix)

    def postOptions(self):
        CommonOptions.postOptions(self)
        try:
            self["routes"] = [network(text) for text in self["routes"]]
        except BadAddress as e:
            raise usage.UsageError(f"--route: {e}") from None
        if self["name"] is None:
            raise usage.UsageError("--name is required, for example --name agent_1")
        number(self, "report-interval", 0)
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
        writable_path(self, "pcap")
        if self["wire"] not in WIRE_FORMATS:
            raise usage.UsageError(f"--wire {self['wire']!r}: use json or raw")

    def config(self):
        """
        @return: The L{AgentConfig} these options describe.
        """
        return AgentConfig(
            name=self["name"], addresses=self["addresses"], bus=self["bus"],
            report=self["report"], metrics=self["metrics"],
            report_interval=self["report-interval"], mtu=self["mtu"],
            tun_name=self["tun-name"],
            netns=self["netns"], pcap=self["pcap"], wire=self["wire"],
            prefixes=tuple(self["routes"]))


def make_agent_service(options, reactor=None, process=None):
    """
    @return: The agent service for parsed L{AgentOptions}.
    """
    reactor, process = reactor_and_process(reactor, process)
    return wrap(AgentService(reactor, options.config(), process), process)
