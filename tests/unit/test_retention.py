"""
Tests for how far back the record reaches: L{ioppy_agent.recorder.retention}
(pure), L{ioppy_agent.bus.streams.offset_at} and the router's
L{ioppy_agent.router.recording.RecordWatch}, on fakes and a L{Clock}.
"""

from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from ioppy_agent.bus.streams import PEEK_TIMEOUT, offset_at
from ioppy_agent.recorder.retention import WARN_BELOW, Reach, shown_duration, top_sender
from ioppy_agent.recorder.stream import STREAM, RecordConfig
from ioppy_agent.router import RouterConfig, RouterService
from ioppy_agent.router.recording import WARN_EVERY
from ioppy_agent.router.tap import RouterOptions
from ioppy_agent.testing import RecordingConnector, RecordingSession

from .test_agent import FakeProcess
from .test_recorder import BUS, delivery


def at_offset(offset):
    """
    @return: A stream delivery at C{offset}.
    """
    return delivery("fromAgent.agent_1.ip.tun.packet.raw", b"{}",
                    headers={"x-stream-offset": offset})


class ReachTests(SynchronousTestCase):
    """
    L{Reach}, from the offsets seen.
    """

    def test_nothing_gone(self):
        """
        While the first offset stays, nothing is known to be gone: the
        record keeps all since the first look.
        """
        reach = Reach()
        for now, last in ((0, None), (30, 100), (60, 200), (90, 300)):
            self.assertIsNone(reach.observe(now, None if last is None else 0, last))
        self.assertEqual((reach.first, reach.last, reach.lost), (0, 300, 0))
        self.assertFalse(reach.short())

    def test_gone(self):
        """
        Once the first offset passed the last chunk seen at a look, the
        record keeps at most the time since that look; the messages gone
        are counted.
        """
        reach = Reach()
        reach.observe(0, 0, 100)
        reach.observe(30, 0, 200)
        reach.observe(60, 0, 300)
        # Offsets up to 150 went: those seen at 0 s, not those seen at 30 s.
        self.assertEqual(reach.observe(90, 150, 400), 90)
        self.assertEqual(reach.lost, 150)
        self.assertTrue(reach.short())
        # Past 300 too: the look at 60 s saw a chunk that is gone now.
        self.assertEqual(reach.observe(120, 350, 500), 60)
        self.assertEqual(reach.lost, 350)
        # Nothing more goes: the bound grows with time.
        self.assertEqual(reach.observe(150, 350, 500), 90)
        self.assertFalse(reach.short(below=60))

    def test_window(self):
        """
        Beyond its window the reach is not known, and no look older than it
        is kept.
        """
        reach = Reach(window=100)
        reach.observe(0, 0, 10)
        reach.observe(30, 20, 40)
        self.assertEqual(reach.kept, 30)
        self.assertIsNone(reach.observe(131, 20, 50))
        self.assertFalse(reach.short())
        self.assertLessEqual(len(reach._seen), 2)
        for now in range(200, 2000, 30):
            reach.observe(now, 20, 50)
        self.assertLessEqual(len(reach._seen), 5)

    def test_made_again(self):
        """
        A stream deleted and made again starts its offsets over: nothing
        counts as gone.
        """
        reach = Reach()
        reach.observe(0, 500, 900)
        reach.observe(30, 0, 10)
        self.assertEqual((reach.kept, reach.lost), (None, 0))

    def test_top_sender(self):
        """
        The agent that sent the most bytes since the look before, and its
        share; an agent whose counter went back (it restarted) counts as
        sending nothing; nobody sent anything: C{None}.
        """
        self.assertEqual(top_sender({"agent_1": 100, "agent_2": 50},
                                    {"agent_1": 1000, "agent_2": 150, "agent_3": 0}),
                         ("agent_1", 0.9))
        self.assertEqual(top_sender({"agent_1": 100}, {"agent_1": 5, "agent_2": 5}),
                         ("agent_2", 1.0))
        self.assertIsNone(top_sender({"agent_1": 5}, {"agent_1": 5}))

    def test_shown_duration(self):
        self.assertEqual([shown_duration(s) for s in (42, 420, 9000)],
                         ["42 s", "7 min", "2.5 h"])


class OffsetAtTests(SynchronousTestCase):
    """
    L{offset_at} reads one delivery, then cancels its consumer.
    """

    def test_offset(self):
        clock = Clock()
        session = RecordingSession()
        d = offset_at(session, STREAM, "last", clock)
        self.assertEqual(session.stream_reads, [(STREAM, "last", 1)])
        session.consumers[STREAM](at_offset(41))
        session.consumers[STREAM](at_offset(42))
        self.assertEqual(self.successResultOf(d), 41)
        self.assertEqual(session.cancelled, ["ioppy-1"])

    def test_empty(self):
        """
        Nothing within L{PEEK_TIMEOUT}: the stream is empty, C{None}.
        """
        clock = Clock()
        session = RecordingSession()
        d = offset_at(session, STREAM, "first", clock)
        self.assertNoResult(d)
        clock.advance(PEEK_TIMEOUT)
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(session.cancelled, ["ioppy-1"])

    def test_no_offset(self):
        """
        A delivery without a readable offset gives C{None}.
        """
        session = RecordingSession()
        d = offset_at(session, STREAM, "first", Clock())
        session.consumers[STREAM](delivery("k", b"{}"))
        self.assertIsNone(self.successResultOf(d))


class RecordWatchTests(SynchronousTestCase):
    """
    The router with C{--record} looks at the stream every C{check} seconds,
    and warns when its retention is used up in less than L{WARN_BELOW}.
    """

    def setUp(self):
        self.clock = Clock()
        self.service = RouterService(self.clock, RouterConfig(bus=BUS, record=RecordConfig(
            check=10.0)), FakeProcess(), make_connector=RecordingConnector)
        self.service.startService()
        self.session = RecordingSession()
        self.service.connector.connect(self.session)
        self.watch = self.service.watch

    def look(self, first, last):
        """
        Let a look happen, the stream answering C{first} and C{last}.
        """
        reads = len(self.session.stream_reads)
        self.clock.advance(10.0)
        self.assertEqual(self.session.stream_reads[reads], (STREAM, "first", 1))
        self.session.consumers[STREAM](at_offset(first))
        self.assertEqual(self.session.stream_reads[reads + 1], (STREAM, "last", 1))
        self.session.consumers[STREAM](at_offset(last))

    def report(self, name, sent):
        self.service.router.reports[name] = {
            "packets": {"in": 0, "out": sent // 100}, "bytes": {"in": 0, "out": sent},
            "drops": {}, "time": None, "connected_since": None}

    def metrics(self):
        return {m.name: [s.value for s in m.samples] for m in self.service.extra_metrics()
                if m.name.startswith("ioppy_router_record_")}

    def test_quiet(self):
        """
        While nothing goes from the stream there is no warning, and the
        metrics and status say so.
        """
        with capturedLogs() as events:
            self.look(0, 10)
            self.look(0, 20)
        self.assertEqual([e for e in events if e["log_level"].name == "warn"], [])
        self.assertEqual(self.metrics(), {"ioppy_router_record_dropped_messages": [0],
                                          "ioppy_router_record_kept_seconds": []})
        self.assertEqual(self.service.describe()[1]["record"],
                         {"kept_seconds": None, "dropped": 0, "first_offset": 0,
                          "last_offset": 20, "top_sender": None})

    def test_pushed_out(self):
        """
        When packets go within minutes the organiser is told how far back
        the record reaches and who sent most, as the agents report; at most
        once every L{WARN_EVERY} seconds.
        """
        self.report("agent_1", 0)
        self.report("agent_2", 0)
        self.look(0, 1000)
        self.report("agent_1", 9_000_000)
        self.report("agent_2", 1_000_000)
        with capturedLogs() as events:
            self.look(2000, 3000)
            self.look(4000, 5000)
        [warning] = [formatEvent(e) for e in events if e["log_level"].name == "warn"]
        self.assertIn("the record keeps only the last 10 s of packets, less than 60 min: "
                      "2000 messages dropped from it since the router started", warning)
        self.assertIn("most of the traffic lately: agent_1 (90% of the bytes, as the "
                      "agents report)", warning)
        self.assertEqual(self.metrics(), {"ioppy_router_record_dropped_messages": [4000],
                                          "ioppy_router_record_kept_seconds": [10.0]})
        self.assertEqual(self.service.describe()[1]["record"]["top_sender"],
                         {"agent": "agent_1", "share": 0.9})
        with capturedLogs() as events:
            for n in range(int(WARN_EVERY / 10) + 1):
                self.look(6000 + 1000 * n, 7000 + 1000 * n)
        self.assertEqual(len([e for e in events if e["log_level"].name == "warn"]), 1)

    def test_gone_session(self):
        """
        A look while the router is not connected is skipped; one that fails
        (the connection went midway) is too, and the next look goes on.
        """
        self.service.connector.session = None
        self.clock.advance(10.0)
        self.assertEqual(self.session.stream_reads, [])
        self.service.connector.session = self.session
        self.session.stream_error = ConnectionDone("gone")
        self.clock.advance(10.0)
        self.session.stream_error = None
        self.look(0, 10)
        self.assertEqual((self.watch.reach.first, self.watch.reach.last), (0, 10))

    def test_stopped(self):
        """
        Stopping the router stops looking.
        """
        self.service.stopService()
        self.clock.advance(100.0)
        self.assertEqual(self.session.stream_reads, [])

    def test_option(self):
        """
        --record-check sets how often; it needs --record and a number of
        seconds of at least one.
        """
        options = RouterOptions()
        options.parseOptions(["--record", "--record-check", "5"])
        self.assertEqual(options.config().record.check, 5.0)
        for args, says in ((["--record-check", "5"], "--record-check needs --record"),
                           (["--record", "--record-check", "0.5"], "at least 1")):
            error = self.assertRaises(usage.UsageError, RouterOptions().parseOptions, args)
            self.assertIn(says, str(error))
        self.assertEqual(WARN_BELOW, 3600.0)
