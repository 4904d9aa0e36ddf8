"""
Tests for L{ioppy_agent.amqp}: the txamqp protocol and session, driven
through txamqp's own L{AMQPump} with a L{Clock}.
"""

import struct

from twisted.internet import abstract, defer
from twisted.internet.error import DNSLookupError
from twisted.internet.protocol import Factory
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactor, MemoryReactorClock
from twisted.names import dns
from twisted.logger import LogLevel, capturedLogs
from twisted.trial.unittest import SynchronousTestCase
from txamqp.client import ChannelClosed
from txamqp.connection import Body, Frame, Header, Heartbeat, Method
from txamqp.testing import AMQPump

from ioppy_agent.amqp import (BrokerEndpoint, BusConnector, BusProtocol, BusSession, HostsThenDNS,
                              FatalBusError, describe, encode_table, load_spec,
                              open_session, reply_of,
                              resolve)
from ioppy_agent.url import parse_amqp_url
from ioppy_agent.wire import as_bytes

URL = parse_amqp_url("amqp://alice:hunter2@broker/interop")
LOCKED = FatalBusError("held by another connection", exit_code=2)


def pump_for():
    """
    @return: An L{AMQPump} with what a real transport has and it lacks:
        C{disconnecting}, producer registration, and writes of several frames
        at once (the fast publish path writes three).
    """
    pump = AMQPump()
    pump.disconnecting = False
    pump.bufferSize = 65536
    pump.registerProducer = lambda producer, streaming: setattr(pump, "producer", producer)
    write_one = pump.write

    def write(data):
        if not pump.initialized:
            return write_one(data)
        while data:
            size = struct.unpack("!I", data[3:7])[0]
            write_one(data[:size + 8])
            data = data[size + 8:]

    pump.write = write
    return pump


def broker_login(pump, open_ok=True):
    """
    Answer the client's login on C{pump} as the broker would.

    @param open_ok: Also accept the vhost.
    @return: The broker's end of channel 0.
    """
    zero = pump.channel(0)
    zero.connection_start(version_major=0, version_minor=9, server_properties={},
                          mechanisms="PLAIN AMQPLAIN", locales="en_US")
    zero.connection_tune(channel_max=2047, frame_max=131072, heartbeat=0)
    if open_ok:
        zero.connection_open_ok(known_hosts="")
    return zero


def broker_handshake(pump):
    """
    Answer login, channel open and exchange check on C{pump}.
    """
    broker_login(pump)
    pump.channel(1).channel_open_ok(channel_id="")
    pump.channel(1).exchange_declare_ok()


def method_names(pump, channel):
    """
    @return: The C{class.method} names sent on C{channel}, in order.
    """
    return [f"{f.payload.method.klass.name}.{f.payload.method.name}"
            for f in pump.outgoing.get(channel, []) if f.payload.type == Frame.METHOD]


class SpecTests(SynchronousTestCase):
    """
    The package's own AMQP 0-9-1 spec file.
    """

    def test_classes(self):
        """
        It defines the classes a RabbitMQ client uses, with RabbitMQ's
        extensions.
        """
        spec = load_spec()
        self.assertEqual([c.name for c in spec.classes],
                         ["connection", "channel", "exchange", "queue", "basic", "confirm"])
        self.assertEqual(spec.classes.byname["connection"].methods.byname["blocked"].id, 60)
        self.assertEqual(spec.classes.byname["basic"].methods.byname["nack"].id, 120)

    def test_nowait_fields(self):
        """
        Every no-wait flag is named C{nowait}, the name txamqp looks for.
        """
        spec = load_spec()
        for klass, method in (("queue", "declare"), ("queue", "bind"),
                              ("basic", "consume"), ("basic", "cancel")):
            fields = spec.classes.byname[klass].methods.byname[method].fields
            self.assertIn("nowait", fields.byname)

    def test_basic_properties(self):
        """
        basic has the 14 content properties in wire order.
        """
        names = [f.name for f in load_spec().classes.byname["basic"].fields]
        self.assertEqual(len(names), 14)
        self.assertEqual(names[0], "content-type")
        self.assertEqual(names[9], "timestamp")


class ProtocolTestCase(SynchronousTestCase):
    """
    A L{BusProtocol} on an L{AMQPump}.
    """

    def setUp(self):
        self.clock = Clock()
        self.client = BusProtocol(load_spec(), URL.vhost, 0, self.clock,
                                  {"connection_name": "ioppy-agent agent_1"})
        self.pump = pump_for()
        self.pump.connect(self.client)

    def handshake(self):
        """
        Run the broker's side of login, channel open and exchange check.

        @return: The L{BusSession}.
        """
        d = open_session(self.client, URL, "amq.topic")
        broker_handshake(self.pump)
        return self.successResultOf(d)


class NoDelayTests(SynchronousTestCase):
    """
    The broker connection sends small writes at once.
    """

    def test_tcp_nodelay(self):
        """
        Nagle's algorithm is turned off on the connection.
        """
        from twisted.internet.testing import StringTransport

        class Transport(StringTransport):
            nodelay = False

            def setTcpNoDelay(self, enabled):
                self.nodelay = enabled

        transport = Transport()
        BusProtocol(load_spec(), "/", 0, Clock(), {}).makeConnection(transport)
        self.assertTrue(transport.nodelay)
        self.assertTrue(transport.value().startswith(b"AMQP"))


class SocketTransport(abstract.FileDescriptor):
    """
    A transport with Twisted's own write buffering, on a fake socket that
    takes at most C{room} bytes per send.

    @ivar sent: Each send, as C{bytes}.
    """

    def __init__(self, room=1 << 20):
        abstract.FileDescriptor.__init__(self, MemoryReactor())
        self.connected = 1
        self.room = room
        self.sent = []

    def writeSomeData(self, data):
        data = bytes(data[:self.room])
        self.sent.append(data)
        return len(data)


class FlushTests(SynchronousTestCase):
    """
    What is published while handling a batch goes out at the end of the
    batch, not one reactor turn later.
    """

    def setUp(self):
        self.client = BusProtocol(load_spec(), "/", 0, Clock(), {})
        self.transport = SocketTransport()
        self.client.makeConnection(self.transport)
        self.transport.doWrite()  # the protocol header
        self.transport.sent.clear()

    def test_flush_sends_buffered_frames(self):
        """
        L{BusProtocol.flush} sends everything written since the last flush in
        one send and stops watching the socket for writability.
        """
        self.client.write_frames(b"one")
        self.client.write_frames(b"two")
        self.assertEqual(self.transport.sent, [])
        self.assertIn(self.transport, self.transport.reactor.getWriters())
        self.client.flush()
        self.assertEqual(self.transport.sent, [b"onetwo"])
        self.assertNotIn(self.transport, self.transport.reactor.getWriters())
        self.client.flush()
        self.assertEqual(self.transport.sent, [b"onetwo"])

    def test_full_socket_keeps_the_rest(self):
        """
        What the socket does not take stays buffered, and the reactor goes
        on watching for writability to send it.
        """
        self.transport.room = 2
        self.client.write_frames(b"abcdef")
        self.client.flush()
        self.assertEqual(self.transport.sent, [b"ab"])
        self.assertIn(self.transport, self.transport.reactor.getWriters())
        self.transport.room = 100
        self.transport.doWrite()
        self.assertEqual(self.transport.sent, [b"ab", b"cdef"])

    def test_closing_transport_left_to_the_reactor(self):
        """
        A transport that is closing is not flushed: the reactor finishes
        writing and then closes it.
        """
        self.client.write_frames(b"bye")
        self.transport.disconnecting = True
        self.client.flush()
        self.assertEqual(self.transport.sent, [])

    def test_lost_transport_not_written(self):
        """
        Once the connection is lost, a flush writes nothing.
        """
        self.client.write_frames(b"late")
        self.transport.connected = 0
        self.client.flush()
        self.assertEqual(self.transport.sent, [])

    def test_deliveries_answered_in_the_same_read(self):
        """
        Messages published by a consumer while it handles the deliveries of
        one read are sent before that read's C{dataReceived} returns.
        """
        spec = self.client.spec
        basic = spec.classes.byname["basic"]
        deliver = basic.methods.byname["deliver"]
        stream = b"".join(
            self.client._pack_frame(Frame(1, payload)) for n in range(3) for payload in (
                Method(deliver, "ioppy-1", n + 1, False, "amq.topic", f"k{n}"),
                Header(basic, 0, 1, **{"content-type": "application/octet-stream"}),
                Body(b"x")))
        self.client.frame_mode = True
        self.client.consumers["ioppy-1"] = (
            lambda key, body, kind: self.client.write_frames(key.encode("ascii")))
        self.client.dataReceived(stream)
        self.assertEqual(self.transport.sent, [b"k0k1k2"])


class LoginTests(ProtocolTestCase):
    """
    L{open_session} logs in and opens a channel.
    """

    def test_plain_login(self):
        """
        The login is PLAIN with the URL's credentials as bytes, and the client
        properties name the connection.
        """
        self.handshake()
        start_ok = self.pump.outgoing[0][0].payload
        self.assertEqual(start_ok.method.name, "start-ok")
        props, mechanism, response, _ = start_ok.args
        self.assertEqual(mechanism, "PLAIN")
        self.assertEqual(response, "\0alice\0hunter2")
        self.assertEqual(props["connection_name"], "ioppy-agent agent_1")

    def test_capabilities(self):
        """
        The client properties announce RabbitMQ's boolean capabilities, which
        txamqp's own encoder cannot write.
        """
        self.handshake()
        properties = self.pump.outgoing[0][0].payload.args[0]
        self.assertEqual(properties["capabilities"], {
            "authentication_failure_close": True, "connection.blocked": True,
            "consumer_cancel_notify": True})

    def test_login_refused_with_close(self):
        """
        With authentication_failure_close, RabbitMQ answers a bad password
        with connection.close 403 before tune: a L{FatalBusError} that says so.
        """
        d = open_session(self.client, URL, "amq.topic")
        zero = self.pump.channel(0)
        zero.connection_start(version_major=0, version_minor=9, server_properties={},
                              mechanisms="PLAIN", locales="en_US")
        zero.connection_close(reply_code=403, reply_text="ACCESS_REFUSED - Login was refused",
                              class_id=0, method_id=0)
        error = self.failureResultOf(d, FatalBusError).value
        self.assertEqual(error.exit_code, 3)
        self.assertIn("wrong user name or password", str(error))

    def test_vhost_and_exchange(self):
        """
        The connection opens the URL's vhost and checks the exchange passively.
        """
        session = self.handshake()
        self.assertIsInstance(session, BusSession)
        open_ = self.pump.outgoing[0][2].payload
        self.assertEqual((open_.method.name, open_.args[0]), ("open", "interop"))
        declare = self.pump.outgoing[1][1].payload
        self.assertEqual(declare.method.name, "declare")
        self.assertEqual(declare.args[1], "amq.topic")
        self.assertTrue(declare.args[3], "passive")

    def _refused(self, code):
        d = open_session(self.client, URL, "amq.topic")
        zero = broker_login(self.pump, open_ok=False)
        zero.connection_close(reply_code=code, reply_text="NOT_ALLOWED - no vhost",
                              class_id=10, method_id=40)
        return self.failureResultOf(d, FatalBusError).value

    def test_vhost_refused_is_fatal(self):
        """
        A connection.close with 530 (unknown vhost) or 403 (refused) is a
        L{FatalBusError} naming user and vhost but not the password.
        """
        for code in (530, 403):
            self.setUp()
            error = self._refused(code)
            self.assertEqual(error.exit_code, 3)
            self.assertIn("'alice'", str(error))
            self.assertIn("'interop'", str(error))
            self.assertNotIn("hunter2", str(error))

    def test_dropped_after_login_is_bad_credentials(self):
        """
        RabbitMQ answers bad credentials by closing the connection after
        start-ok, before tune: that is a L{FatalBusError} (exit status 3)
        naming user and vhost.
        """
        d = open_session(self.client, URL, "amq.topic")
        self.pump.channel(0).connection_start(version_major=0, version_minor=9,
                                              server_properties={}, mechanisms="PLAIN",
                                              locales="en_US")
        self.pump.loseConnection()
        error = self.failureResultOf(d, FatalBusError).value
        self.assertEqual(error.exit_code, 3)
        self.assertIn("wrong user name or password", str(error))
        self.assertIn("'alice'", str(error))
        self.assertNotIn("hunter2", str(error))

    def test_dropped_before_login_is_not_fatal(self):
        """
        A connection lost before the credentials went out is an ordinary
        failure, retried.
        """
        d = open_session(self.client, URL, "amq.topic")
        self.pump.loseConnection()
        self.assertFalse(self.failureResultOf(d).check(FatalBusError))

    def test_tls_failure_is_fatal(self):
        """
        A connection lost because the broker's certificate did not verify is a
        L{FatalBusError} with exit status 4 and the reason.
        """
        from OpenSSL.SSL import Error
        from twisted.python.failure import Failure
        d = open_session(self.client, URL, "amq.topic")
        self.pump.connected = False
        self.client.connectionLost(Failure(Error([("SSL routines", "",
                                                   "certificate verify failed")])))
        error = self.failureResultOf(d, FatalBusError).value
        self.assertEqual(error.exit_code, 4)
        self.assertIn("certificate verify failed", str(error))

    def test_describe(self):
        """
        Failures are described in one readable line, not as a Failure repr.
        """
        from twisted.internet.error import ConnectionLost, ConnectionRefusedError
        from twisted.python.failure import Failure
        from txamqp.client import Closed
        self.assertEqual(describe(Failure(Closed(Failure(ConnectionLost("gone"))))),
                         "Connection to the other side was lost in a non-clean fashion: "
                         "gone.")
        self.assertIn("refused", describe(Failure(ConnectionRefusedError())))
        self.setUp()
        d = open_session(self.client, URL, "amq.topic")
        zero = broker_login(self.pump)
        zero.connection_close(reply_code=320, reply_text="CONNECTION_FORCED",
                              class_id=0, method_id=0)
        self.assertEqual(describe(self.failureResultOf(d)),
                         "the broker closed the connection: 320 CONNECTION_FORCED")

    def test_missing_exchange_is_fatal(self):
        """
        A passive declare of a missing exchange (404) is fatal.
        """
        d = open_session(self.client, URL, "nope")
        broker_login(self.pump)
        self.pump.channel(1).channel_open_ok(channel_id="")
        self.pump.channel(1).channel_close(reply_code=404, reply_text="NOT_FOUND",
                                           class_id=40, method_id=10)
        self.assertIn("'nope'", str(self.failureResultOf(d, FatalBusError).value))


class TableTests(SynchronousTestCase):
    """
    L{encode_table} writes tables txamqp's (and RabbitMQ's) decoder reads.
    """

    def decode(self, data):
        from io import BytesIO

        from txamqp.codec import Codec
        return Codec(BytesIO(data)).decode_table()

    def test_round_trip(self):
        """
        Booleans, integers, strings and nested tables come back as they were.
        """
        table = {"yes": True, "no": False, "n": 7, "s": "text", "nested": {"b": True}}
        self.assertEqual(self.decode(encode_table(table)), table)

    def test_wire_form(self):
        """
        A boolean is C{t} and one octet.
        """
        self.assertEqual(encode_table({"a": True}), b"\x00\x00\x00\x04\x01at\x01")

    def test_large_int_and_bytes(self):
        """
        Integers beyond 32 bits are C{l}; bytes are C{S}.
        """
        self.assertEqual(encode_table({"b": b"\xff"}), b"\x00\x00\x00\x08\x01bS\x00\x00\x00\x01\xff")
        self.assertEqual(encode_table({"n": 2 ** 40})[6:7], b"l")

    def test_unknown_type(self):
        """
        Anything else is refused.
        """
        self.assertRaises(TypeError, encode_table, {"x": 1.5})


class SessionTests(ProtocolTestCase):
    """
    L{BusSession} operations.
    """

    def setUp(self):
        ProtocolTestCase.setUp(self)
        self.session = self.handshake()
        self.pump.outgoing.clear()

    def test_declare_queue(self):
        """
        The queue is exclusive, auto-delete and bounded with drop-head, and is
        bound to each key on the session's exchange.
        """
        d = self.session.declare_queue("ioppy.agent.a", ["k1", "k2"], LOCKED,
                                       max_length=50)
        one = self.pump.channel(1)
        one.queue_declare_ok(queue="ioppy.agent.a", message_count=0, consumer_count=0)
        one.queue_bind_ok()
        one.queue_bind_ok()
        self.successResultOf(d)
        frames = [f.payload for f in self.pump.outgoing[1]]
        declare = frames[0]
        self.assertEqual(declare.args[1], "ioppy.agent.a")
        self.assertEqual(declare.args[4:6], (True, True))  # exclusive, auto-delete
        self.assertEqual(declare.args[7], {"x-max-length": 50, "x-overflow": "drop-head"})
        self.assertEqual([(f.args[2], f.args[3]) for f in frames[1:]],
                         [("amq.topic", "k1"), ("amq.topic", "k2")])

    def test_declare_locked(self):
        """
        A queue held by another connection (the broker answers 405) fails with
        the error given for that case.
        """
        d = self.session.declare_queue("q", [], LOCKED)
        self.pump.channel(1).channel_close(reply_code=405, reply_text="RESOURCE_LOCKED",
                                           class_id=50, method_id=10)
        self.assertIs(self.failureResultOf(d, FatalBusError).value, LOCKED)

    def test_declare_refused(self):
        """
        Other refusals fail with L{ChannelClosed} and the broker's reply.
        """
        d = self.session.declare_queue("q", [], LOCKED)
        self.pump.channel(1).channel_close(reply_code=406, reply_text="PRECONDITION_FAILED",
                                           class_id=50, method_id=10)
        error = self.failureResultOf(d, ChannelClosed).value
        self.assertEqual(reply_of(error), (406, "PRECONDITION_FAILED"))

    def test_publish_frames(self):
        """
        A publish writes method, header (with the content type) and body,
        at once.
        """
        self.assertTrue(self.session.publish("fromAgent.a.ip.tun.packet.raw", b"\x00\xff",
                                             "application/json"))
        method, header, body = [f.payload for f in self.pump.outgoing[1]]
        self.assertEqual(method.method.name, "publish")
        self.assertEqual(method.args[1:3], ("amq.topic", "fromAgent.a.ip.tun.packet.raw"))
        self.assertEqual(header.size, 2)
        self.assertEqual(header.properties, {"content-type": "application/json"})
        self.assertEqual(body.content, b"\x00\xff")

    def test_publish_splits_large_bodies(self):
        """
        A body larger than the frame size goes in several body frames.
        """
        self.client.MAX_LENGTH = 108
        self.session.publish("k", b"x" * 250, "application/json")
        bodies = [as_bytes(f.payload.content) for f in self.pump.outgoing[1][2:]]
        self.assertEqual([len(b) for b in bodies], [100, 100, 50])
        self.assertEqual(b"".join(bodies), b"x" * 250)

    def test_publish_without_content_type(self):
        """
        A publish without a content type sends a header with no properties.
        """
        self.session.publish("k", b"\xff", None)
        header = self.pump.outgoing[1][1].payload
        self.assertEqual((header.size, header.properties), (1, {}))

    def test_publish_after_close(self):
        """
        Publishing on a closed session sends nothing and says so.
        """
        self.session.closed = True
        self.assertFalse(self.session.publish("k", b"x", "application/json"))
        self.assertEqual(self.pump.outgoing, {})

    def _consume(self):
        got = []
        d = self.session.consume("q", lambda *args: got.append(args))
        self.pump.channel(1).basic_consume_ok(consumer_tag="ioppy-1")
        self.assertEqual(self.successResultOf(d), "ioppy-1")
        return got

    def _deliver_bytes(self, body, content_type="application/json"):
        """
        Feed a delivery through txamqp's real frame decoder.
        """
        basic = self.client.spec.classes.byname["basic"]
        deliver = basic.methods.byname["deliver"]
        for payload in (Method(deliver, "ioppy-1", 1, False, "amq.topic", "toAgent.a.x"),
                        Header(basic, 0, len(body), **{"content-type": content_type}),
                        Body(body)):
            self.client.dataReceived(self.client._pack_frame(Frame(1, payload)))

    def _delivery_bytes(self, body, content_type="application/json", tag="ioppy-1",
                        key="toAgent.a.x", body_frames=1):
        basic = self.client.spec.classes.byname["basic"]
        deliver = basic.methods.byname["deliver"]
        properties = {"content-type": content_type} if content_type else {}
        payloads = [Method(deliver, tag, 1, False, "amq.topic", key),
                    Header(basic, 0, len(body), **properties)]
        step = max(1, -(-len(body) // body_frames))
        payloads += [Body(body[i:i + step]) for i in range(0, len(body), step)]
        return b"".join(self.client._pack_frame(Frame(1, p)) for p in payloads)

    def test_deliveries_in_any_chunks(self):
        """
        Deliveries arrive whole and in order however TCP cuts the stream:
        one byte at a time, or several messages in one read.
        """
        got = self._consume()
        stream = b"".join(self._delivery_bytes(bytes([i]) * (i + 1), key=f"k{i}")
                          for i in range(5))
        for i in range(len(stream)):
            self.client.dataReceived(stream[i:i + 1])
        self.client.dataReceived(stream)
        expected = [(f"k{i}", bytes([i]) * (i + 1), "application/json") for i in range(5)]
        self.assertEqual(got, expected * 2)

    def test_body_in_several_frames(self):
        """
        A body split over several body frames is put back together.
        """
        got = self._consume()
        self.client.dataReceived(self._delivery_bytes(b"0123456789" * 30, body_frames=4))
        self.assertEqual(got, [("toAgent.a.x", b"0123456789" * 30, "application/json")])

    def test_empty_body_and_no_content_type(self):
        """
        An empty body is delivered at its header; a missing content type is
        C{None}.
        """
        got = self._consume()
        self.client.dataReceived(self._delivery_bytes(b"", content_type=None))
        self.assertEqual(got, [("toAgent.a.x", b"", None)])

    def test_malformed_frame_drops_connection(self):
        """
        A frame that does not end with the frame-end octet drops the
        connection.
        """
        self._consume()
        data = bytearray(self._delivery_bytes(b"x"))
        data[-1] = 0
        with capturedLogs() as events:
            self.client.dataReceived(bytes(data))
        self.assertTrue(self.pump.aborted)
        self.assertIn("malformed frame", events[0]["log_format"])

    def test_deliver_json_body_is_bytes(self):
        """
        txamqp's decoder turns a UTF-8 body into C{str}; the consumer still
        gets the exact C{bytes}.
        """
        got = self._consume()
        self._deliver_bytes(b'{"data": [1, 2]}')
        self.assertEqual(got, [("toAgent.a.x", b'{"data": [1, 2]}', "application/json")])
        self.assertIsInstance(got[0][1], bytes)

    def test_deliver_binary_body(self):
        """
        A body that is not UTF-8 arrives unchanged.
        """
        got = self._consume()
        self._deliver_bytes(b"\x45\xff\x00\xfe", "application/octet-stream")
        self.assertEqual(got, [("toAgent.a.x", b"\x45\xff\x00\xfe",
                                "application/octet-stream")])

    def test_consumer_error_contained(self):
        """
        An exception in a consumer is logged; the connection stays open and
        the next delivery is handled.
        """
        calls = []

        def handler(key, body, content_type):
            calls.append(body)
            if len(calls) == 1:
                raise ValueError("boom")

        self.session.consume("q", handler)
        self.pump.channel(1).basic_consume_ok(consumer_tag="ioppy-1")
        with capturedLogs() as events:
            self._deliver_bytes(b"one")
            self._deliver_bytes(b"two")
        self.assertEqual(calls, [b"one", b"two"])
        self.assertFalse(self.client.closed)
        self.assertTrue([e for e in events if e["log_level"] == LogLevel.critical])
        self.flushLoggedErrors(ValueError)

    def test_producer(self):
        """
        The session is its transport's push producer with a 512 KiB buffer;
        while paused it refuses to publish, and it says why.
        """
        self.assertIs(self.pump.producer, self.session)
        self.assertEqual(self.pump.bufferSize, 512 * 1024)
        self.assertIsNone(self.session.refusal())
        self.session.pauseProducing()
        self.assertEqual(self.session.refusal(), "send buffer full")
        self.assertFalse(self.session.publish("k", b"x", "application/json"))
        self.assertEqual(self.pump.outgoing, {})
        self.session.resumeProducing()
        self.assertTrue(self.session.publish("k", b"x", "application/json"))

    def test_blocked_refuses(self):
        """
        While the broker has blocked the connection, publishing is refused.
        """
        self.client.blocked = True
        self.assertEqual(self.session.refusal(), "broker blocked")
        self.assertFalse(self.session.publish("k", b"x", "application/json"))

    def test_blocked(self):
        """
        connection.blocked and unblocked set and clear the protocol's flag.
        """
        with capturedLogs():
            self.pump.channel(0).connection_blocked(reason="low on memory")
            self.assertTrue(self.client.blocked)
            self.pump.channel(0).connection_unblocked()
        self.assertFalse(self.client.blocked)

    def test_broker_cancels_consumer(self):
        """
        A basic.cancel from the broker drops the connection, so that a new one
        consumes again.
        """
        self._consume()
        with capturedLogs():
            self.pump.channel(1).basic_cancel(consumer_tag="ioppy-1", nowait=True)
        self.assertFalse(self.pump.connected)

    def test_tracebacks_hide_password(self):
        """
        A traceback logged from the session (here: a failing consumer) holds
        no password, even with the values of its frames' locals.
        """
        def handler(key, body, content_type):
            raise ValueError("boom")

        self.session.consume("q", handler)
        self.pump.channel(1).basic_consume_ok(consumer_tag="ioppy-1")
        with capturedLogs() as events:
            self._deliver_bytes(b"x")
        failure = [e["log_failure"] for e in events if "log_failure" in e][0]
        self.assertIn("ValueError", failure.getTraceback())
        for text in (failure.getTraceback(), failure.getTraceback(detail="verbose"),
                     repr(self.session.client.vhost), repr(URL)):
            self.assertNotIn("hunter2", text)
        self.flushLoggedErrors(ValueError)

    def test_orderly_close(self):
        """
        Close cancels the consumer, publishes the farewell, closes the channel
        and then the connection, each waiting for the broker's answer.
        """
        from ioppy_agent.wire import Message
        self._consume()
        self.pump.outgoing.clear()
        d = self.session.close([Message("bye", b"{}")], timeout=1.0)
        self.pump.channel(1).basic_cancel_ok(consumer_tag="ioppy-1")
        self.pump.channel(1).channel_close_ok()
        self.assertEqual(method_names(self.pump, 1),
                         ["basic.cancel", "basic.publish", "channel.close"])
        self.assertEqual(method_names(self.pump, 0), ["connection.close"])
        self.assertNoResult(d)
        self.pump.channel(0).connection_close_ok()
        self.successResultOf(d)
        self.assertFalse(self.pump.connected)
        self.assertFalse(self.pump.aborted)

    def test_close_times_out(self):
        """
        A broker that does not answer the close handshake is dropped after
        the timeout.
        """
        self._consume()
        d = self.session.close((), timeout=1.0)
        self.assertNoResult(d)
        with capturedLogs() as events:
            self.clock.advance(1.0)
        self.successResultOf(d)
        self.assertFalse(self.pump.connected)
        self.assertTrue(any("did not finish" in e.get("log_format", "") for e in events))

    def test_close_twice(self):
        """
        A second close does nothing.
        """
        self.session.closed = True
        self.successResultOf(self.session.close())
        self.assertEqual(self.pump.outgoing, {})


class PumpEndpoint:
    """
    A client endpoint whose connections are L{AMQPump}s.
    """

    def __init__(self):
        self.pumps = []

    def connect(self, factory):
        protocol = factory.buildProtocol(None)
        pump = pump_for()
        pump.connect(protocol)
        self.pumps.append(pump)
        return defer.succeed(protocol)




class ConnectorTests(SynchronousTestCase):
    """
    L{BusConnector} keeps a session with L{ClientService}.
    """

    def setUp(self):
        self.clock = Clock()
        self.endpoint = PumpEndpoint()
        self.sessions = []
        self.fatal = []
        self.setup_result = None
        self.connector = BusConnector(self.clock, URL, "amq.topic", self._setup,
                                      self.fatal.append, heartbeat=0,
                                      endpoint=self.endpoint)

    def _setup(self, session):
        self.sessions.append(session)
        return self.setup_result

    def test_setup_runs_on_connect(self):
        """
        After login the set-up callable gets the session, which becomes the
        connector's current one.
        """
        self.connector.start()
        broker_handshake(self.endpoint.pumps[0])
        self.assertEqual(len(self.sessions), 1)
        self.assertIs(self.connector.session, self.sessions[0])

    def test_reconnects_and_sets_up_again(self):
        """
        When the connection drops, the session is cleared, and after the
        back-off a new connection is set up again.
        """
        self.connector.start()
        broker_handshake(self.endpoint.pumps[0])
        with capturedLogs():
            self.endpoint.pumps[0].abortConnection()
        self.assertIsNone(self.connector.session)
        self.clock.advance(31)
        broker_handshake(self.endpoint.pumps[1])
        self.assertEqual(len(self.sessions), 2)
        self.assertIs(self.connector.session, self.sessions[1])

    def test_fatal_stops(self):
        """
        A L{FatalBusError} from set-up reaches C{on_fatal}, the connection is
        dropped and no retry follows.
        """
        self.setup_result = defer.fail(FatalBusError("duplicate", exit_code=2))
        self.connector.start()
        broker_handshake(self.endpoint.pumps[0])
        self.assertEqual([str(e) for e in self.fatal], ["duplicate"])
        self.assertFalse(self.endpoint.pumps[0].connected)
        self.clock.advance(60)
        self.assertEqual(len(self.endpoint.pumps), 1)

    def test_silent_broker_dropped(self):
        """
        With heartbeats, a broker that sends nothing for two intervals is
        taken for dead: the connection is aborted and made again.
        """
        connector = BusConnector(self.clock, URL, "amq.topic", self._setup,
                                 self.fatal.append, heartbeat=5, endpoint=self.endpoint,
                                 retry_policy=lambda failures: 1.0)
        connector.start()
        pump = self.endpoint.pumps[0]
        broker_handshake(pump)
        self.clock.advance(9.9)
        self.assertTrue(pump.connected)
        with capturedLogs():
            self.clock.advance(0.1)
        self.assertTrue(pump.aborted)
        self.assertIsNone(connector.session)
        self.clock.advance(1.0)
        self.assertEqual(len(self.endpoint.pumps), 2)

    def test_heartbeats_only_when_idle(self):
        """
        A heartbeat frame goes out only when nothing else was sent for half
        an interval.
        """
        connector = BusConnector(self.clock, URL, "amq.topic", self._setup,
                                 self.fatal.append, heartbeat=4, endpoint=self.endpoint)
        connector.start()
        pump = self.endpoint.pumps[0]
        broker_handshake(pump)

        def heartbeats():
            return len([f for f in pump.outgoing.get(0, [])
                        if f.payload.type == Frame.HEARTBEAT])

        for _ in range(3):
            self.clock.advance(1.9)
            connector.session.publish("k", b"x", "application/json")
            pump.pump(0, Heartbeat())
        self.assertEqual(heartbeats(), 0)
        self.clock.advance(4.0)
        self.assertEqual(heartbeats(), 1)
        self.assertTrue(pump.connected)

    def test_stop_closes_in_order(self):
        """
        C{stop} runs the session's orderly close, then stops reconnecting.
        """
        self.connector.start()
        pump = self.endpoint.pumps[0]
        broker_handshake(pump)
        pump.outgoing.clear()
        d = self.connector.stop((), timeout=1.0)
        pump.channel(1).channel_close_ok()
        pump.channel(0).connection_close_ok()
        self.successResultOf(d)
        self.assertEqual(method_names(pump, 1) + method_names(pump, 0),
                         ["channel.close", "connection.close"])
        self.clock.advance(60)
        self.assertEqual(len(self.endpoint.pumps), 1)

    def test_unreachable_retries_with_backoff(self):
        """
        A refused connection is retried after a delay from the retry policy,
        which grows with each failure in a row; C{stop} ends the retries.
        """
        delays = []

        def policy(failures):
            delays.append(failures)
            return 2.0 * failures

        refused = RefusingEndpoint()
        connector = BusConnector(self.clock, URL, "amq.topic", self._setup,
                                 self.fatal.append, endpoint=refused, retry_policy=policy)
        with capturedLogs() as events:
            connector.start()
            self.clock.advance(2.0)
            self.clock.advance(4.0)
        self.assertEqual((refused.attempts, delays), (3, [1, 2, 3]))
        self.assertIn("trying {next} in", events[-1]["log_format"])
        self.assertEqual(events[-1]["next"], "again")
        self.assertNotIn("hunter2", repr([e.get("url") for e in events]))
        self.successResultOf(connector.stop())
        self.clock.advance(100)
        self.assertEqual(refused.attempts, 3)


    def test_several_brokers(self):
        """
        With fallback URLs, each failure moves on to the next broker, round
        the list, and the session is set up on whichever answers.
        """
        urls = [parse_amqp_url(f"amqp://u:p@node{i}/v") for i in (1, 2, 3)]
        endpoint = PerHostEndpoint({"node3"})
        connector = BusConnector(self.clock, urls[0], "amq.topic", self._setup,
                                 self.fatal.append, fallback_urls=urls[1:],
                                 retry_policy=lambda failures: 1.0)
        connector._endpoints = [endpoint.for_host(u.host) for u in urls]
        with capturedLogs():
            connector.start()
            self.clock.advance(1.0)
            self.clock.advance(1.0)
        self.assertEqual(endpoint.tried, ["node1", "node2", "node3"])
        broker_handshake(endpoint.pumps[0])
        self.assertIs(connector.url, urls[2])
        self.assertEqual(len(self.sessions), 1)
        with capturedLogs():
            endpoint.pumps[0].abortConnection()
            self.clock.advance(1.0)
        self.assertEqual(endpoint.tried[-1], "node1")


class PerHostEndpoint:
    """
    Endpoints that refuse except for the hosts given, which get an
    L{AMQPump}.
    """

    def __init__(self, answering):
        self.answering = answering
        self.tried = []
        self.pumps = []

    def for_host(self, host):
        outer = self

        class One:
            def connect(self, factory):
                outer.tried.append(host)
                if host not in outer.answering:
                    from twisted.internet.error import ConnectionRefusedError
                    return defer.fail(ConnectionRefusedError())
                return PumpEndpoint.connect(outer, factory)

        return One()


class RefusingEndpoint:
    """
    A client endpoint whose every connection is refused.
    """

    attempts = 0

    def connect(self, factory):
        from twisted.internet.error import ConnectionRefusedError
        self.attempts += 1
        return defer.fail(ConnectionRefusedError())


class FakeResolver:
    """
    Answers A and AAAA look-ups from two dicts.
    """

    def __init__(self, a=None, aaaa=None):
        self.a = a or {}
        self.aaaa = aaaa or {}
        self.asked = []

    def _answer(self, table, kind, record, host):
        from twisted.names.error import DomainError
        self.asked.append((kind, host))
        if host not in table:
            return defer.fail(DomainError(host))
        rr = dns.RRHeader(host, kind, payload=record(table[host]))
        return defer.succeed(([rr], [], []))

    def lookupAddress(self, host, timeout=None):
        return self._answer(self.a, dns.A, dns.Record_A, host)

    def lookupIPV6Address(self, host, timeout=None):
        return self._answer(self.aaaa, dns.AAAA, dns.Record_AAAA, host)


class EndpointTests(SynchronousTestCase):
    """
    L{BrokerEndpoint} connects by address, looking names up without threads.
    """

    def test_ipv4_name(self):
        """
        A name with an A record is connected to over IPv4.
        """
        reactor = MemoryReactorClock()
        resolver = FakeResolver(a={"broker.example": "192.0.2.5"})
        BrokerEndpoint(reactor, "broker.example", 5673, resolver=resolver).connect(Factory())
        self.assertEqual(reactor.tcpClients[0][:2], ("192.0.2.5", 5673))

    def test_ipv6_fallback(self):
        """
        A name with only an AAAA record is connected to over IPv6.
        """
        reactor = MemoryReactorClock()
        resolver = FakeResolver(aaaa={"broker.example": "2001:db8::5"})
        BrokerEndpoint(reactor, "broker.example", 5672, resolver=resolver).connect(Factory())
        self.assertEqual(reactor.tcpClients[0][:2], ("2001:db8::5", 5672))
        self.assertEqual([k for k, _ in resolver.asked], [dns.A, dns.AAAA])

    def test_unknown_name(self):
        """
        A name with no address fails with L{DNSLookupError}.
        """
        d = BrokerEndpoint(MemoryReactorClock(), "nowhere.example", 5672,
                           resolver=FakeResolver()).connect(Factory())
        self.failureResultOf(d, DNSLookupError)

    def test_address_not_looked_up(self):
        """
        An IP address is used as it is.
        """
        reactor = MemoryReactorClock()
        resolver = FakeResolver()
        BrokerEndpoint(reactor, "::1", 5672, resolver=resolver).connect(Factory())
        self.assertEqual((reactor.tcpClients[0][:2], resolver.asked), (("::1", 5672), []))


class HostsThenDNSTests(SynchronousTestCase):
    """
    L{HostsThenDNS} answers from the hosts file, and asks DNS only for other
    names.
    """

    def setUp(self):
        self.hosts = self.mktemp()
        with open(self.hosts, "w") as f:
            f.write("127.0.0.1 localhost\n::1 localhost ip6-localhost\n")
        self.resolver = HostsThenDNS(Clock(), hosts_file=self.hosts.encode())

    def test_from_hosts_file(self):
        """
        A name in the hosts file is answered without making a DNS client.
        """
        self.assertEqual(self.successResultOf(resolve(self.resolver, "localhost")),
                         "127.0.0.1")
        self.assertIsNone(self.resolver._dns)

    def test_other_names_ask_dns(self):
        """
        A name not in the hosts file goes to DNS.
        """
        dns_server = FakeResolver(a={"broker.example": "192.0.2.9"})
        self.resolver._chain = lambda: dns_server
        self.assertEqual(self.successResultOf(resolve(self.resolver, "broker.example")),
                         "192.0.2.9")
        self.assertEqual(dns_server.asked, [(dns.A, "broker.example")])
