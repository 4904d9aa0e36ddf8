"""
Tests for L{ioppy_agent.recorder}: the stream's settings and entries, the
window, the pcapng writer and L{Capture}, on fakes and a L{Clock}.
"""

import io
import struct
from datetime import timedelta, timezone

from twisted.internet.task import Clock
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase

from ioppy_agent.model import keys, wire
from ioppy_agent.bus import BusConfig, NotFound
from ioppy_agent.bus.content import Delivery
from ioppy_agent.bus.framing import STAMP_HEADER, Timestamp, encode_table
from ioppy_agent.recorder import pcapng
from ioppy_agent.recorder.capture import ACK_EVERY, END_GRACE, Capture, CaptureOptions
from ioppy_agent.recorder.stream import (BINDINGS, MARKER, STREAM, BadRetention, Entry,
                                         RecordConfig, entry_of, parse_age, parse_size)
from ioppy_agent.recorder.window import SKEW, BadTime, Window, parse_time
from ioppy_agent.testing import RecordingConnector, RecordingSession
from ioppy_agent.bus.url import parse_amqp_url

PACKET = bytes.fromhex("4500001c0001000040017ce20a0200010a0200020800f7ff00000000")
BUS = BusConfig(urls=(parse_amqp_url("amqp://u:secret@h/v"),))


def delivery(key, body, content_type=wire.JSON, headers=None, tag=1):
    """
    @return: A L{Delivery} from the stream.
    """
    table = encode_table(headers)[4:] if headers is not None else None
    return Delivery(1, "ioppy-1", tag, False, "amq.topic", key, content_type, len(body),
                    body, False, table)


def json_packet(agent, time, packet=PACKET, key=None):
    return delivery(key or keys.packet_from(agent), wire.encode_packet(packet, time))


def raw_packet(agent, time, packet=PACKET, offset=0):
    return delivery(keys.packet_from(agent), packet, wire.RAW,
                    {STAMP_HEADER: time, "x-stream-offset": offset})


class StreamTests(SynchronousTestCase):
    """
    The stream's retention, bindings and entries.
    """

    def test_ages(self):
        """
        Ages are a whole number and one of RabbitMQ's units.
        """
        for text in ("7D", "12h", "30m", "1Y", "90s", "2M"):
            self.assertEqual(parse_age(text), text)
        for text in ("", "7", "7d", "1.5h", "0h", "h", "-1h", "7D "):
            self.assertRaises(BadRetention, parse_age, text)

    def test_sizes(self):
        """
        Sizes are bytes, or decimal and binary units; less than 1MB is
        refused.
        """
        self.assertEqual(parse_size("1GiB"), 1 << 30)
        self.assertEqual(parse_size("500MB"), 500_000_000)
        self.assertEqual(parse_size("1.5 GB"), 1_500_000_000)
        self.assertEqual(parse_size("2000000"), 2_000_000)
        for text in ("", "lots", "1 XB", "10kB", "-5MB"):
            self.assertRaises(BadRetention, parse_size, text)

    def test_arguments(self):
        """
        The declaration asks for the age, the size and segments small
        enough for the size to be kept to.
        """
        self.assertEqual(RecordConfig("1h", 80_000_000).arguments(),
                         {"x-max-age": "1h", "x-max-length-bytes": 80_000_000,
                          "x-stream-max-segment-size-bytes": 10_000_000})
        self.assertEqual(RecordConfig().arguments()["x-stream-max-segment-size-bytes"],
                         1 << 27)
        self.assertEqual(RecordConfig("1h", 100 << 30).arguments()[
            "x-stream-max-segment-size-bytes"], 500_000_000)
        self.assertEqual(RecordConfig("1h", 1 << 30).describe(),
                         "stream 'ioppy.record': kept 1h, at most 1 GiB")

    def test_bindings(self):
        """
        The stream takes the packets as agents send them, whichever way they
        go on, and none of the router's copies.
        """
        self.assertEqual(BINDINGS, ("fromAgent.*.ip.tun.packet.raw",))

    def test_json_entry(self):
        """
        A JSON packet's entry has its sender and its body's timestamp.
        """
        self.assertEqual(entry_of(json_packet("agent_1", 1764242400.5)),
                         Entry("agent_1", 1764242400.5, PACKET))

    def test_raw_entry(self):
        """
        A raw packet's time is its timestamp header.
        """
        self.assertEqual(entry_of(raw_packet("agent_2", 1764242401.25)),
                         Entry("agent_2", 1764242401.25, PACKET))

    def test_not_a_packet(self):
        """
        A reader's marker, or anything not sent by an agent, is no entry.
        """
        self.assertIsNone(entry_of(delivery(STREAM, b"abc", MARKER)))
        self.assertIsNone(entry_of(delivery("toAgent.a.ip.tun.packet.raw", PACKET, wire.RAW)))

    def test_bad_entries(self):
        """
        A packet that cannot be read, or has no time, raises
        L{wire.BadMessage}.
        """
        for bad in (delivery("fromAgent.a.ip.tun.packet.raw", b"not json"),
                    delivery("fromAgent.a.ip.tun.packet.raw", PACKET, wire.RAW),
                    delivery("fromAgent.a.ip.tun.packet.raw", PACKET, wire.RAW,
                             {STAMP_HEADER: "soon"}),
                    delivery("fromAgent.a.ip.tun.packet.raw", b'{"data": [69]}'),
                    delivery("fromAgent.a.ip.tun.packet.raw", b'{"data": [69], '
                                                              b'"timestamp": true}'),
                    delivery("fromAgent.a.ip.tun.packet.raw", PACKET, "text/plain")):
            self.assertRaises(wire.BadMessage, entry_of, bad)


class WindowTests(SynchronousTestCase):
    """
    Times on the command line, and the window.
    """

    NOW = 1764242400.0  # 2025-11-27 11:20:00 UTC

    def test_times(self):
        """
        Every way of writing a time gives seconds since the epoch.
        """
        utc = timezone.utc
        for text, seconds in (("now", self.NOW), ("-10m", self.NOW - 600),
                              ("-90s", self.NOW - 90), ("-2h", self.NOW - 7200),
                              ("-1d", self.NOW - 86400), ("-0.5s", self.NOW - 0.5),
                              ("11:05", self.NOW - 900), ("11:05:30", self.NOW - 870),
                              ("9:00", self.NOW - 8400),
                              ("2025-11-27T11:00:00Z", self.NOW - 1200),
                              ("2025-11-27T12:00:00+01:00", self.NOW - 1200),
                              ("2025-11-27 11:00", self.NOW - 1200),
                              ("1764242400.25", self.NOW + 0.25)):
            self.assertEqual(parse_time(text, self.NOW, utc), seconds, text)

    def test_local_zone(self):
        """
        A time without a zone is in the local one.
        """
        cet = timezone(timedelta(hours=1))
        self.assertEqual(parse_time("12:05", self.NOW, cet), self.NOW - 900)
        self.assertEqual(parse_time("2025-11-27T12:00:00", self.NOW, cet), self.NOW - 1200)

    def test_bad_times(self):
        """
        Anything else is refused, saying how to write a time.
        """
        for text in ("", "yesterday", "-10", "10m", "25:00", "2025-13-01", "12345"):
            error = self.assertRaises(BadTime, parse_time, text, self.NOW, timezone.utc)
            self.assertIn("-10m", str(error))

    def test_window(self):
        """
        The window keeps what was sent in it by the agents asked for, and is
        past at an entry more than L{SKEW} after its end.
        """
        window = Window(100.0, 200.0, ["agent_1"])
        self.assertEqual(window.attach(), Timestamp(90))
        self.assertIsInstance(window.attach(), Timestamp)
        for agent, time, kept in (("agent_1", 100.0, True), ("agent_1", 200.0, True),
                                  ("agent_1", 99.9, False), ("agent_1", 200.1, False),
                                  ("agent_2", 150.0, False)):
            self.assertEqual(window.keeps(Entry(agent, time, PACKET)), kept, (agent, time))
        self.assertFalse(window.passed(Entry("agent_2", 200.0 + SKEW, PACKET)))
        self.assertTrue(window.passed(Entry("agent_2", 200.1 + SKEW, PACKET)))

    def test_open_window(self):
        """
        Without a start the stream is read from its first entry; without an
        end, on and on.
        """
        window = Window()
        self.assertEqual(window.attach(), "first")
        self.assertTrue(window.keeps(Entry("a", 0.0, PACKET)))
        self.assertFalse(window.passed(Entry("a", 1e10, PACKET)))
        self.assertRaises(BadTime, Window, 200.0, 100.0)


def read_pcapng(data):
    """
    @return: C{(interfaces, packets)}: the interface names in order, and
        C{(interface, microseconds, packet)} per enhanced packet block.
    """
    at, interfaces, packets = 0, [], []
    while at < len(data):
        kind, length = struct.unpack_from("<II", data, at)
        body = data[at + 8:at + length - 4]
        assert struct.unpack_from("<I", data, at + length - 4)[0] == length
        if kind == 0x0A0D0D0A:
            assert struct.unpack_from("<IHH", body) == (0x1A2B3C4D, 1, 0)
        elif kind == 1:
            assert struct.unpack_from("<H", body)[0] == pcapng.LINKTYPE_RAW
            code, size = struct.unpack_from("<HH", body, 8)
            assert code == 2
            interfaces.append(body[12:12 + size].decode())
        elif kind == 6:
            number, high, low, captured, original = struct.unpack_from("<IIIII", body)
            assert captured == original
            packets.append((number, (high << 32) | low, body[20:20 + captured]))
        at += length
        assert length % 4 == 0
    return interfaces, packets


class PcapngTests(SynchronousTestCase):
    """
    The pcapng writer.
    """

    def test_interfaces_and_packets(self):
        """
        Each agent gets an interface before its first packet; each packet
        its interface and time in microseconds.
        """
        out = io.BytesIO()
        writer = pcapng.PcapngWriter(out, comment="test")
        writer.write("agent_2", 1764242400.000001, PACKET)
        writer.write("agent_1", 1764242400.5, PACKET[:21])
        writer.write("agent_2", 1764242401.25, PACKET)
        interfaces, packets = read_pcapng(out.getvalue())
        self.assertEqual(interfaces, ["agent_2", "agent_1"])
        self.assertEqual(packets, [(0, 1764242400000001, PACKET), (1, 1764242400500000,
                                                                    PACKET[:21]),
                                   (0, 1764242401250000, PACKET)])
        self.assertEqual((writer.packets, writer.interfaces), (3, {"agent_2": 0, "agent_1": 1}))

    def test_flush(self):
        """
        With C{flush}, every packet is flushed as it is written.
        """
        class Out(io.BytesIO):
            flushes = 0

            def flush(self):
                self.flushes += 1

        out = Out()
        writer = pcapng.PcapngWriter(out, flush=True)
        writer.write("a", 1.0, PACKET)
        self.assertEqual(out.flushes, 2)


class CaptureTests(SynchronousTestCase):
    """
    L{Capture} on a recording connector and a L{Clock}.
    """

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1000.0)
        self.out = io.BytesIO()
        self.err = io.StringIO()

    def capture(self, window, follow=False):
        capture = Capture(self.clock, BUS, window, pcapng.PcapngWriter(self.out),
                          follow=follow, err=self.err, make_connector=RecordingConnector)
        self.statuses = []
        capture.start().addCallback(self.statuses.append)
        return capture

    def test_window(self):
        """
        The stream is read from L{SKEW} before the window; the packets in it
        are written; once the window's end has passed a marker goes in, and
        reading stops at it.
        """
        capture = self.capture(Window(990.0, 995.0))
        capture.connector.connect()
        session = capture.connector.session
        self.assertEqual(session.stream_reads, [(STREAM, Timestamp(980), 2000)])
        handler = session.consumers[STREAM]
        handler(json_packet("agent_1", 989.0))
        handler(json_packet("agent_1", 990.5))
        handler(raw_packet("agent_2", 994.0, offset=41))
        handler(json_packet("agent_1", 996.0))
        self.assertEqual(session.to_queues, [])
        self.clock.advance(END_GRACE)
        [(queue, marker, kind)] = session.to_queues
        self.assertEqual((queue, kind), (STREAM, MARKER))
        handler(delivery(STREAM, b"someone else's", MARKER))
        self.assertEqual(self.statuses, [])
        handler(delivery(STREAM, marker, MARKER))
        self.assertEqual(self.statuses, [0])
        self.assertEqual(capture.counts, {"agent_1": 1, "agent_2": 1})
        self.assertEqual(capture.offset, 41)
        interfaces, packets = read_pcapng(self.out.getvalue())
        self.assertEqual([(n, t) for n, t, _ in packets], [(0, 990500000), (1, 994000000)])
        self.assertIn("2 packets (agent_1 1, agent_2 1)", capture.summary())
        self.assertEqual(capture.connector.state.value, "stopped")

    def test_passed(self):
        """
        A packet well past the window ends reading before the marker.
        """
        capture = self.capture(Window(900.0, 910.0, ["agent_1"]))
        capture.connector.connect()
        handler = capture.connector.session.consumers[STREAM]
        handler(json_packet("agent_1", 905.0))
        handler(json_packet("agent_2", 906.0))
        handler(json_packet("agent_1", 910.0 + SKEW + 1))
        self.assertEqual(self.statuses, [0])
        self.assertEqual(capture.counts, {"agent_1": 1})

    def test_acks(self):
        """
        Deliveries are acknowledged every L{ACK_EVERY}, all at once.
        """
        capture = self.capture(Window(0.0, 2000.0))
        capture.connector.connect()
        session = capture.connector.session
        for tag in range(1, 2 * ACK_EVERY + 2):
            session.consumers[STREAM](delivery(keys.packet_from("a"),
                                               wire.encode_packet(PACKET, 1.0), tag=tag))
        self.assertEqual(session.acks, [ACK_EVERY, 2 * ACK_EVERY])

    def test_resume(self):
        """
        After a new connection, reading goes on after the last offset read.
        """
        capture = self.capture(Window(990.0, None), follow=True)
        capture.connector.connect()
        capture.connector.session.consumers[STREAM](raw_packet("a", 991.0, offset=77))
        capture.connector.connect()
        self.assertEqual(capture.connector.session.stream_reads, [(STREAM, 78, 2000)])
        self.assertEqual(capture.connector.session.to_queues, [])

    def test_unreadable(self):
        """
        An unreadable message is skipped and said, at most L{MAX_WARNINGS}
        times; reading goes on.
        """
        capture = self.capture(Window(0.0, 2000.0))
        capture.connector.connect()
        handler = capture.connector.session.consumers[STREAM]
        for _ in range(15):
            handler(delivery("fromAgent.a.ip.tun.packet.raw", b"junk"))
        handler(json_packet("a", 5.0))
        self.assertEqual((capture.unreadable, capture.counts), (15, {"a": 1}))
        self.assertEqual(self.err.getvalue().count("skipped an unreadable message"), 10)
        self.assertIn("15 unreadable messages skipped", capture.summary())

    def test_no_stream(self):
        """
        A vhost with no stream ends the capture with status 1 and says why.
        """
        capture = self.capture(Window(0.0, 10.0))
        session = RecordingSession()
        session.stream_error = NotFound("no stream 'ioppy.record': NOT_FOUND")
        capture.connector.connect(session)
        self.assertEqual(self.statuses, [1])
        self.assertIn("nothing is recorded on this vhost (start ioppy-router with --record)",
                      self.err.getvalue())

    def test_broken_pipe(self):
        """
        A reader that went away (wireshark closed) ends the capture with 0.
        """
        class Gone:
            def write(self, data):
                raise BrokenPipeError()

        capture = Capture(self.clock, BUS, Window(None, None), pcapng.PcapngWriter(io.BytesIO()),
                          err=self.err, make_connector=RecordingConnector)
        capture.writer._out = Gone()
        statuses = []
        capture.start().addCallback(statuses.append)
        capture.connector.connect()
        capture.connector.session.consumers[STREAM](json_packet("a", 5.0))
        self.assertEqual(statuses, [0])


class OptionTests(SynchronousTestCase):
    """
    C{ioppy-capture}'s options.
    """

    def parse(self, *args):
        options = CaptureOptions()
        options.now = lambda: 1000.0
        options.parseOptions(["--url", "amqp://u:p@h/v", *args])
        return options

    def test_defaults(self):
        """
        Without times the whole record up to now is read; with --follow,
        from now on and on.
        """
        window = self.parse("-o", "-")["window"]
        self.assertEqual((window.since, window.until), (None, 1000.0))
        window = self.parse("--follow")["window"]
        self.assertEqual((window.since, window.until), (1000.0, None))

    def test_window(self):
        """
        --since, --until and --agent make the window.
        """
        window = self.parse("--since", "-60s", "--until", "-30s", "-a", "agent_1",
                            "--agent", "agent_2", "-o", "-")["window"]
        self.assertEqual((window.since, window.until, window.agents),
                         (940.0, 970.0, {"agent_1", "agent_2"}))

    def test_refused(self):
        """
        No output, a bad time, an end before the start, a missing directory:
        each is a usage error that says so.
        """
        for args, says in (((), "give -o FILE"),
                           (("--since", "soon", "-o", "-"), "'soon'"),
                           (("--since", "-1s", "--until", "-2s", "-o", "-"), "before --since"),
                           (("-o", "/nonexistent/dir/x.pcapng"), "does not exist")):
            error = self.assertRaises(UsageError, self.parse, *args)
            self.assertIn(says, str(error))
