"""
Tests for L{ioppy_agent.program.stats}.
"""

import json
import os
import re

from twisted.internet.task import Clock
from twisted.logger import Logger, capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from ioppy_agent.model.actions import DROP_REASONS
from ioppy_agent.program.stats import (Counters, ReportConfig, Reporter, WarnLimiter, status_of,
                                       summary_line)

from .test_layout import PACKAGE, modules


class WarnLimiterTests(SynchronousTestCase):
    """
    L{WarnLimiter} lets one warning through per interval.
    """

    def test_limits(self):
        """
        The first warning is logged, those within the interval are held back
        and counted, and the next one after it says how many were held.
        """
        clock = Clock()
        limiter = WarnLimiter(clock, Logger(), interval=10.0)
        with capturedLogs() as events:
            self.assertTrue(limiter.warn("bad {what}", what="a"))
            self.assertFalse(limiter.warn("bad {what}", what="b"))
            self.assertFalse(limiter.warn("bad {what}", what="c"))
            clock.advance(10.0)
            self.assertTrue(limiter.warn("bad {what}", what="d"))
        self.assertEqual([formatEvent(e) for e in events],
                         ["bad a", "bad d (2 more since the last such warning)"])


class CountersTests(SynchronousTestCase):
    """
    L{Counters} adds up.
    """

    def test_counts(self):
        """
        Packets and bytes per direction, drops per reason.
        """
        c = Counters()
        c.moved("in", 100)
        c.moved("in", 20)
        c.dropped("bad message")
        self.assertEqual((c.packets["in"], c.bytes["in"], c.drops["bad message"]),
                         (2, 120, 1))

    def test_closed_reasons(self):
        """
        A reason that is not a L{DropReason} counts as C{"other"}, so the
        reasons stay a closed set; every reason the package drops for, as
        written in its source, is one.
        """
        c = Counters()
        c.dropped("something new")
        self.assertEqual(dict(c.drops), {"other": 1})
        written = set()
        for relative in modules():
            with open(os.path.join(PACKAGE, relative), encoding="utf-8") as f:
                written.update(re.findall(
                    r"(?:Drop|dropped|\.drop|drop_reason)\(\s*\"([^\"]+)\"", f.read()))
                f.seek(0)
                written.update(re.findall(r'return "([a-z ]+)"\n', f.read()) if
                               relative == os.path.join("bus", "session.py") else ())
        self.assertGreater(len(written), 15)
        self.assertEqual(written - DROP_REASONS, set())


class ReporterTests(SynchronousTestCase):
    """
    L{Reporter} logs summaries and keeps a status file.
    """

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1000.0)
        self.calls = 0
        self.path = self.mktemp()

    def describe(self):
        self.calls += 1
        return f"line {self.calls}", {"n": self.calls}

    def test_summary_every_interval(self):
        """
        A summary line is logged every C{interval} seconds, and a final one
        on stop.
        """
        reporter = Reporter(self.clock, self.describe, ReportConfig(stats_interval=60.0))
        with capturedLogs() as events:
            reporter.startService()
            self.clock.advance(59)
            self.assertEqual(events, [])
            self.clock.advance(1)
            self.clock.advance(60)
            reporter.stopService()
        self.assertEqual([formatEvent(e) for e in events],
                         ["line 1", "line 2", "final: line 3"])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_no_summary(self):
        """
        Interval 0 logs no periodic line.
        """
        reporter = Reporter(self.clock, self.describe, ReportConfig(stats_interval=0))
        with capturedLogs() as events:
            reporter.startService()
            self.clock.advance(3600)
        self.assertEqual(events, [])

    def test_stop_unstarted(self):
        """
        A reporter that never started (its program failed to start) logs and
        writes nothing when stopped.
        """
        reporter = Reporter(self.clock, self.describe, ReportConfig(status_file=self.path))
        with capturedLogs() as events:
            reporter.stopService()
        self.assertEqual((events, os.path.exists(self.path)), ([], False))

    def test_status_file(self):
        """
        The status file is written at start, every status interval, and at
        stop, as JSON with the time of the update.
        """
        reporter = Reporter(self.clock, self.describe, ReportConfig(
            stats_interval=0, status_file=self.path, status_interval=5.0))
        reporter.startService()
        with open(self.path) as f:
            self.assertEqual(json.load(f), {"n": 1, "updated": 1000.0})
        self.clock.advance(5)
        with open(self.path) as f:
            self.assertEqual(json.load(f)["n"], 2)
        with capturedLogs():
            reporter.stopService()
        with open(self.path) as f:
            self.assertEqual(json.load(f), {"n": 4, "updated": 1005.0})
        self.assertEqual(os.listdir(os.path.dirname(os.path.abspath(self.path))),
                         [os.path.basename(self.path)])

    def test_status_file_error_logged_once(self):
        """
        A status file that cannot be written is logged once, not every time.
        """
        reporter = Reporter(self.clock, self.describe, ReportConfig(
            stats_interval=0, status_file=os.path.join(self.mktemp(), "missing", "s.json")))
        with capturedLogs() as events:
            reporter.startService()
            self.clock.advance(20)
        self.assertEqual(len(events), 1)
        self.assertIn("cannot write the status file", events[0]["log_format"])
        reporter.stopService()


class SummaryTests(SynchronousTestCase):
    """
    The summary line and status dict.
    """

    def test_line(self):
        """
        Both directions and the drops by reason are in the line.
        """
        c = Counters()
        c.moved("out", 100)
        c.dropped("bad message")
        c.dropped("bad message")
        self.assertEqual(summary_line(c), "out 1 packets/100 bytes, in 0 packets/0 bytes, "
                                          "dropped 2 (bad message: 2)")
        self.assertEqual(status_of(c), {"packets": {"in": 0, "out": 1},
                                        "bytes": {"in": 0, "out": 100},
                                        "drops": {"bad message": 2}})
