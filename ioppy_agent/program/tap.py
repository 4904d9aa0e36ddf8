"""
What the twistd programs share on their command lines and in how their
services are built: L{CommonOptions} (the bus, the reports, the metrics, the
prefetch), and L{wrap}, which starts the process control before the
program's own service.  C{postOptions} validates and converts every option;
building a service does no I/O.
"""

import dataclasses

from twisted.application import service
from twisted.python import usage

from ..bus.config import DEFAULT_PREFETCH
from .listening import LOOPBACK
from .metrics import MetricsConfig
from .options import BusOptions, number, port_and_address, writable_path
from .process import ProcessControl
from .stats import ReportConfig


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
         "whose limits bound them (0: no acknowledgements)."],
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


def wrap(child, process):
    """
    @return: A parent service that starts C{process} (a L{ProcessControl})
        before C{child}.
    """
    parent = service.MultiService()
    process.setServiceParent(parent)
    child.setServiceParent(parent)
    return parent


def reactor_and_process(reactor, process):
    if reactor is None:
        from twisted.internet import reactor
    if process is None:
        process = ProcessControl(reactor)
    return reactor, process
