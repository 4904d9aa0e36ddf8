"""
Tests for L{ioppy_agent.bus.framing}: what the client sends, checked as
bytes.
"""

import struct

from twisted.trial.unittest import SynchronousTestCase

from ioppy_agent.bus import framing


class PackTests(SynchronousTestCase):
    """
    Single frames.
    """

    def test_frame(self):
        """
        A frame is type, channel, payload size, payload and the end octet.
        """
        self.assertEqual(framing.pack_frame(1, 3, b"ab"),
                         b"\x01\x00\x03\x00\x00\x00\x02ab\xce")

    def test_shortstr(self):
        """
        A short string is a length octet and UTF-8; more than 255 bytes is
        refused.
        """
        self.assertEqual(framing.shortstr("é"), b"\x02\xc3\xa9")
        self.assertRaises(ValueError, framing.shortstr, "x" * 256)

    def test_connection_close(self):
        """
        connection.close carries the reply code, the text (cut to a short
        string) and the class and method at fault, on channel 0.
        """
        frame = framing.pack_connection_close(501, "x" * 300, 60, 60)
        kind, channel, size = struct.unpack("!BHI", frame[:7])
        self.assertEqual((kind, channel, size, frame[-1]), (1, 0, 4 + 2 + 256 + 4, 0xCE))
        self.assertEqual(frame[7:13], b"\x00\x0a\x00\x32\x01\xf5")
        self.assertEqual(frame[13], 255)
        self.assertEqual(frame[-5:-1], b"\x00\x3c\x00\x3c")

    def test_start_ok(self):
        """
        connection.start-ok carries the properties as a field table (booleans
        as C{t}), the mechanism, the response and the locale.
        """
        frame = framing.pack_start_ok(0, {"a": True}, "PLAIN", b"\0u\0p", "en_US")
        payload = frame[7:-1]
        self.assertEqual(payload, b"\x00\x0a\x00\x0b" + b"\x00\x00\x00\x04\x01at\x01"
                         + b"\x05PLAIN" + b"\x00\x00\x00\x04\0u\0p" + b"\x05en_US")

    def test_method_names(self):
        """
        Methods are named as the spec names them, unknown ones by their ids.
        """
        self.assertEqual(framing.method_name(60, 60), "basic.deliver")
        self.assertEqual(framing.method_name(60, 99), "method 60.99")


class TableTests(SynchronousTestCase):
    """
    L{framing.encode_table}.
    """

    def test_wire_form(self):
        """
        A boolean is C{t} and one octet.
        """
        self.assertEqual(framing.encode_table({"a": True}), b"\x00\x00\x00\x04\x01at\x01")

    def test_large_int_and_bytes(self):
        """
        Integers beyond 32 bits are C{l}; bytes are C{S}; nested tables C{F}.
        """
        self.assertEqual(framing.encode_table({"b": b"\xff"}),
                         b"\x00\x00\x00\x08\x01bS\x00\x00\x00\x01\xff")
        self.assertEqual(framing.encode_table({"n": 2 ** 40})[6:7], b"l")
        self.assertEqual(framing.encode_table({"t": {}}),
                         b"\x00\x00\x00\x07\x01tF\x00\x00\x00\x00")

    def test_unknown_type(self):
        """
        Anything else is refused.
        """
        self.assertRaises(TypeError, framing.encode_table, {"x": [1]})


def split(frames):
    """
    @return: The frames in C{frames}, as C{(kind, channel, payload)}.
    """
    out = []
    while frames:
        kind, channel, size = struct.unpack("!BHI", frames[:7])
        assert frames[7 + size] == 0xCE
        out.append((kind, channel, frames[7:7 + size]))
        frames = frames[8 + size:]
    return out


class PublisherTests(SynchronousTestCase):
    """
    L{framing.Publisher} packs basic.publish messages.
    """

    def test_small_message(self):
        """
        Method, header with the content type and body size, and one body
        frame, on the publisher's channel.
        """
        publisher = framing.Publisher(1, "amq.topic")
        frames = split(publisher.frames("fromAgent.a.x", b"\x45\x00", "application/json",
                                        131072))
        self.assertEqual([(k, c) for k, c, _ in frames], [(1, 1), (2, 1), (3, 1)])
        self.assertEqual(frames[0][2], b"\x00\x3c\x00\x28\x00\x00\x09amq.topic"
                                       b"\x0dfromAgent.a.x\x00")
        self.assertEqual(frames[1][2], b"\x00\x3c\x00\x00" + struct.pack("!Q", 2)
                         + b"\x80\x00\x10application/json")
        self.assertEqual(frames[2][2], b"\x45\x00")

    def test_no_content_type(self):
        """
        Without a content type, the header has no property set.
        """
        frames = split(framing.Publisher(1, "x").frames("k", b"z", None, 131072))
        self.assertEqual(frames[1][2][-2:], b"\x00\x00")

    def test_large_body_split(self):
        """
        A body longer than frame_max - 8 goes in several body frames.
        """
        frames = split(framing.Publisher(2, "x").frames("k", b"y" * 250, "t", 108))
        self.assertEqual([len(p) for k, c, p in frames if k == 3], [100, 100, 50])

    def test_frames_kept(self):
        """
        The method frame for a routing key is packed once and reused.
        """
        publisher = framing.Publisher(1, "x")
        first = publisher.frames("k", b"1", "t", 4096)
        publisher._method = None
        self.assertEqual(publisher.frames("k", b"1", "t", 4096), first)


class StreamMethodTests(SynchronousTestCase):
    """
    The methods packed here for streams: their field tables must carry
    64-bit sizes and timestamps, which txamqp's encoder cannot.
    """

    def test_timestamp_and_double(self):
        """
        A L{framing.Timestamp} is a C{T} field, a float a C{d}, a large int
        an C{l}; L{framing.decode_table} reads them back.
        """
        table = framing.encode_table({"t": framing.Timestamp(1764242400), "d": 0.5,
                                      "l": 2 ** 33})
        self.assertEqual(table[4:],
                         b"\x01tT" + struct.pack("!Q", 1764242400) + b"\x01dd"
                         + struct.pack("!d", 0.5) + b"\x01ll" + struct.pack("!q", 2 ** 33))
        decoded = framing.decode_table(table[4:])
        self.assertEqual(decoded, {"t": 1764242400, "d": 0.5, "l": 2 ** 33})
        self.assertIsInstance(decoded["t"], framing.Timestamp)

    def test_decode_every_type(self):
        """
        Every field type RabbitMQ sends is read, nested tables and arrays
        too.
        """
        data = (b"\x01ab\xff" + b"\x01bB\x07" + b"\x01cs\xff\xfe" + b"\x01du\x00\x03"
                + b"\x01ei\x00\x00\x00\x04" + b"\x01fL" + struct.pack("!Q", 5)
                + b"\x01gf" + struct.pack("!f", 1.5) + b"\x01hD\x02\x00\x00\x01\x2c"
                + b"\x01ix\x00\x00\x00\x02\x00\x01" + b"\x01jV"
                + b"\x01kA\x00\x00\x00\x05I\x00\x00\x00\x09"
                + b"\x01mF" + framing.encode_table({"n": True}))
        self.assertEqual(framing.decode_table(data),
                         {"a": -1, "b": 7, "c": -2, "d": 3, "e": 4, "f": 5, "g": 1.5,
                          "h": (2, 300), "i": b"\x00\x01", "j": None, "k": [9],
                          "m": {"n": True}})

    def test_decode_refuses(self):
        """
        A table cut short, a field longer than its table or an unknown type
        raise L{ValueError}.
        """
        for data in (b"\x01aI\x00", b"\x01aS\x00\x00\x00\x09ab", b"\x01a?", b"\x05ab"):
            self.assertRaises(ValueError, framing.decode_table, data)

    def test_queue_declare(self):
        """
        C{queue.declare}: ticket, name, the five bits, the arguments.
        """
        frame = framing.pack_queue_declare(1, 0, "ioppy.record", False, True, False, False,
                                           False, {"x-queue-type": "stream"})
        payload = frame[7:-1]
        self.assertEqual(payload[:4], struct.pack("!HH", 50, 10))
        self.assertEqual(payload[4:6], b"\0\0")
        self.assertEqual(payload[6:19], b"\x0cioppy.record")
        self.assertEqual(payload[19], 0b00010)
        self.assertEqual(framing.decode_table(payload[24:]), {"x-queue-type": b"stream"})

    def test_basic_consume(self):
        """
        C{basic.consume}: ticket, queue, tag, the four bits, the arguments.
        """
        frame = framing.pack_basic_consume(2, 0, "q", "ioppy-1", False, False, False, False,
                                           {"x-stream-offset": framing.Timestamp(7)})
        payload = frame[7:-1]
        self.assertEqual(struct.unpack_from("!H", frame, 1)[0], 2)
        self.assertEqual(payload[:4], struct.pack("!HH", 60, 20))
        self.assertEqual(payload[6:17], b"\x01q\x07ioppy-1\x00")
        self.assertEqual(framing.decode_table(payload[21:]), {"x-stream-offset": 7})

    def test_basic_ack(self):
        """
        C{basic.ack}: the delivery tag and the multiple bit.
        """
        self.assertEqual(framing.pack_basic_ack(1, 300, True)[7:-1],
                         struct.pack("!HHQ", 60, 80, 300) + b"\x01")

    def test_stamped_publish(self):
        """
        With a timestamp, the content header carries the content type and a
        headers table of one double, C{timestamp}; the frame sizes add up.
        """
        publisher = framing.Publisher(1, "amq.topic")
        frames = publisher.frames("k", b"\x45", "application/octet-stream", 131072,
                                  timestamp=1.25)
        method_size = struct.unpack_from("!I", frames, 3)[0]
        at = 8 + method_size
        kind, channel, size = struct.unpack_from("!BHI", frames, at)
        header = frames[at + 7:at + 7 + size]
        self.assertEqual((kind, channel, frames[at + 7 + size]), (2, 1, 0xCE))
        self.assertEqual(struct.unpack_from("!HHQH", header), (60, 0, 1, 0xA000))
        table_at = 14 + 1 + len("application/octet-stream")
        self.assertEqual(framing.decode_table(header[table_at + 4:]), {"timestamp": 1.25})
        again = publisher.frames("k", b"\x45", "application/octet-stream", 131072,
                                 timestamp=2.5)
        self.assertEqual(len(again), len(frames))
        self.assertNotEqual(again, frames)

    def test_headers(self):
        """
        Extra headers (a text, an array of texts as RabbitMQ's C{CC} takes
        it) go in the headers table, beside the timestamp when there is one,
        and the broker's reading of the table gives them back.
        """
        publisher = framing.Publisher(1, "amq.topic")
        extra = (("CC", ("ioppy.to.agent_2", "ioppy.to.agent_TT")), ("ioppy-direct", "yes"))
        for stamp in (None, 3.5):
            kind = "application/json" if stamp is None else "application/octet-stream"
            frames = publisher.frames("k", b"{}", kind, 131072, timestamp=stamp,
                                      headers=extra)
            at = 8 + struct.unpack_from("!I", frames, 3)[0]
            size = struct.unpack_from("!I", frames, at + 3)[0]
            header = frames[at + 7:at + 7 + size]
            self.assertEqual(frames[at + 7 + size], 0xCE)
            self.assertEqual(struct.unpack_from("!HHQH", header), (60, 0, 2, 0xA000))
            table_at = 14 + 1 + len(kind)
            length = struct.unpack_from("!I", header, table_at)[0]
            self.assertEqual(table_at + 4 + length, len(header))
            want = {"CC": [b"ioppy.to.agent_2", b"ioppy.to.agent_TT"],
                    "ioppy-direct": b"yes"}
            if stamp is not None:
                want["timestamp"] = stamp
            self.assertEqual(framing.decode_table(header[table_at + 4:]), want)
