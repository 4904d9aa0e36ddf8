"""
Command-line options and service construction for the twistd plugins
C{ioppy-agent} and C{ioppy-router}.

C{postOptions} validates and converts every option; the options both
programs share are parsed once, by L{CommonOptions}, into a
L{BusConfig} and a L{ReportConfig}.  C{make_*_service} only builds
objects and does no I/O.
"""

import dataclasses
import os
import re

from twisted.application import service
from twisted.python import usage

from . import keys
from .addressing import BadAddress, check_name, default_addresses
from .grants import BadGrants, Grants
from .agent import AgentConfig, AgentService
from .bus.config import DEFAULT_PREFETCH
from .listening import LOOPBACK
from .metrics import MetricsConfig
from .options import BusOptions, number, port_and_address, writable_path
from .process import ProcessControl
from .recorder.stream import (DEFAULT_CHECK, DEFAULT_MAX_AGE, STREAM, BadRetention,
                              RecordConfig, parse_age, parse_size)
from .router import BadTopology, RouterConfig, RouterService, read_topology
from .routes import network
from .stats import ReportConfig
from .web import WebConfig
from .tun import IFNAMSIZ
from .wire import WIRE_FORMATS

_NETNS = re.compile(r"[A-Za-z0-9_.-]{1,64}\Z")
_IFNAME = re.compile(r"[A-Za-z0-9_.-]{1,%d}\Z" % (IFNAMSIZ - 1))


class CommonOptions(BusOptions):
    """
    The options both twistd programs take: the bus's, and what to report.
    L{postOptions} leaves a L{BusConfig} in C{self["bus"]}, a
    L{ReportConfig} in C{self["report"]} and a L{MetricsConfig} in
    C{self["metrics"]}.
    """

    optParameters = BusOptions.optParameters + [
        ["stats-interval", None, "60", "Seconds between summary lines in the log "
                                       "(0: none)."],
        ["status-file", None, None, "Keep a JSON status file here (counters and "
                                    "connection state)."],
        ["status-interval", None, "5", "Seconds between rewrites of --status-file."],
        ["metrics-port", None, None, "Serve Prometheus metrics on this TCP port, at "
                                     "/metrics (default: none)."],
        ["metrics-address", None, LOOPBACK,
         "Address to serve --metrics-port on (default: loopback only)."],
        ["prefetch", None, str(DEFAULT_PREFETCH),
         "Messages the broker may have sent unacknowledged (acknowledged a quarter "
         "at a time); beyond them a stalled program's messages wait in its queue, "
         "whose length limit bounds them (0: no acknowledgements, unbounded)."],
    ]

    def postOptions(self):
        BusOptions.postOptions(self)
        try:
            prefetch = int(self["prefetch"])
        except ValueError:
            prefetch = -1
        if not 0 <= prefetch <= 65535:
            raise usage.UsageError(f"--prefetch {self['prefetch']!r}: give a whole number "
                                   "of messages, 0..65535")
        self["bus"] = dataclasses.replace(self["bus"], prefetch=prefetch)
        number(self, "stats-interval", 0)
        number(self, "status-interval", 0, strictly=True)
        writable_path(self, "status-file")
        self["metrics"] = self._metrics()
        self["report"] = ReportConfig(stats_interval=self["stats-interval"],
                                      status_file=self["status-file"],
                                      status_interval=self["status-interval"])

    def _metrics(self):
        return MetricsConfig(*port_and_address(self, "metrics"))


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


class RouterOptions(CommonOptions):
    """
    Options of C{twistd ioppy-router}.
    """

    synopsis = "[--url amqp://user:pass@host/vhost] [--topology FILE]"
    longdesc = (
        "Tell each agent who owns which address, so that packets go straight "
        "between agents through the broker, and forward what cannot (packets "
        "to and from original ioppytest agents) from fromAgent.<name>.ip.tun."
        "packet.raw to toAgent.<peer>.ip.tun.packet.raw, for the agents that "
        "should see it: every other agent known on the vhost, or the links of "
        "--topology.")

    optParameters = CommonOptions.optParameters + [
        ["topology", "t", None,
         'JSON file of fixed routes: {"links": [["agent_1", "agent_2"]], '
         '"observers": ["agent_TT"]}'],
        ["pcap-dir", None, None, "Write every packet routed to <dir>/<vhost>.pcap."],
        ["record-max-age", None, DEFAULT_MAX_AGE,
         "With --record: drop recorded packets older than this (RabbitMQ's units: "
         "Y, M (months), D, h, m (minutes), s)."],
        ["record-max-bytes", None, "1GiB",
         "With --record: keep at most this much of the record (500MB, 2GiB, ...)."],
        ["record-check", None, DEFAULT_CHECK,
         "With --record: seconds between two looks at how far back the record "
         "reaches (a warning when less than an hour)."],
        ["web-port", None, None, "Serve the live page of the session on this TCP port "
                                 "(default: none)."],
        ["web-address", None, LOOPBACK,
         "Address to serve --web-port on (default: loopback only)."],
        ["grants", None, None,
         "The grants file ioppy-session create wrote: which addresses and prefixes "
         "each participant may own (needed with a session's router URL file). "
         "Without it the first claim of an address wins."],
    ]
    optFlags = [
        ["record", None, f"Keep every packet of the session in the broker's stream "
                         f"{STREAM!r}, for ioppy-capture."],
    ]

    def __init__(self):
        CommonOptions.__init__(self)
        self["roll-call"] = []

    def opt_roll_call(self, name):
        """
        On connecting, ask agent NAME to announce itself (toAgent.NAME.ip.tun.start,
        as ioppytest's coordinator does), unless it already has: for an original
        agent started before the router. Repeatable; the --topology's agents are
        asked too.
        """
        try:
            self["roll-call"].append(check_name(name))
        except BadAddress as e:
            raise usage.UsageError(f"--roll-call: {e}") from None

    def postOptions(self):
        CommonOptions.postOptions(self)
        self["record"] = self._record()
        self["web"] = WebConfig(*port_and_address(self, "web"))
        if self["pcap-dir"] is not None and not os.path.isdir(self["pcap-dir"]):
            raise usage.UsageError(f"--pcap-dir {self['pcap-dir']} is not a directory")
        if self["topology"] is not None:
            try:
                self["topology"] = read_topology(self["topology"])
            except BadTopology as e:
                raise usage.UsageError(f"--topology {e}") from None
        self["grants"] = self._grants()

    def _grants(self):
        url = self["bus"].url
        path = self["grants"]
        if path is None:
            if keys.session_of(url, keys.SESSION_ROUTER) is not None:
                raise usage.UsageError(
                    f"user {url.username!r} is the router of session {url.vhost!r}: give "
                    "--grants with the grants file ioppy-session create wrote beside the "
                    "URL files")
            return None
        try:
            with open(path, encoding="utf-8") as f:
                return Grants.loads(f.read())
        except OSError as e:
            raise usage.UsageError(f"--grants {path}: {e.strerror}") from None
        except BadGrants as e:
            raise usage.UsageError(f"--grants {path}: {e}") from None

    def _record(self):
        given = [key for key in ("record-max-age", "record-max-bytes", "record-check")
                 if self[key] != self.defaults[key]]
        if not self["record"]:
            if given:
                raise usage.UsageError(f"--{given[0]} needs --record")
            return None
        number(self, "record-check", 1)
        try:
            return RecordConfig(max_age=parse_age(self["record-max-age"]),
                                max_bytes=parse_size(self["record-max-bytes"]),
                                check=self["record-check"])
        except BadRetention as e:
            raise usage.UsageError(str(e)) from None

    def config(self):
        """
        @return: The L{RouterConfig} these options describe.
        """
        return RouterConfig(bus=self["bus"], report=self["report"], metrics=self["metrics"],
                            topology=self["topology"], pcap_dir=self["pcap-dir"],
                            record=self["record"], web=self["web"],
                            roll_call=tuple(self["roll-call"]), grants=self["grants"])


def _wrap(child, process):
    """
    @return: A parent service that starts C{process} (a L{ProcessControl})
        before C{child}.
    """
    parent = service.MultiService()
    process.setServiceParent(parent)
    child.setServiceParent(parent)
    return parent


def _reactor_and_process(reactor, process):
    if reactor is None:
        from twisted.internet import reactor
    if process is None:
        process = ProcessControl(reactor)
    return reactor, process


def make_agent_service(options, reactor=None, process=None):
    """
    @return: The agent service for parsed L{AgentOptions}.
    """
    reactor, process = _reactor_and_process(reactor, process)
    return _wrap(AgentService(reactor, options.config(), process), process)


def make_router_service(options, reactor=None, process=None):
    """
    @return: The router service for parsed L{RouterOptions}.
    """
    reactor, process = _reactor_and_process(reactor, process)
    return _wrap(RouterService(reactor, options.config(), process), process)
