"""
Tests for L{ioppy_agent.bus.protocol} and L{ioppy_agent.bus.session}: the
txamqp protocol and the session, driven through a L{BusPump} with a
L{Clock}.
"""

import struct

from twisted.internet import abstract
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from txamqp.client import ChannelClosed, Closed
from txamqp.codec import Codec
from txamqp.connection import Frame

from ioppy_agent.model.actions import DropReason
from ioppy_agent.bus import framing
from ioppy_agent.bus.errors import (AccessRefused, ExchangeMissing, LoginRefused, NotFound,
                                    QueueLocked, QueueMismatch, StreamMismatch, TLSFailed)
from ioppy_agent.bus.connector import describe
from ioppy_agent.bus.protocol import BusProtocol
from ioppy_agent.bus.spec import load_spec
from ioppy_agent.bus.login import open_session
from ioppy_agent.bus.replies import reply_of
from ioppy_agent.bus.session import BusSession
from ioppy_agent.model.wire import Message, as_bytes

from .bus_helpers import (URL, ProtocolTestCase, broker_login, delivery_bytes,
                          method_names)


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


class NoDelayTests(SynchronousTestCase):
    """
    The broker connection sends small writes at once.
    """

    def test_tcp_nodelay(self):
        """
        Nagle's algorithm is turned off on the connection.
        """
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
        self.client.reader.open_channel(1)
        stream = b"".join(delivery_bytes(self.client, b"x", key=f"k{n}") for n in range(3))
        self.client.consumers["ioppy-1"] = (
            lambda key, body, kind, user: self.client.write_frames(key.encode("ascii")), None)
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

    def test_frame_max_negotiated(self):
        """
        The client answers connection.tune with the broker's frame size when
        it is no larger than its own (128 KiB), and its own otherwise; the
        reader then refuses larger frames.
        """
        d = open_session(self.client, URL, "amq.topic")
        broker_login(self.pump, frame_max=65536)
        tune_ok = self.pump.outgoing[0][1].payload
        self.assertEqual((tune_ok.method.name, tune_ok.args[1]), ("tune-ok", 65536))
        self.assertEqual((self.client.MAX_LENGTH, self.client.reader.frame_max),
                         (65536, 65536))
        self.assertNoResult(d)
        self.setUp()
        open_session(self.client, URL, "amq.topic")
        broker_login(self.pump, frame_max=0)
        self.assertEqual(self.pump.outgoing[0][1].payload.args[1], 131072)

    def test_login_refused_with_close(self):
        """
        With authentication_failure_close, RabbitMQ answers a bad password
        with connection.close 403 before tune: L{LoginRefused}, saying so.
        """
        d = open_session(self.client, URL, "amq.topic")
        zero = self.pump.channel(0)
        zero.connection_start(version_major=0, version_minor=9, server_properties={},
                              mechanisms="PLAIN", locales="en_US")
        zero.connection_close(reply_code=403, reply_text="ACCESS_REFUSED - Login was refused",
                              class_id=0, method_id=0)
        error = self.failureResultOf(d, LoginRefused).value
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
        return self.failureResultOf(d, AccessRefused).value

    def test_vhost_refused_is_fatal(self):
        """
        A connection.close with 530 (unknown vhost) or 403 (refused) is an
        L{AccessRefused} naming user and vhost but not the password.
        """
        for code in (530, 403):
            self.setUp()
            error = self._refused(code)
            self.assertIn("'alice'", str(error))
            self.assertIn("'interop'", str(error))
            self.assertNotIn("hunter2", str(error))

    def test_dropped_after_login_is_bad_credentials(self):
        """
        A broker that closes the connection after start-ok, before tune, has
        refused the credentials: L{LoginRefused}, naming user and vhost.
        """
        d = open_session(self.client, URL, "amq.topic")
        self.pump.channel(0).connection_start(version_major=0, version_minor=9,
                                              server_properties={}, mechanisms="PLAIN",
                                              locales="en_US")
        self.pump.loseConnection()
        error = self.failureResultOf(d, LoginRefused).value
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
        self.failureResultOf(d, Closed)

    def test_tls_failure_is_fatal(self):
        """
        A connection lost because the broker's certificate did not verify is a
        L{TLSFailed} with the reason.
        """
        from OpenSSL.SSL import Error
        d = open_session(self.client, URL, "amq.topic")
        self.pump.connected = False
        self.client.connectionLost(Failure(Error([("SSL routines", "",
                                                   "certificate verify failed")])))
        error = self.failureResultOf(d, TLSFailed).value
        self.assertIn("certificate verify failed", str(error))

    def test_describe(self):
        """
        Failures are described in one readable line, not as a Failure repr.
        """
        from twisted.internet.error import ConnectionLost, ConnectionRefusedError
        self.assertEqual(describe(Failure(Closed(Failure(ConnectionLost("gone"))))),
                         "Connection to the other side was lost in a non-clean fashion: "
                         "gone.")
        self.assertIn("refused", describe(Failure(ConnectionRefusedError())))
        d = open_session(self.client, URL, "amq.topic")
        zero = broker_login(self.pump)
        zero.connection_close(reply_code=320, reply_text="CONNECTION_FORCED",
                              class_id=0, method_id=0)
        self.assertEqual(describe(self.failureResultOf(d), self.client),
                         "the broker closed the connection: 320 CONNECTION_FORCED")

    def test_missing_exchange_is_fatal(self):
        """
        A passive declare of a missing exchange (404) is L{ExchangeMissing}.
        """
        d = open_session(self.client, URL, "nope")
        broker_login(self.pump)
        self.pump.channel(1).channel_open_ok(channel_id="")
        with capturedLogs():
            self.pump.channel(1).channel_close(reply_code=404, reply_text="NOT_FOUND",
                                               class_id=40, method_id=10)
        self.assertIn("'nope'", str(self.failureResultOf(d, ExchangeMissing).value))

    def test_broker_of_another_protocol(self):
        """
        A broker that answers the protocol header with its own (it speaks
        another AMQP version) is dropped, saying so.
        """
        self.client.dataReceived(b"AMQP\x00\x00\x09\x01")
        self.assertFalse(self.pump.connected)
        self.assertIn("does not speak AMQP 0-9-1", self.client.lost_reason)


class TableTests(SynchronousTestCase):
    """
    L{framing.encode_table} writes tables txamqp's (and RabbitMQ's) decoder
    reads.
    """

    def decode(self, data):
        from io import BytesIO
        return Codec(BytesIO(data)).decode_table()

    def test_round_trip(self):
        """
        Booleans, integers, strings and nested tables come back as they were.
        """
        from ioppy_agent.bus.framing import encode_table
        table = {"yes": True, "no": False, "n": 7, "s": "text", "nested": {"b": True}}
        self.assertEqual(self.decode(encode_table(table)), table)


class SessionTestCase(ProtocolTestCase):
    """
    A L{BusSession} after the handshake.
    """

    def setUp(self):
        ProtocolTestCase.setUp(self)
        self.session = self.handshake()
        self.pump.outgoing.clear()

    def _consume(self, oversize=None):
        got = []
        d = self.session.consume("q", lambda *args: got.append(args[:3]), oversize)
        self.pump.channel(1).basic_consume_ok(consumer_tag="ioppy-1")
        self.assertEqual(self.successResultOf(d), "ioppy-1")
        return got


class SessionTests(SessionTestCase):
    """
    L{BusSession} operations.
    """

    def test_declare_queue(self):
        """
        The queue is exclusive, auto-delete and bounded with drop-head, and is
        bound to each key on the session's exchange.
        """
        d = self.session.declare_queue("ioppy.agent.a", ["k1", "k2"], max_length=50)
        one = self.pump.channel(1)
        one.queue_declare_ok(queue="ioppy.agent.a", message_count=0, consumer_count=0)
        one.queue_bind_ok()
        one.queue_bind_ok()
        self.successResultOf(d)
        frames = [f.payload for f in self.pump.outgoing[1]]
        declare = frames[0]
        self.assertEqual(declare.args[1], "ioppy.agent.a")
        self.assertEqual(declare.args[4:6], (True, True))  # exclusive, auto-delete
        self.assertEqual(declare.args[7], {"x-max-length": 50, "x-max-length-bytes": 64 << 20,
                                           "x-overflow": "drop-head"})
        self.assertEqual([(f.args[2], f.args[3]) for f in frames[1:]],
                         [("amq.topic", "k1"), ("amq.topic", "k2")])

    def test_declare_locked(self):
        """
        A queue held by another connection (the broker answers 405) fails with
        L{QueueLocked}, naming the queue.
        """
        d = self.session.declare_queue("q", [])
        self.pump.channel(1).channel_close(reply_code=405, reply_text="RESOURCE_LOCKED",
                                           class_id=50, method_id=10)
        self.assertIn("'q'", str(self.failureResultOf(d, QueueLocked).value))

    def test_declare_refused(self):
        """
        Other refusals fail with L{ChannelClosed} and the broker's reply.
        """
        d = self.session.declare_queue("q", [])
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

    def test_producer(self):
        """
        The session is its transport's push producer with a 512 KiB buffer;
        while paused it refuses to publish, and it says why.
        """
        self.assertIs(self.pump.producer, self.session)
        self.assertEqual(self.pump.bufferSize, 512 * 1024)
        self.assertIsNone(self.session.refusal())
        self.session.pauseProducing()
        self.assertIs(self.session.refusal(), DropReason.SEND_BUFFER_FULL)
        self.assertFalse(self.session.publish("k", b"x", "application/json"))
        self.assertEqual(self.pump.outgoing, {})
        self.session.resumeProducing()
        self.assertTrue(self.session.publish("k", b"x", "application/json"))

    def test_control_while_paused_or_blocked(self):
        """
        A control message is sent while the send buffer is full and while
        the broker blocks publishers; only a closed session refuses it.
        """
        message = Message("toAgent.agent_1.ip.tun.routes", b"{}", "application/json")
        self.session.pauseProducing()
        self.assertTrue(self.session.publish_message(message))
        self.session.resumeProducing()
        with capturedLogs():
            self.pump.channel(0).connection_blocked(reason="low on memory")
            self.assertTrue(self.session.publish_message(message))
        payloads = [f.payload for f in self.pump.outgoing[1]]
        self.assertEqual([p.args[2] for p in payloads[::3]],
                         ["toAgent.agent_1.ip.tun.routes"] * 2)
        self.assertEqual([as_bytes(p.content) for p in payloads[2::3]], [b"{}"] * 2)
        self.session.closed = True
        self.assertFalse(self.session.publish_message(message))

    def test_blocked(self):
        """
        connection.blocked and unblocked set and clear the protocol's flag;
        while blocked, publishing is refused.
        """
        with capturedLogs():
            self.pump.channel(0).connection_blocked(reason="low on memory")
            self.assertTrue(self.client.blocked)
            self.assertIs(self.session.refusal(), DropReason.BROKER_BLOCKED)
            self.assertFalse(self.session.publish("k", b"x", "application/json"))
            self.pump.channel(0).connection_unblocked()
        self.assertFalse(self.client.blocked)


class DeliveryTests(SessionTestCase):
    """
    Deliveries, read from the bytes and handed to the consumer.
    """

    def test_deliveries_in_any_chunks(self):
        """
        Deliveries arrive whole and in order however TCP cuts the stream:
        one byte at a time, or several messages in one read.
        """
        got = self._consume()
        stream = b"".join(delivery_bytes(self.client, bytes([i]) * (i + 1), key=f"k{i}")
                          for i in range(5))
        for i in range(len(stream)):
            self.pump.send(stream[i:i + 1])
        self.pump.send(stream)
        expected = [(f"k{i}", bytes([i]) * (i + 1), "application/json") for i in range(5)]
        self.assertEqual(got, expected * 2)

    def test_body_in_several_frames(self):
        """
        A body split over several body frames is put back together.
        """
        got = self._consume()
        self.pump.send(delivery_bytes(self.client, b"0123456789" * 30, body_frames=4))
        self.assertEqual(got, [("toAgent.a.x", b"0123456789" * 30, "application/json")])

    def test_acknowledged_a_quarter_at_a_time(self):
        """
        With a prefetch of 8, the consumer asks for it (basic.qos) and
        acknowledges every second delivery with one basic.ack (multiple),
        after handling it.
        """
        got = []
        d = self.session.consume("q", lambda *args: got.append(args), prefetch=8)
        self.pump.channel(1).basic_qos_ok()
        self.pump.channel(1).basic_consume_ok(consumer_tag="ioppy-1")
        self.successResultOf(d)
        self.assertEqual(method_names(self.pump, 1), ["basic.qos", "basic.consume"])
        self.pump.outgoing.clear()
        for tag in range(1, 6):
            self.pump.send(delivery_bytes(self.client, b"{}", delivery_tag=tag))
        self.assertEqual(len(got), 5)
        acks = [f.payload for f in self.pump.outgoing.get(1, [])
                if f.payload.type == Frame.METHOD]
        self.assertEqual([(a.method.name, a.args[0], a.args[1]) for a in acks],
                         [("ack", 2, True), ("ack", 4, True)])

    def test_user_id(self):
        """
        The C{user_id} property (which the broker checked) reaches the
        consumer, behind the properties before it.
        """
        got = []
        d = self.session.consume("q", lambda *args: got.append(args))
        self.pump.channel(1).basic_consume_ok(consumer_tag="ioppy-1")
        self.successResultOf(d)
        self.pump.send(delivery_bytes(self.client, b"{}", delivery_mode=2, priority=1,
                                      correlation_id="c", timestamp=5, user_id="s42.agent_1"))
        self.pump.send(delivery_bytes(self.client, b"{}"))
        self.assertEqual([args[3] for args in got], ["s42.agent_1", None])

    def test_empty_body_and_no_content_type(self):
        """
        An empty body is delivered at its header; a missing content type is
        C{None}.
        """
        got = self._consume()
        self.pump.send(delivery_bytes(self.client, b"", content_type=None))
        self.assertEqual(got, [("toAgent.a.x", b"", None)])

    def test_binary_body(self):
        """
        A body arrives as the exact C{bytes}, UTF-8 or not (txamqp's decoder
        would make a UTF-8 body a C{str}).
        """
        got = self._consume()
        for body in (b'{"data": [1, 2]}', b"\x45\xff\x00\xfe"):
            self.pump.send(delivery_bytes(self.client, body, "application/octet-stream"))
        self.assertEqual([g[1] for g in got], [b'{"data": [1, 2]}', b"\x45\xff\x00\xfe"])
        self.assertIsInstance(got[0][1], bytes)

    def test_oversize(self):
        """
        A body over the reader's limit is not kept: the consumer's oversize
        callable gets its key and size, and the next message arrives.
        """
        sizes = []
        got = self._consume(oversize=lambda key, size: sizes.append((key, size)))
        self.client.reader.max_body = 100
        self.pump.send(delivery_bytes(self.client, b"x" * 300, body_frames=3))
        self.pump.send(delivery_bytes(self.client, b"ok"))
        self.assertEqual((sizes, [g[1] for g in got]), ([("toAgent.a.x", 300)], [b"ok"]))

    def test_unknown_consumer(self):
        """
        A delivery for a consumer tag nobody registered is dropped (logged at
        debug level); the connection stays.
        """
        got = self._consume()
        with capturedLogs() as events:
            self.pump.send(delivery_bytes(self.client, b"x", tag="ioppy-9"))
        self.assertEqual(got, [])
        self.assertEqual([e["log_level"] for e in events], [LogLevel.debug])
        self.assertTrue(self.pump.connected)

    def test_consumer_error_contained(self):
        """
        An exception in a consumer is logged; the connection stays open and
        the next delivery is handled.
        """
        calls = []

        def handler(key, body, content_type, user_id):
            calls.append(body)
            if len(calls) == 1:
                raise ValueError("boom")

        self.session.consume("q", handler)
        self.pump.channel(1).basic_consume_ok(consumer_tag="ioppy-1")
        with capturedLogs() as events:
            self.pump.send(delivery_bytes(self.client, b"one"))
            self.pump.send(delivery_bytes(self.client, b"two"))
        self.assertEqual(calls, [b"one", b"two"])
        self.assertFalse(self.client.closed)
        self.assertTrue([e for e in events if e["log_level"] == LogLevel.critical])
        self.flushLoggedErrors(ValueError)

    def test_tracebacks_hide_password(self):
        """
        A traceback logged from the session (here: a failing consumer) holds
        no password, even with the values of its frames' locals.
        """
        def handler(key, body, content_type, user_id):
            raise ValueError("boom")

        self.session.consume("q", handler)
        self.pump.channel(1).basic_consume_ok(consumer_tag="ioppy-1")
        with capturedLogs() as events:
            self.pump.send(delivery_bytes(self.client, b"x"))
        failure = [e["log_failure"] for e in events if "log_failure" in e][0]
        self.assertIn("ValueError", failure.getTraceback())
        for text in (failure.getTraceback(), failure.getTraceback(detail="verbose"),
                     repr(self.session.client.vhost), repr(URL)):
            self.assertNotIn("hunter2", text)
        self.flushLoggedErrors(ValueError)

    def test_bounded_deliveries_per_read(self):
        """
        One read holding many deliveries is handled 64 at a time: then the
        transport is paused, and the rest is handled in the next reactor
        turns, so the TUN is read in between.
        """
        got = self._consume()
        self.pump.send(b"".join(delivery_bytes(self.client, b"x", key=f"k{i}")
                                for i in range(150)))
        self.assertEqual((len(got), self.pump.paused), (64, True))
        self.next_turn()
        self.assertEqual((len(got), self.pump.paused), (128, True))
        self.next_turn()
        self.assertEqual((len(got), self.pump.paused), (150, False))
        self.assertEqual(got[-1][0], "k149")
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def next_turn(self):
        """
        Run the one call scheduled for the next reactor turn, as the reactor
        would: what it schedules in turn waits for the turn after.
        """
        [call] = self.clock.getDelayedCalls()
        self.assertEqual(call.getTime(), self.clock.seconds())
        func, args, kw = call.func, call.args, call.kw
        call.cancel()
        func(*args, **kw)


class CloseTests(SessionTestCase):
    """
    Closing: in order from this side, and when the broker closes.
    """

    def test_orderly_close(self):
        """
        Close cancels the consumer, publishes the farewell, closes the channel
        and then the connection with reply code 200, each waiting for the
        broker's answer.
        """
        self._consume()
        self.pump.outgoing.clear()
        d = self.session.close([Message("bye", b"{}")], timeout=1.0)
        self.pump.channel(1).basic_cancel_ok(consumer_tag="ioppy-1")
        self.pump.channel(1).channel_close_ok()
        self.assertEqual(method_names(self.pump, 1),
                         ["basic.cancel", "basic.publish", "channel.close"])
        self.assertEqual(method_names(self.pump, 0), ["connection.close"])
        close = self.pump.outgoing[0][0].payload
        self.assertEqual(close.args[:2], (200, "goodbye"))
        self.assertNoResult(d)
        self.pump.channel(0).connection_close_ok()
        self.successResultOf(d)
        self.assertFalse(self.pump.connected)
        self.assertFalse(self.pump.aborted)

    def test_deliveries_during_close_skipped(self):
        """
        Deliveries that were on their way when the channel close went out are
        skipped, as the spec says, and do not disturb the close.
        """
        got = self._consume()
        d = self.session.close((), timeout=1.0)
        self.pump.channel(1).basic_cancel_ok(consumer_tag="ioppy-1")
        self.pump.send(delivery_bytes(self.client, b"late"))
        self.pump.channel(1).channel_close_ok()
        self.pump.channel(0).connection_close_ok()
        self.successResultOf(d)
        self.assertEqual(got, [])
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

    def test_broker_cancels_consumer(self):
        """
        A basic.cancel from the broker closes the connection (200, naming the
        consumer), so that a new one consumes again.
        """
        self._consume()
        self.pump.outgoing.clear()
        self.pump.channel(1).basic_cancel(consumer_tag="ioppy-1", nowait=True)
        close = self.pump.outgoing[0][0].payload
        self.assertEqual((close.method.name, close.args[0]), ("close", 200))
        self.assertIn("cancelled consumer ioppy-1", self.client.lost_reason)
        self.pump.channel(0).connection_close_ok()
        self.assertFalse(self.pump.connected)

    def test_broker_closes_channel(self):
        """
        A channel.close from the broker once the session is up is answered
        with close-ok, logged with the broker's reason, and the connection is
        closed so that a new session is set up; publishing is refused
        meanwhile.
        """
        self.client.ready = True
        self.pump.outgoing.clear()
        with capturedLogs() as events:
            self.pump.channel(1).channel_close(reply_code=404,
                                               reply_text="NOT_FOUND - no exchange 'x'",
                                               class_id=60, method_id=40)
        self.assertEqual(method_names(self.pump, 1), ["channel.close-ok"])
        self.assertEqual(method_names(self.pump, 0), ["connection.close"])
        self.assertIn("the broker closed channel 1: 404 NOT_FOUND - no exchange 'x'",
                      formatEvent(events[0]))
        self.assertIs(self.session.refusal(), DropReason.NOT_CONNECTED)
        self.clock.advance(1.0)
        self.assertTrue(self.pump.aborted)

    def test_broker_closes_connection(self):
        """
        A connection.close from the broker is answered with close-ok, and its
        reason kept for the log.
        """
        with capturedLogs():
            self.pump.channel(0).connection_close(reply_code=320,
                                                  reply_text="CONNECTION_FORCED - bye",
                                                  class_id=0, method_id=0)
        self.assertEqual(method_names(self.pump, 0), ["connection.close-ok"])
        self.assertEqual(self.client.lost_reason,
                         "the broker closed the connection: 320 CONNECTION_FORCED - bye")
        self.assertFalse(self.pump.connected)


class StreamSessionTests(SessionTestCase):
    """
    L{BusSession}'s stream operations, as frames.
    """

    def test_declare_stream(self):
        """
        A stream is durable, of type stream, with its retention as 64-bit
        numbers and strings, and bound to each key.
        """
        d = self.session.declare_stream("ioppy.record", ["k1"],
                                        {"x-max-age": "1h", "x-max-length-bytes": 1 << 33})
        one = self.pump.channel(1)
        one.queue_declare_ok(queue="ioppy.record", message_count=0, consumer_count=0)
        one.queue_bind_ok()
        self.successResultOf(d)
        [declare] = self.pump.undecoded
        payload = declare[7:-1]
        self.assertEqual(struct.unpack_from("!HH", payload), (50, 10))
        self.assertEqual(payload[6:19], b"\x0cioppy.record")
        self.assertEqual(payload[19], 0b10)  # durable
        self.assertEqual(framing.decode_table(payload[24:]),
                         {"x-max-age": b"1h", "x-max-length-bytes": 1 << 33,
                          "x-queue-type": b"stream"})
        [bind] = [f.payload for f in self.pump.outgoing[1]]
        self.assertEqual(bind.args[1:4], ("ioppy.record", "amq.topic", "k1"))

    def test_stream_mismatch(self):
        """
        A stream that exists with other settings (406) fails with
        L{StreamMismatch}.
        """
        d = self.session.declare_stream("ioppy.record", [], {"x-max-age": "1h"})
        self.pump.channel(1).channel_close(reply_code=406, reply_text="PRECONDITION_FAILED",
                                           class_id=50, method_id=10)
        error = self.failureResultOf(d, StreamMismatch).value
        self.assertIn("'ioppy.record' exists with other settings: PRECONDITION_FAILED",
                      str(error))

    def test_shared_queue_mismatch(self):
        """
        A participant's queue that exists with other settings (406) fails
        with L{QueueMismatch}; its limits are a thousand messages and
        64 MiB, oldest dropped first.
        """
        d = self.session.declare_shared_queue("ioppy.agent.agent_2", [])
        [declare] = [f.payload for f in self.pump.outgoing[1]]
        self.assertEqual(declare.args[7], {"x-max-length": 1000, "x-max-length-bytes": 64 << 20,
                                           "x-overflow": "drop-head"})
        self.pump.channel(1).channel_close(reply_code=406, reply_text="PRECONDITION_FAILED",
                                           class_id=50, method_id=10)
        error = self.failureResultOf(d, QueueMismatch).value
        self.assertIn("'ioppy.agent.agent_2' exists with other settings", str(error))

    def test_cancel(self):
        """
        Cancelling a consumer sends C{basic.cancel}; what the broker sends it
        before its C{cancel-ok} still reaches the handler, nothing after; a
        new consumer never gets the tag of an old one.
        """
        got = []
        d = self.session.consume_stream("ioppy.record", got.append, "last", 1)
        one = self.pump.channel(1)
        one.basic_qos_ok()
        one.basic_consume_ok(consumer_tag="ioppy-1")
        self.successResultOf(d)
        self.pump.outgoing.clear()
        cancelled = self.session.cancel("ioppy-1")
        [cancel] = [f.payload for f in self.pump.outgoing[1]]
        self.assertEqual(cancel.method.name, "cancel")
        self.pump.send(delivery_bytes(self.client, b"\x45", key="fromAgent.a.ip.tun.packet.raw"))
        self.assertEqual(len(got), 1)
        one.basic_cancel_ok(consumer_tag="ioppy-1")
        self.successResultOf(cancelled)
        self.pump.send(delivery_bytes(self.client, b"\x45", key="fromAgent.a.ip.tun.packet.raw"))
        self.assertEqual(len(got), 1)
        self.pump.outgoing.clear()
        self.session.consume_stream("ioppy.record", got.append, "last", 1)
        one.basic_qos_ok()
        [consume] = [f.payload for f in self.pump.outgoing[1] if f.payload.method.name == "consume"]
        self.assertEqual(consume.args[2], "ioppy-2")

    def test_consume_stream(self):
        """
        Reading a stream sets the prefetch, consumes with acknowledgements
        from a timestamp, hands each whole delivery to the handler, and
        acknowledges as told.
        """
        got = []
        d = self.session.consume_stream("ioppy.record", got.append, framing.Timestamp(99), 50)
        one = self.pump.channel(1)
        one.basic_qos_ok()
        one.basic_consume_ok(consumer_tag="ioppy-1")
        self.assertEqual(self.successResultOf(d), "ioppy-1")
        [qos] = [f.payload for f in self.pump.outgoing[1]]
        self.assertEqual(qos.args[1], 50)
        [consume] = self.pump.undecoded
        payload = consume[7:-1]
        self.assertEqual(struct.unpack_from("!HH", payload), (60, 20))
        self.assertEqual(payload[6:27], b"\x0cioppy.record\x07ioppy-1")
        self.assertEqual(payload[27], 0)  # no-ack off: acknowledged
        self.assertEqual(framing.decode_table(payload[32:]),
                         {"x-stream-offset": framing.Timestamp(99)})
        self.pump.send(delivery_bytes(self.client, b"\x45", key="fromAgent.a.ip.tun.packet.raw"))
        [delivery] = got
        self.assertEqual((delivery.body, delivery.routing_key),
                         (b"\x45", "fromAgent.a.ip.tun.packet.raw"))
        self.session.ack(delivery.delivery_tag)
        self.assertTrue(self.pump.written.endswith(
            framing.pack_basic_ack(1, delivery.delivery_tag, True)))

    def test_no_stream(self):
        """
        A stream that does not exist (404) fails with L{NotFound}.
        """
        d = self.session.consume_stream("ioppy.record", list.append, "first", 10)
        one = self.pump.channel(1)
        one.basic_qos_ok()
        one.channel_close(reply_code=404, reply_text="NOT_FOUND - no queue", class_id=60,
                          method_id=20)
        self.assertIn("no stream 'ioppy.record'",
                      str(self.failureResultOf(d, NotFound).value))
        self.assertEqual(self.session.client.consumers, {})

    def test_publish_to_queue(self):
        """
        A marker goes straight to a queue, through the default exchange.
        """
        self.assertTrue(self.session.publish_to_queue("ioppy.record", b"m", "x/y"))
        method, header, body = [f.payload for f in self.pump.outgoing[1]]
        self.assertEqual(method.args[1:3], ("", "ioppy.record"))
        self.assertEqual(as_bytes(body.content), b"m")
