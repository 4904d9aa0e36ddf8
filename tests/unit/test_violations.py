"""
A broker that breaks the protocol, as the protocol sees it: each violation
closes the connection with its reply code and a logged reason, nothing
reaches txamqp that would crash it, and the orderly stop still ends.
"""

from twisted.logger import LogLevel, capturedLogs, formatEvent
from txamqp.client import Closed

from ioppy_agent.bus.protocol import HANG_UP_WAIT
from ioppy_agent.bus.login import open_session
from ioppy_agent.model.actions import DropReason

from . import frames as f
from .bus_helpers import URL, ProtocolTestCase, broker_login, method_names
from .test_protocol import SessionTestCase


class ViolationTestCase(SessionTestCase):
    """
    A session consuming, and a way to break the protocol at it.
    """

    def setUp(self):
        SessionTestCase.setUp(self)
        self.got = self._consume()
        self.pump.outgoing.clear()

    def violate(self, data, code, says):
        """
        Send C{data}; the client must log the violation, and close the
        connection with C{code}.

        @return: The C{connection.close} the client sent.
        """
        with capturedLogs() as events:
            self.pump.send(data)
        errors = [e for e in events if e["log_level"] == LogLevel.error]
        self.assertEqual(len(errors), 1, [formatEvent(e) for e in events])
        self.assertIn("the broker broke the AMQP protocol: it sent " + says,
                      formatEvent(errors[0]))
        self.assertFalse([e for e in events if "log_failure" in e])
        [close] = [fr.payload for fr in self.pump.outgoing[0]]
        self.assertEqual((close.method.name, close.args[0]), ("close", code))
        self.assertIn(says, close.args[1])
        self.assertTrue(self.client.lost_reason.startswith("protocol violation: "))
        self.assertIs(self.session.refusal(), DropReason.NOT_CONNECTED)
        return close


class HangUpTests(ViolationTestCase):
    """
    What follows a violation.
    """

    def test_dropped_without_answer(self):
        """
        If the broker does not answer the close, the connection is dropped
        after L{HANG_UP_WAIT} seconds.
        """
        self.violate(f.method(1, 60, 99), 540, "method 60.99")
        self.clock.advance(HANG_UP_WAIT - 0.1)
        self.assertTrue(self.pump.connected)
        self.clock.advance(0.1)
        self.assertTrue(self.pump.aborted)

    def test_closed_on_close_ok(self):
        """
        The broker's close-ok ends the connection cleanly; what it sent in
        between is skipped, deliveries included.
        """
        self.violate(f.method(1, 60, 99), 540, "method 60.99")
        self.pump.send(f.message(b"late") + f.method(0, 10, 51))
        self.assertEqual(self.got, [])
        self.assertFalse(self.pump.connected)
        self.assertFalse(self.pump.aborted)

    def test_garbage_after_framing_error(self):
        """
        After a framing error the stream cannot be trusted: more bytes drop
        the connection at once.
        """
        self.violate(b"\x03\x00\x01\xff\xff\xff\xf0", 501, "a frame of 4294967288 bytes")
        with capturedLogs() as events:
            self.pump.send(b"x" * 1000)
        self.assertTrue(self.pump.aborted)
        self.assertEqual([e for e in events if e["log_level"] == LogLevel.error], [])
        self.assertLess(self.client.reader.buffered, 2000)


class AttackTests(ViolationTestCase):
    """
    Each kind of violation, with its reply code.
    """

    def test_huge_frame(self):
        """
        A frame announcing more than frame_max: 501, before its payload.
        """
        self.violate(b"\x03\x00\x01\x7f\xff\xff\xff", 501,
                     "a frame of 2147483655 bytes, more than the negotiated frame_max")

    def test_stray_header(self):
        """
        A content header with no delivery before it: 505, and it never
        reaches txamqp's reply queue.
        """
        self.violate(f.header(size=4), 505, "a content header on channel 1 with no "
                                             "message before it")
        self.assertEqual(self.session.channel.responses.pending, [])

    def test_stray_reply(self):
        """
        A reply nothing asked for: 505.
        """
        self.violate(f.method(1, 50, 11, f.shortstr("q") + b"\0" * 8), 505,
                     "queue.declare-ok on channel 1, which answers no request")

    def test_unknown_frame_type(self):
        """
        A frame type AMQP does not have: 501, with no traceback.
        """
        self.violate(f.frame(4, 1, b"oob"), 501, "a frame of unknown type 4")

    def test_channel_never_opened(self):
        """
        A frame on a channel never opened: 504.
        """
        self.violate(f.method(5, 20, 11, b"\0\0\0\0"), 504,
                     "a frame of type 1 on channel 5, which was never opened")

    def test_undecodable_method(self):
        """
        A known method whose fields do not decode: 502.
        """
        self.violate(f.method(0, 10, 60), 502, "connection.blocked that cannot be decoded")

    def test_second_start(self):
        """
        connection.start once the connection is up: 503.
        """
        self.violate(f.method(0, 10, 10, b"\0\x09" + b"\0" * 12), 503,
                     "connection.start, which this client does not expect now")

    def test_body_longer_than_announced(self):
        """
        Body frames beyond the announced size: 501.
        """
        self.violate(f.deliver() + f.header(size=1) + f.body(data=b"xy"), 501,
                     "body frames carrying more than the 1 bytes")
        self.assertEqual(self.got, [])


class DuringLoginTests(ProtocolTestCase):
    """
    Violations before the session is up make the login fail, so the
    connector tries again.
    """

    def test_frame_max_too_small(self):
        """
        connection.tune with a frame_max below 4096 is refused (502), and the
        login fails without being taken for bad credentials.
        """
        d = open_session(self.client, URL, "amq.topic")
        with capturedLogs() as events:
            broker_login(self.pump, open_ok=False, frame_max=8)
        self.assertIn("connection.tune with frame_max 8, below the minimum 4096",
                      formatEvent(events[0]))
        self.assertEqual(self.pump.outgoing[0][-1].payload.args[0], 502)
        self.clock.advance(HANG_UP_WAIT)
        self.assertEqual(self.failureResultOf(d, Closed).type, Closed)


class StopTests(ViolationTestCase):
    """
    The orderly stop never takes a stray frame for its reply.
    """

    def test_stray_reply_during_stop(self):
        """
        A broker that answers basic.cancel with another method breaks the
        protocol: the stop ends by dropping the connection, logged, and no
        error escapes.
        """
        d = self.session.close((), timeout=1.0)
        self.assertEqual(method_names(self.pump, 1), ["basic.cancel"])
        with capturedLogs() as events:
            self.pump.send(f.method(1, 50, 11, f.shortstr("q") + b"\0" * 8))
            self.clock.advance(HANG_UP_WAIT)
        self.successResultOf(d)
        self.assertFalse(self.pump.connected)
        texts = [formatEvent(e) for e in events]
        self.assertTrue(any("queue.declare-ok on channel 1" in t for t in texts), texts)
        self.assertTrue(any("did not finish the close handshake" in t for t in texts), texts)

    def test_stray_header_during_stop(self):
        """
        A stray content header while the stop waits for cancel-ok is refused
        the same way, instead of being read as the reply.
        """
        d = self.session.close((), timeout=1.0)
        with capturedLogs():
            self.pump.send(f.header(size=4))
            self.clock.advance(HANG_UP_WAIT)
        self.successResultOf(d)
        self.assertIsInstance(self.client.lost_reason, str)

    def test_connection_lost_during_stop(self):
        """
        A connection lost while the stop waits ends the stop.
        """
        d = self.session.close((), timeout=1.0)
        with capturedLogs():
            self.pump.abortConnection()
        self.successResultOf(d)
