"""
Tests for L{ioppy_agent.model.wire}, against messages recorded from ioppytest.
"""

import json

from twisted.trial.unittest import SynchronousTestCase

from ioppy_agent.model import wire

from ..helpers import fixture


class PacketTests(SynchronousTestCase):
    """
    Packets to and from ioppytest's JSON body.
    """

    def test_decode_reference(self):
        """
        The packet in ioppytest's own message decodes to the bytes of its
        C{data} list.
        """
        ref = fixture("fromAgent.agent_1.ip.tun.packet.raw")
        packet = wire.decode_packet(ref["body"].encode())
        self.assertEqual(packet, bytes(json.loads(ref["body"])["data"]))
        self.assertEqual(packet[0] >> 4, 6)

    def test_round_trip_matches_reference(self):
        """
        Encoding the reference packet with the reference timestamp gives the
        same JSON object ioppytest sent.
        """
        ref = fixture("toAgent.agent_2.ip.tun.packet.raw")
        obj = json.loads(ref["body"])
        body = wire.encode_packet(bytes(obj["data"]), obj["timestamp"])
        self.assertEqual(json.loads(body), obj)

    def test_encode_fields(self):
        """
        The body has ioppytest's four fields, C{data} as a list of ints and
        C{timestamp} as the float given.
        """
        obj = json.loads(wire.encode_packet(b"\x45\x00\xff", 1764242400.25, "tun7"))
        self.assertEqual(obj, {"_api_version": wire.API_VERSION, "data": [69, 0, 255],
                               "interface_name": "tun7", "timestamp": 1764242400.25})

    def test_encode_is_bytes(self):
        """
        Encoded bodies are C{bytes}.
        """
        self.assertIsInstance(wire.encode_packet(b"\x60", 1.0), bytes)

    def test_integer_timestamp_accepted(self):
        """
        ioppytest's library replaces the float timestamp with an integer; such
        bodies decode all the same.
        """
        body = b'{"data": [69, 0], "timestamp": 1795783737, "interface_name": "tun0"}'
        self.assertEqual(wire.decode_packet(body), b"\x45\x00")

    def test_str_body(self):
        """
        A body handed over as C{str} (txamqp's decoder does that) decodes the
        same.
        """
        ref = fixture("toAgent.agent_2.ip.tun.packet.raw")
        self.assertEqual(wire.decode_packet(ref["body"]),
                         wire.decode_packet(ref["body"].encode()))

    def test_unknown_fields_tolerated(self):
        """
        Extra fields are ignored.
        """
        self.assertEqual(wire.decode_packet(b'{"data": [1], "x": {"y": 2}}'), b"\x01")

    def test_malformed(self):
        """
        Each kind of malformed body is refused with L{wire.BadMessage}.
        """
        for body in (b"not json", b"[1, 2]", b'"x"', b'{}', b'{"data": "abc"}',
                     b'{"data": {"0": 1}}', b'{"data": []}', b'{"data": [256]}',
                     b'{"data": [-1]}', b'{"data": [1.5]}', b'{"data": ["1"]}',
                     b'{"data": [null]}', b'{"data": [true]}', b'{"data": [1, false]}',
                     b'{"data": [false]}', b'{"data": [0, true]}',
                     b"\xff\xfe\x00", b""):
            self.assertRaises(wire.BadMessage, wire.decode_packet, body)

    def test_as_bytes(self):
        """
        L{wire.as_bytes} gives C{bytes} for C{bytes}, C{str} and buffers, and
        refuses anything else.
        """
        self.assertEqual(wire.as_bytes(b"\x00\xff"), b"\x00\xff")
        self.assertEqual(wire.as_bytes("é"), "é".encode())
        self.assertEqual(wire.as_bytes(bytearray(b"ab")), b"ab")
        self.assertRaises(wire.BadMessage, wire.as_bytes, 5)


class PacketOfTests(SynchronousTestCase):
    """
    L{wire.packet_of} reads either wire format, chosen by content type.
    """

    def test_raw(self):
        """
        An application/octet-stream body is the packet itself.
        """
        self.assertEqual(wire.packet_of(b"\x45\x00", wire.RAW), b"\x45\x00")

    def test_json(self):
        """
        application/json, or no content type, is ioppytest's JSON.
        """
        for content_type in (wire.JSON, None, ""):
            self.assertEqual(wire.packet_of(b'{"data": [69]}', content_type), b"\x45")

    def test_refused(self):
        """
        An empty raw body is a bad message; another content type is unknown.
        """
        self.assertRaises(wire.BadMessage, wire.packet_of, b"", wire.RAW)
        self.assertRaises(wire.UnknownContentType, wire.packet_of, b"\x45", "text/plain")


class CheckShapeTests(SynchronousTestCase):
    """
    L{wire.check_shape} looks at a packet message without decoding it.
    """

    def test_good_shapes(self):
        """
        A JSON object with a C{data} field (around whitespace, and as the
        C{str} txamqp may hand back) and a non-empty raw body pass, as
        C{bytes}.
        """
        body = wire.encode_packet(b"\x45\x00", 1.0)
        for content_type in (wire.JSON, None, ""):
            self.assertEqual(wire.check_shape(body, content_type), body)
        self.assertEqual(wire.check_shape(b'\n {"data": [1]} \r\n', wire.JSON),
                         b'\n {"data": [1]} \r\n')
        self.assertEqual(wire.check_shape(body.decode("ascii"), wire.JSON), body)
        self.assertEqual(wire.check_shape(b"\xff", wire.RAW), b"\xff")

    def test_bad_shapes(self):
        """
        Anything else is a bad message, saying why.
        """
        for body, why in ((b"junk", "not a JSON object"), (b"[1]", "not a JSON object"),
                          (b"", "not a JSON object"), (b'{"x": [1]', "not a JSON object"),
                          (b'{"x": [1]}', "no 'data' field")):
            with self.assertRaises(wire.BadMessage) as caught:
                wire.check_shape(body, wire.JSON)
            self.assertIn(why, str(caught.exception))
        self.assertRaises(wire.BadMessage, wire.check_shape, b"", wire.RAW)
        self.assertRaises(wire.UnknownContentType, wire.check_shape, b"{}", "text/plain")
