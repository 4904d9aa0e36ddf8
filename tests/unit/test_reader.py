"""
Tests for L{ioppy_agent.bus.reader.FrameReader}: the broker's bytes in,
methods and deliveries out, and everything AMQP does not allow refused
with its reply code.  Pure: bytes only, no reactor, no txamqp.
"""

import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from ioppy_agent.bus import errors, framing
from ioppy_agent.bus.reader import Delivery, FrameReader, MethodFrame

from . import frames as f

CONSUME_OK = f.method(1, 60, 21, f.shortstr("ioppy-1"))


class ReaderTestCase(SynchronousTestCase):
    """
    A reader with channel 1 open.
    """

    def setUp(self):
        self.reader = FrameReader()
        self.reader.open_channel(1)

    def events(self, data):
        """
        @return: Every event C{data} gives.
        """
        self.reader.feed(data)
        out = []
        while True:
            event = self.reader.next_event()
            if event is None:
                return out
            out.append(event)

    def assertViolation(self, data, code, says, ids=(0, 0)):
        """
        Feeding C{data} raises L{ProtocolViolation} with C{code}, a text
        holding C{says}, and the method C{ids}.
        """
        error = self.assertRaises(errors.ProtocolViolation, self.events, data)
        self.assertEqual((error.reply_code, (error.class_id, error.method_id)), (code, ids))
        self.assertIn(says, error.text)
        return error


class EventTests(ReaderTestCase):
    """
    What the reader makes of good frames.
    """

    def test_method(self):
        """
        A method frame comes out whole, with its channel and ids, for the
        caller to decode.
        """
        [event] = self.events(CONSUME_OK)
        self.assertIsInstance(event, MethodFrame)
        self.assertEqual((event.channel, event.class_id, event.method_id, event.frame,
                          event.name), (1, 60, 21, CONSUME_OK, "basic.consume-ok"))

    def test_delivery(self):
        """
        basic.deliver, its header and its body make one L{Delivery} with
        named fields.
        """
        [delivery] = self.events(f.message(b"\x45abc", tag="ioppy-2", delivery_tag=9,
                                           redelivered=True))
        self.assertIsInstance(delivery, Delivery)
        self.assertEqual(
            (delivery.channel, delivery.consumer_tag, delivery.delivery_tag,
             delivery.redelivered, delivery.exchange, delivery.routing_key,
             delivery.content_type, delivery.size, delivery.body, delivery.oversize),
            (1, "ioppy-2", 9, True, "amq.topic", "toAgent.a.ip.tun.packet.raw",
             "application/json", 4, b"\x45abc", False))

    def test_body_in_pieces(self):
        """
        A body in several frames is joined.
        """
        [delivery] = self.events(f.message(b"0123456789" * 10, pieces=7))
        self.assertEqual(delivery.body, b"0123456789" * 10)

    def test_empty_body(self):
        """
        An empty body ends the delivery at its header; no content type is
        C{None}.
        """
        [delivery] = self.events(f.message(b"", content_type=None))
        self.assertEqual((delivery.body, delivery.content_type), (b"", None))

    def test_every_cut(self):
        """
        However the stream is cut, the same events come out.
        """
        stream = f.message(b"one") + f.HEARTBEAT + CONSUME_OK + f.message(b"two", pieces=2)
        for cut in range(1, len(stream)):
            self.setUp()
            events = self.events(stream[:cut]) + self.events(stream[cut:])
            self.assertEqual([getattr(e, "body", None) or e.name for e in events],
                             [b"one", "basic.consume-ok", b"two"])

    def test_one_event_at_a_time(self):
        """
        L{FrameReader.next_event} parses only up to the next event, so a
        caller can stop and come back.
        """
        self.reader.feed(f.message(b"a") + f.message(b"b"))
        self.assertEqual(self.reader.next_event().body, b"a")
        self.assertTrue(self.reader.buffered)
        self.assertEqual(self.reader.next_event().body, b"b")
        self.assertIsNone(self.reader.next_event())
        self.assertEqual(self.reader.buffered, 0)

    def test_property_flag_words(self):
        """
        Further property-flag words are skipped; the content type still
        comes first.
        """
        data = f.deliver() + f.header(size=1, extra_flags=(0x0001, 0x0000)) + f.body(data=b"x")
        [delivery] = self.events(data)
        self.assertEqual(delivery.content_type, "application/json")


class HeadersTests(ReaderTestCase):
    """
    The C{headers} property (a raw packet's timestamp, a stream's offset) is
    kept as it came, for the consumer to decode.
    """

    TABLE = framing.encode_table({"timestamp": 1764242400.25, "x-stream-offset": 2 ** 40})

    def test_whole_in_one_read(self):
        """
        A delivery read in one go keeps its headers table (without the
        length) beside its content type.
        """
        [delivery] = self.events(f.message(b"\x45", content_type="application/octet-stream",
                                           headers=self.TABLE))
        self.assertEqual((delivery.content_type, delivery.body),
                         ("application/octet-stream", b"\x45"))
        self.assertEqual(framing.decode_table(delivery.headers),
                         {"timestamp": 1764242400.25, "x-stream-offset": 2 ** 40})

    def test_in_pieces(self):
        """
        So does one whose frames come one read at a time, also without a
        content type.
        """
        for content_type in ("application/json", None):
            self.setUp()
            stream = f.message(b"\x45abc", pieces=2, content_type=content_type,
                               headers=self.TABLE)
            events = [e for i in range(len(stream)) for e in self.events(stream[i:i + 1])]
            [delivery] = events
            self.assertEqual((delivery.content_type, delivery.body), (content_type, b"\x45abc"))
            self.assertEqual(framing.decode_table(delivery.headers)["timestamp"],
                             1764242400.25)

    def test_none(self):
        """
        A message without the property has C{None}.
        """
        [delivery] = self.events(f.message(b"\x45"))
        self.assertIsNone(delivery.headers)

    def test_overrun(self):
        """
        A headers table longer than its content header is a frame error.
        """
        table = struct.pack("!I", 500) + b"\x01x"
        self.assertViolation(f.deliver() + f.header(size=1, headers=table) + f.body(data=b"x"),
                             errors.FRAME_ERROR, "headers table overruns")

    def test_published_stamp_read(self):
        """
        What L{framing.Publisher} sends with a timestamp, the reader gives
        back: the publisher's header frame after a C{basic.deliver}.
        """
        frames = framing.Publisher(1, "amq.topic").frames(
            "k", b"\x45xyz", "application/octet-stream", 131072, timestamp=1764242400.5)
        method_end = 7 + struct.unpack_from("!I", frames, 3)[0] + 1
        [delivery] = self.events(f.deliver() + frames[method_end:])
        self.assertEqual(delivery.body, b"\x45xyz")
        self.assertEqual(framing.decode_table(delivery.headers),
                         {framing.STAMP_HEADER: 1764242400.5})


class LimitTests(ReaderTestCase):
    """
    Whatever the broker sends, what the reader holds stays bounded.
    """

    def test_huge_frame_refused_at_its_header(self):
        """
        A frame header announcing more than frame_max is refused as soon as
        its 7 bytes are in, before any of its payload.
        """
        self.assertViolation(b"\x03\x00\x01\xff\xff\xff\xf0", errors.FRAME_ERROR,
                             "a frame of 4294967288 bytes, more than the negotiated "
                             "frame_max 131072")

    def test_negotiated_frame_max(self):
        """
        Once tuned, the negotiated frame_max is the limit.
        """
        self.reader.frame_max = 4096
        self.events(f.method(1, 60, 21, f.shortstr("x" * 200)))
        self.assertViolation(f.body(data=b"x" * 4089), errors.FRAME_ERROR, "frame_max 4096")

    def test_slow_frame_joined_once(self):
        """
        A frame arriving in many small reads is held as a list and joined
        once, when it is complete, not copied on every read.
        """
        joins = []
        join = self.reader._join
        self.reader._join = lambda: (joins.append(1), join())
        data = f.message(b"z" * 100000)
        self.reader.feed(data[:10])
        self.assertEqual(self.reader.next_event(), None)
        for i in range(10, len(data), 100):
            self.reader.feed(data[i:i + 100])
            event = self.reader.next_event()
            if event is not None:
                break
        self.assertEqual(event.body, b"z" * 100000)
        self.assertLessEqual(len(joins), 4)

    def test_oversize_body_skipped(self):
        """
        A body larger than max_body is not kept: its frames are skipped as
        they come, and the delivery says it was oversize.
        """
        self.reader.max_body = 1000
        self.reader.feed(f.deliver() + f.header(size=5000))
        self.assertIsNone(self.reader.next_event())
        for _ in range(49):
            self.reader.feed(f.body(data=b"x" * 100))
            self.assertIsNone(self.reader.next_event())
        self.assertEqual(self.reader.buffered, 0)
        self.reader.feed(f.body(data=b"x" * 100))
        delivery = self.reader.next_event()
        self.assertEqual((delivery.oversize, delivery.body, delivery.size), (True, None, 5000))
        [after] = self.events(f.message(b"ok"))
        self.assertEqual(after.body, b"ok")

    def test_body_beyond_any_broker(self):
        """
        A header announcing more than RabbitMQ's 512 MiB ceiling is refused.
        """
        self.events(f.deliver())
        self.assertViolation(f.header(size=2 ** 40), errors.FRAME_ERROR,
                             "a content header announcing 1099511627776 bytes")

    def test_body_longer_than_announced(self):
        """
        Body frames carrying more than the header announced are refused.
        """
        self.events(f.deliver() + f.header(size=3))
        self.assertViolation(f.body(data=b"four"), errors.FRAME_ERROR,
                             "more than the 3 bytes their header announced")


class OrderTests(ReaderTestCase):
    """
    Frames out of order, on the wrong channel, or of the wrong kind.
    """

    def test_header_without_deliver(self):
        """
        A content header with no basic.deliver before it is refused (505).
        """
        self.assertViolation(f.header(size=1), errors.UNEXPECTED_FRAME,
                             "a content header on channel 1 with no message before it")

    def test_body_without_header(self):
        """
        A body frame with no header before it is refused, also right after
        basic.deliver.
        """
        self.assertViolation(f.body(data=b"x"), errors.UNEXPECTED_FRAME, "no content header")
        self.setUp()
        self.events(f.deliver())
        self.assertViolation(f.body(data=b"x"), errors.UNEXPECTED_FRAME, "no content header")

    def test_second_header(self):
        """
        A second header for one message is refused.
        """
        self.events(f.deliver() + f.header(size=2))
        self.assertViolation(f.header(size=2), errors.UNEXPECTED_FRAME, "content header")

    def test_method_inside_content(self):
        """
        A method while a message's content is expected is refused.
        """
        self.events(f.deliver() + f.header(size=2))
        self.assertViolation(CONSUME_OK, errors.UNEXPECTED_FRAME,
                             "basic.consume-ok on channel 1 while a message's content was "
                             "expected", (60, 21))

    def test_header_of_another_class(self):
        """
        A content header of a class other than basic, or with a weight, is
        refused.
        """
        self.events(f.deliver())
        self.assertViolation(f.header(size=1, class_id=50), errors.UNEXPECTED_FRAME,
                             "class 50")

    def test_channel_never_opened(self):
        """
        A frame on a channel never opened is refused (504); one on a closed
        channel too.
        """
        self.assertViolation(f.deliver(channel=7), errors.CHANNEL_ERROR,
                             "a frame of type 1 on channel 7, which was never opened")
        self.setUp()
        self.reader.close_channel(1)
        self.assertViolation(CONSUME_OK, errors.CHANNEL_ERROR, "channel 1")

    def test_wrong_channel_for_class(self):
        """
        Connection methods belong on channel 0, and only they.
        """
        self.assertViolation(f.method(1, 10, 50), errors.CHANNEL_ERROR,
                             "connection.close on channel 1", (10, 50))
        self.setUp()
        self.assertViolation(f.method(0, 60, 21), errors.CHANNEL_ERROR,
                             "basic.consume-ok on channel 0", (60, 21))
        self.setUp()
        self.assertViolation(f.header(channel=0), errors.CHANNEL_ERROR, "content frames on "
                             "channel 0")

    def test_bad_heartbeats(self):
        """
        A heartbeat on a channel other than 0, or with a payload, is refused.
        """
        self.assertViolation(f.frame(8, 1, b""), errors.FRAME_ERROR, "heartbeat")
        self.setUp()
        self.assertViolation(f.frame(8, 0, b"x"), errors.FRAME_ERROR, "heartbeat")

    def test_unknown_frame_type(self):
        """
        A frame type AMQP 0-9-1 does not have is refused.
        """
        self.assertViolation(f.frame(9, 0, b""), errors.FRAME_ERROR,
                             "a frame of unknown type 9")

    def test_unknown_method(self):
        """
        A method no broker sends is refused (540), naming its ids.
        """
        self.assertViolation(f.method(1, 60, 99), errors.NOT_IMPLEMENTED,
                             "method 60.99, which AMQP 0-9-1 brokers do not send", (60, 99))
        self.setUp()
        self.assertViolation(f.method(1, 60, 40), errors.NOT_IMPLEMENTED, "60.40", (60, 40))

    def test_short_method_frame(self):
        """
        A method frame too short for its ids is refused.
        """
        self.assertViolation(f.frame(1, 1, b"\x00"), errors.FRAME_ERROR, "too short")

    def test_content_methods_not_asked_for(self):
        """
        basic.return and basic.get-ok answer nothing this client does.
        """
        self.assertViolation(f.method(1, 60, 50), errors.COMMAND_INVALID,
                             "basic.return, which answers nothing", (60, 50))

    def test_truncated_deliver(self):
        """
        A basic.deliver whose fields overrun its frame is refused (502).
        """
        self.assertViolation(f.method(1, 60, 60, b"\x05ab"), errors.SYNTAX_ERROR,
                             "basic.deliver: its fields overrun the frame", (60, 60))

    def test_bad_frame_end(self):
        """
        A frame that does not end with 0xce is refused.
        """
        self.assertViolation(f.frame(1, 1, b"\x00\x3c\x00\x15", end=b"\x00"),
                             errors.FRAME_ERROR, "does not end with 0xce")

    def test_header_fields_overrun(self):
        """
        Property flags or a content type running past the header are refused.
        """
        self.events(f.deliver())
        payload = b"\x00\x3c\x00\x00" + b"\x00" * 8 + b"\x80\x01"
        self.assertViolation(f.frame(2, 1, payload), errors.FRAME_ERROR, "property flags")
        self.setUp()
        self.events(f.deliver())
        payload = b"\x00\x3c\x00\x00" + b"\x00" * 8 + b"\x80\x00\x09short"
        self.assertViolation(f.frame(2, 1, payload), errors.FRAME_ERROR, "content type")
        self.setUp()
        self.assertViolation(f.deliver() + f.frame(2, 1, b"\x00\x3c"), errors.FRAME_ERROR,
                             "too short")


class ClosingTests(ReaderTestCase):
    """
    Channels being closed by this side.
    """

    def test_closing_channel_skips(self):
        """
        While a channel closes, its frames are skipped, deliveries included,
        except the closing methods.
        """
        self.events(f.deliver() + f.header(size=3))
        self.reader.closing_channel(1)
        events = self.events(f.body(data=b"abc") + f.message(b"late") + CONSUME_OK
                             + f.method(1, 20, 41))
        self.assertEqual([e.name for e in events], ["channel.close-ok"])
        self.assertEqual(self.reader.skipped, 5)

    def test_closing_connection_skips(self):
        """
        While the connection closes, every frame but connection.close and
        close-ok is skipped.
        """
        self.reader.closing_channel(0)
        events = self.events(f.message(b"x") + f.method(0, 10, 60, f.shortstr("r"))
                             + f.method(1, 20, 41) + f.method(0, 10, 51))
        self.assertEqual([e.name for e in events], ["connection.close-ok"])

    def test_still_checked_while_closing(self):
        """
        Frames skipped are still checked for size.
        """
        self.reader.closing_channel(0)
        self.assertViolation(b"\x03\x00\x01\xff\xff\xff\xf0", errors.FRAME_ERROR, "frame_max")


class FuzzTests(SynchronousTestCase):
    """
    Any bytes at all.
    """

    @settings(max_examples=1000, deadline=None, database=None, derandomize=True)
    @given(data=st.lists(st.one_of(
        st.binary(max_size=40),
        st.sampled_from([f.message(b"ok"), f.deliver(), f.header(size=2), f.body(data=b"x"),
                         CONSUME_OK, f.HEARTBEAT, f.method(0, 10, 51)])), max_size=12))
    def test_only_violations(self, data):
        """
        Whatever bytes come, in whatever pieces, the reader gives events or
        raises L{ProtocolViolation}, nothing else, and holds no more than it
        was given.
        """
        reader = FrameReader()
        reader.open_channel(1)
        fed = 0
        try:
            for piece in data:
                reader.feed(piece)
                fed += len(piece)
                while reader.next_event() is not None:
                    pass
                self.assertLessEqual(reader.buffered, fed)
        except errors.ProtocolViolation as e:
            self.assertIn(e.reply_code, (501, 502, 503, 504, 505, 540))
