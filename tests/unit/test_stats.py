"""
Tests for L{ioppy_agent.stats}.
"""

from twisted.internet.task import Clock
from twisted.logger import Logger, capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from ioppy_agent.stats import Counters, WarnLimiter


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
