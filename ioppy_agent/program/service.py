"""
L{BusService}: what the agent and the router share as twistd services.

Its life is written out once, here:

  1. L{privilegedStartService} (run by twistd before it drops to C{--uid})
     loads what the bus needs from disk and calls L{BusService.open}, which
     opens what needs privileges; L{startService} does both if twistd did
     not.
  2. L{startService}: if opening failed, the process stops with exit
     status 1 and the reason; else L{BusService.started} runs, the
     connector starts connecting, and the reporter (a child service)
     starts.
  3. A fatal bus error stops the process with the exit status for it
     (L{ioppy_agent.program.process.exit_status_of}).
  4. L{stopService}, in this order: L{BusService.stopping}; the orderly
     disconnect, with the L{BusService.farewell} messages published before
     the channel closes; L{BusService.release}; then the reporter, whose
     final summary and status come last.
"""

from twisted.application import service
from twisted.internet import defer
from twisted.logger import Logger

from ..bus import BusConnector
from . import metrics
from .metrics import MetricsConfig
from .process import EXIT_FAILURE, exit_status_of
from .stats import Counters, Reporter, WarnLimiter

# How long the orderly disconnect may wait for each answer of the broker.
CLOSE_TIMEOUT = 1.0


class CannotStart(Exception):
    """
    What a service needs before connecting could not be opened; the message
    says why.
    """


class BusService(service.MultiService):
    """
    A program on the bus: a L{BusConnector}, counters, and a L{Reporter}.
    Subclasses fill in the hooks.

    @ivar connector: The L{BusConnector}.
    @ivar counters: Packets and bytes moved, and drops by reason.
    @ivar reporter: The L{Reporter}, a child service.
    """

    _log = Logger()

    def __init__(self, reactor, bus, report, process, connection_name,
                 make_connector=BusConnector, deliveries_per_read=64,
                 metrics=MetricsConfig()):
        """
        @param reactor: The reactor.
        @param bus: A L{ioppy_agent.bus.BusConfig}.
        @param report: A L{ioppy_agent.program.stats.ReportConfig}.
        @param process: A L{ioppy_agent.program.process.ProcessControl}.
        @param connection_name: How the broker lists the connection.
        @param make_connector: Builds the L{BusConnector}.
        @param deliveries_per_read: Deliveries handled per reactor turn.
        @param metrics: A L{MetricsConfig}: where to serve Prometheus metrics.
        """
        service.MultiService.__init__(self)
        self.reactor = reactor
        self.process = process
        self.counters = Counters()
        self.warnings = WarnLimiter(reactor, self._log)
        self.connector = make_connector(reactor, bus, self.setup, self.fatal,
                                        connection_name=connection_name,
                                        deliveries_per_read=deliveries_per_read)
        self.reporter = Reporter(reactor, self.describe, report)
        self.reporter.setServiceParent(self)
        self._opened = False
        self._open_error = None
        self._metrics = metrics
        self._ports = []

    # The hooks.

    def open(self):
        """
        Open what needs privileges.

        @raise CannotStart: saying why it failed.
        """

    def started(self):
        """
        Called once opening succeeded, before connecting.
        """

    def setup(self, session):
        """
        Declare, bind and consume on a new L{ioppy_agent.bus.BusSession}.
        """

    def describe(self):
        """
        @return: C{(line, status)} for the L{Reporter}.
        """
        raise NotImplementedError()

    def farewell(self):
        """
        @return: The messages to publish before disconnecting.
        """
        return ()

    def stopping(self):
        """
        Called first when stopping, before disconnecting.
        """

    def release(self):
        """
        Called after disconnecting: close what L{open} opened.
        """

    def identity(self):
        """
        @return: C{(program, name)} for the metrics: C{("agent", "agent_1")}.
        """
        raise NotImplementedError()

    def extra_metrics(self):
        """
        @return: More prometheus_client metric families of this program.
        """
        return ()

    # The life, in order.

    def _open_once(self):
        if self._opened:
            return
        self._opened = True
        self.connector.prepare()
        try:
            self.open()
            if self._metrics.port is not None:
                # Listened on here, before twistd drops privileges.
                self.keep_listening(metrics.listen(
                    self.reactor, self._metrics, metrics.registry_for(*self.identity(), self)))
        except (CannotStart, metrics.MetricsUnavailable) as e:
            self._open_error = str(e)

    def privilegedStartService(self):
        self._open_once()
        service.MultiService.privilegedStartService(self)

    def startService(self):
        self._open_once()
        if self._open_error is not None:
            service.Service.startService(self)
            self.process.fail(EXIT_FAILURE, self._open_error)
            return
        self.started()
        self.connector.start()
        service.MultiService.startService(self)

    def fatal(self, error):
        """
        The bus gave up on a L{ioppy_agent.bus.FatalBusError}: stop the
        process with its exit status.
        """
        self.process.fail(exit_status_of(error), str(error))

    @defer.inlineCallbacks
    def stopService(self):
        """
        Disconnect in order; see the module docstring.
        """
        self.stopping()
        try:
            yield self.connector.stop(self.farewell(), CLOSE_TIMEOUT)
        finally:
            self.release()
            for port in self._ports:
                yield port.stopListening()
            yield service.MultiService.stopService(self)

    # For the subclasses.

    def keep_listening(self, port):
        """
        Note a listening port (metrics, the live page), to stop listening on
        when the service stops.
        """
        self._ports.append(port)

    def drop(self, reason, detail=None):
        """
        Count a drop under C{reason}; with C{detail} (text), warn about it, at
        most once per interval.
        """
        self.counters.dropped(reason)
        if detail is not None:
            self.warnings.warn("{detail}", detail=detail)

    def oversize(self, routing_key, size):
        """
        A message too large to be a packet (the bus skipped its body): drop
        it, counted and logged.
        """
        self.drop("too large", f"dropped a {size}-byte message on {routing_key}: too "
                               "large to be a packet")
