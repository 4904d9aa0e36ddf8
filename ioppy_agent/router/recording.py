"""
L{RecordWatch}: the router's eye on how far back the session's record
reaches, so that the organiser is told (a log line and metrics) when the
stream's retention is being used up in less than an hour, and by whom.
"""

from collections import deque

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from twisted.internet import defer
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from ..bus.streams import offset_at
from ..program.stats import WarnLimiter
from ..recorder.retention import WARN_BELOW, Reach, shown_duration, top_sender

# Seconds between two warnings that the record is short.
WARN_EVERY = 300.0
# The agents' reports kept, one per look: enough to go back an hour at the
# default --record-check.
SNAPSHOTS = 121


class RecordWatch:
    """
    Looks at the stream's first and last offsets every C{record.check}
    seconds, on the router's session.

    @ivar reach: The L{Reach} seen so far.
    @ivar top: C{(agent, share)} of the bytes sent while the record was
        last seen going (since the look whose packets went), from the
        agents' reports, or C{None}.
    """

    _log = Logger()

    def __init__(self, reactor, record, connector, reports):
        self.reactor = reactor
        self.record = record
        self.connector = connector
        self.reports = reports
        self.reach = Reach()
        self.top = None
        # (time, bytes each agent reported sending), one per look.
        self._sent = deque(maxlen=SNAPSHOTS)
        self._looking = False
        self._warnings = WarnLimiter(reactor, self._log, WARN_EVERY)
        self._loop = LoopingCall(self.look)
        self._loop.clock = reactor

    def start(self):
        self._loop.start(self.record.check, now=False)

    def stop(self):
        if self._loop.running:
            self._loop.stop()

    @defer.inlineCallbacks
    def look(self):
        """
        Look once; a look that fails (the connection went) is skipped.
        """
        session = self.connector.session
        if session is None or self._looking:
            return
        self._looking = True
        try:
            first = yield offset_at(session, self.record.name, "first", self.reactor)
            last = None if first is None else (yield offset_at(session, self.record.name,
                                                               "last", self.reactor))
        except Exception as e:
            self._log.debug("could not look at the record: {e!r}", e=e)
            return
        finally:
            self._looking = False
        now = self.reactor.seconds()
        kept = self.reach.observe(now, first, last)
        sent = {name: report["bytes"]["out"] for name, report in self.reports.items()}
        self._sent.append((now, sent))
        if self.reach.short():
            # Who sent most since the look whose packets have gone: what
            # filled the record.
            before = [snapshot for time, snapshot in self._sent if time <= now - kept]
            # No report moved since (reports come every --report-interval):
            # the last one who did stays named.
            self.top = top_sender(before[-1] if before else self._sent[0][1], sent) or self.top
            self._warn(kept)

    def _warn(self, kept):
        who = "; no agent reported sending anything since"
        if self.top is not None:
            who = (f"; most of the traffic lately: {self.top[0]} "
                   f"({self.top[1]:.0%} of the bytes, as the agents report)")
        self._warnings.warn(
            "the record keeps only the last {kept} of packets, less than {below}: "
            "{lost} messages dropped from it since the router started ({what}){who}",
            kept=shown_duration(kept), below=shown_duration(WARN_BELOW),
            lost=self.reach.lost, what=self.record.describe(), who=who)

    def status(self):
        """
        @return: What the status file says of the record.
        """
        top = None if self.top is None else {"agent": self.top[0],
                                              "share": round(self.top[1], 3)}
        return {"kept_seconds": self.reach.kept, "dropped": self.reach.lost,
                "first_offset": self.reach.first, "last_offset": self.reach.last,
                "top_sender": top}

    def metrics(self):
        """
        @return: The record's metric families.
        """
        dropped = CounterMetricFamily(
            "ioppy_router_record_dropped_messages",
            "Messages the stream's retention dropped since the router started.",
            value=self.reach.lost)
        kept = GaugeMetricFamily(
            "ioppy_router_record_kept_seconds",
            "At most how far back the record reaches, once the router saw packets go "
            "(absent while it has seen none go for two hours).")
        if self.reach.kept is not None:
            kept.add_metric([], self.reach.kept)
        return dropped, kept
