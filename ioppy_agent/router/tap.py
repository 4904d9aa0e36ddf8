"""
C{twistd ioppy-router}'s options (L{RouterOptions}) and service
(L{make_router_service}).
"""

import os

from twisted.python import usage

from ..model import keys
from ..model.addressing import BadAddress, check_name
from ..model.grants import BadGrants, Grants
from ..program.listening import LOOPBACK
from ..program.options import number, port_and_address
from ..program.tap import CommonOptions, reactor_and_process, wrap
from ..recorder.stream import (DEFAULT_CHECK, DEFAULT_MAX_AGE, STREAM, BadRetention,
                               RecordConfig, parse_age, parse_size)
from ..web import WebConfig
from .service import RouterConfig, RouterService
from .topology import BadTopology, parse_topology


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


def make_router_service(options, reactor=None, process=None):
    """
    @return: The router service for parsed L{RouterOptions}.
    """
    reactor, process = reactor_and_process(reactor, process)
    return wrap(RouterService(reactor, options.config(), process), process)


def read_topology(path):
    """
    @return: The L{Topology} in the file C{path}.
    @raise BadTopology: if it cannot be read or parsed, naming the file.
    """
    try:
        with open(path, encoding="utf-8") as f:
            return parse_topology(f.read())
    except OSError as e:
        raise BadTopology(f"{path}: {e.strerror}") from None
    except BadTopology as e:
        raise BadTopology(f"{path}: {e}") from None
