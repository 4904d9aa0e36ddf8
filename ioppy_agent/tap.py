"""
Command-line options and service construction for the twistd plugins
C{ioppy-agent} and C{ioppy-router}.

C{postOptions} validates and converts every option; the options both
programs share are parsed once, by L{CommonOptions}, into a
L{BusConfig} and a L{ReportConfig}.  C{make_*_service} only builds
objects and does no I/O.
"""

import ipaddress
import math
import os
import re

from twisted.application import service
from twisted.python import usage

from .addressing import BadAddress, check_name, default_addresses
from .agent import AgentConfig, AgentService
from .bus import DEFAULT_EXCHANGE, DEFAULT_HEARTBEAT, BusConfig
from .bus.tls import TLSConfigError, TLSSettings, load_ca, load_client_certificate
from .metrics import DEFAULT_ADDRESS as DEFAULT_METRICS_ADDRESS, MetricsConfig
from .process import ProcessControl
from .router import BadTopology, RouterConfig, RouterService, read_topology
from .routes import network
from .stats import ReportConfig
from .tun import IFNAMSIZ
from .url import DEFAULT_URL, BadURL, parse_amqp_url
from .wire import WIRE_FORMATS

_EXCHANGE = re.compile(r"[A-Za-z0-9_.:-]{1,255}\Z")
_NETNS = re.compile(r"[A-Za-z0-9_.-]{1,64}\Z")
_IFNAME = re.compile(r"[A-Za-z0-9_.-]{1,%d}\Z" % (IFNAMSIZ - 1))


def _number(options, key, minimum, strictly=False):
    """
    Convert option C{key} to a float of at least (or above) C{minimum}.
    """
    text = options[key]
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise usage.UsageError(f"--{key} {text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < minimum or (strictly and value == minimum):
        bound = f"more than {minimum:g}" if strictly else f"at least {minimum:g}"
        raise usage.UsageError(f"--{key} {text!r} must be {bound}")
    options[key] = value


def _writable_path(options, key):
    """
    Check that the directory of path option C{key} exists.
    """
    path = options[key]
    if path is None:
        return
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise usage.UsageError(f"--{key} {path}: the directory {directory} does not exist")


def read_url_file(path):
    """
    @return: The lines of C{path} that are neither empty nor comments: one
        URL per broker.
    @raise usage.UsageError: if there is none or the file cannot be read.
    """
    try:
        with open(path, encoding="utf-8") as f:
            urls = [line.strip() for line in f]
    except OSError as e:
        raise usage.UsageError(f"--url-file {path}: {e.strerror}") from None
    urls = [url for url in urls if url and not url.startswith("#")]
    if not urls:
        raise usage.UsageError(f"--url-file {path} holds no URL")
    return urls


class CommonOptions(usage.Options):
    """
    The options both programs take: where the bus is, and what to report.
    L{postOptions} leaves a L{BusConfig} in C{self["bus"]} and a
    L{ReportConfig} in C{self["report"]}.
    """

    optParameters = [
        ["url-file", None, None,
         "Read the AMQP URLs from this file, one per line (keeps the password out "
         "of ps)."],
        ["exchange", "x", DEFAULT_EXCHANGE, "Topic exchange to publish and bind on."],
        ["tls-ca", None, None, "amqps: PEM file of the CAs that sign the broker's "
                               "certificate (default: the system's CAs)."],
        ["tls-cert", None, None, "amqps: PEM client certificate to present."],
        ["tls-key", None, None, "amqps: PEM private key of --tls-cert (if not in it)."],
        ["stats-interval", None, "60", "Seconds between summary lines in the log "
                                       "(0: none)."],
        ["status-file", None, None, "Keep a JSON status file here (counters and "
                                    "connection state)."],
        ["status-interval", None, "5", "Seconds between rewrites of --status-file."],
        ["metrics-port", None, None, "Serve Prometheus metrics on this TCP port, at "
                                     "/metrics (default: none)."],
        ["metrics-address", None, DEFAULT_METRICS_ADDRESS,
         "Address to serve --metrics-port on (default: loopback only)."],
        ["heartbeat", None, str(DEFAULT_HEARTBEAT),
         "AMQP heartbeat in seconds: a broker silent for twice this long is taken "
         "for dead and the connection made again (0: no heartbeats)."],
    ]

    def __init__(self):
        usage.Options.__init__(self)
        self["urls"] = []

    def opt_url(self, url):
        """
        AMQP URL amqp://user:password@host[:port]/vhost, or amqps:// for TLS.
        Give it once per broker of a cluster: on failure the next is tried.
        (default: --url-file, else $AMQP_URL, else amqp://guest:guest@localhost/)
        """
        self["urls"].append(url)

    opt_u = opt_url

    def postOptions(self):
        if self["urls"] and self["url-file"] is not None:
            raise usage.UsageError("give --url or --url-file, not both")
        if self["url-file"] is not None:
            texts = read_url_file(self["url-file"])
        else:
            texts = self["urls"] or [os.environ.get("AMQP_URL") or DEFAULT_URL]
        try:
            self["urls"] = [parse_amqp_url(text) for text in texts]
        except BadURL as e:
            raise usage.UsageError(f"--url: {e}") from None
        self["url"] = self["urls"][0]
        if not _EXCHANGE.match(self["exchange"] or ""):
            raise usage.UsageError(
                f"--exchange {self['exchange']!r}: use 1 to 255 letters, digits, "
                "'_', '-', '.' or ':'")
        self["tls"] = self._tls()
        try:
            self["heartbeat"] = int(self["heartbeat"])
        except ValueError:
            raise usage.UsageError(f"--heartbeat {self['heartbeat']!r} is not a whole "
                                   "number of seconds") from None
        if not 0 <= self["heartbeat"] <= 3600:
            raise usage.UsageError(f"--heartbeat {self['heartbeat']} is outside 0..3600")
        _number(self, "stats-interval", 0)
        _number(self, "status-interval", 0, strictly=True)
        _writable_path(self, "status-file")
        self["bus"] = BusConfig(urls=tuple(self["urls"]), exchange=self["exchange"],
                                tls=self["tls"], heartbeat=self["heartbeat"])
        self["metrics"] = self._metrics()
        self["report"] = ReportConfig(stats_interval=self["stats-interval"],
                                      status_file=self["status-file"],
                                      status_interval=self["status-interval"])

    def _metrics(self):
        port, address = self["metrics-port"], self["metrics-address"]
        if port is None:
            return MetricsConfig()
        try:
            port = int(port)
        except ValueError:
            raise usage.UsageError(f"--metrics-port {port!r} is not a port number") from None
        if not 1 <= port <= 65535:
            raise usage.UsageError(f"--metrics-port {port} is outside 1..65535")
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise usage.UsageError(f"--metrics-address {address!r} is not an IP "
                                   "address") from None
        return MetricsConfig(port, address)

    def _tls(self):
        given = [k for k in ("tls-ca", "tls-cert", "tls-key") if self[k] is not None]
        if not any(url.tls for url in self["urls"]):
            if given:
                raise usage.UsageError(f"--{given[0]} needs an amqps:// URL")
            return None
        if self["tls-key"] is not None and self["tls-cert"] is None:
            raise usage.UsageError("--tls-key needs --tls-cert")
        try:
            ca = load_ca(self["tls-ca"]) if self["tls-ca"] else None
            cert = (load_client_certificate(self["tls-cert"], self["tls-key"])
                    if self["tls-cert"] else None)
        except TLSConfigError as e:
            raise usage.UsageError(str(e)) from None
        return TLSSettings(ca, cert)


class AgentOptions(CommonOptions):
    """
    Options of C{twistd ioppy-agent}.
    """

    synopsis = "--name agent_1 [--url amqp://user:pass@host/vhost] [options]"
    longdesc = (
        "Open a TUN interface and carry its IP packets over AMQP: packets the "
        "host sends into it are published as fromAgent.<name>.ip.tun.packet.raw; "
        "packets consumed from toAgent.<name>.ip.tun.packet.raw are written "
        "into it. Needs root (or CAP_NET_ADMIN) and /dev/net/tun.")

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
        _number(self, "report-interval", 0)
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
        _writable_path(self, "pcap")
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
        "Forward every fromAgent.<name>.ip.tun.packet.raw message to "
        "toAgent.<peer>.ip.tun.packet.raw for the agents that should see it: "
        "every other agent known on the vhost, or the links of --topology.")

    optParameters = CommonOptions.optParameters + [
        ["topology", "t", None,
         'JSON file of fixed routes: {"links": [["agent_1", "agent_2"]], '
         '"observers": ["agent_TT"]}'],
        ["pcap-dir", None, None, "Write every packet routed to <dir>/<vhost>.pcap."],
    ]

    def postOptions(self):
        CommonOptions.postOptions(self)
        if self["pcap-dir"] is not None and not os.path.isdir(self["pcap-dir"]):
            raise usage.UsageError(f"--pcap-dir {self['pcap-dir']} is not a directory")
        if self["topology"] is not None:
            try:
                self["topology"] = read_topology(self["topology"])
            except BadTopology as e:
                raise usage.UsageError(f"--topology {e}") from None

    def config(self):
        """
        @return: The L{RouterConfig} these options describe.
        """
        return RouterConfig(bus=self["bus"], report=self["report"], metrics=self["metrics"],
                            topology=self["topology"], pcap_dir=self["pcap-dir"])


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
