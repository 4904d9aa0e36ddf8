"""
Tests for L{ioppy_agent.bus.connector}: the reconnecting L{BusConnector}
and its states.
"""

from twisted.internet import defer
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase
from txamqp.connection import Frame, Heartbeat

from ioppy_agent.bus import AccessRefused, BusConfig, BusConnector, QueueLocked, State
from ioppy_agent.bus.connector import TRANSITIONS
from ioppy_agent.testing import BusPump
from ioppy_agent.bus.url import parse_amqp_url

from .bus_helpers import URL, broker_handshake, method_names


class PumpEndpoint:
    """
    A client endpoint whose connections are L{BusPump}s.
    """

    def __init__(self):
        self.pumps = []

    def connect(self, factory):
        protocol = factory.buildProtocol(None)
        pump = BusPump()
        pump.connect(protocol)
        self.pumps.append(pump)
        return defer.succeed(protocol)


class PerHostEndpoints:
    """
    Endpoints that refuse, except for the hosts given, which get a
    L{BusPump}.
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
                    return defer.fail(ConnectionRefusedError())
                return PumpEndpoint.connect(outer, factory)

        return One()


class RefusingEndpoint:
    """
    A client endpoint whose every connection is refused.
    """

    attempts = 0

    def connect(self, factory):
        self.attempts += 1
        return defer.fail(ConnectionRefusedError())


class StateTests(SynchronousTestCase):
    """
    The states and their transitions.
    """

    def test_every_state_can_stop(self):
        """
        From every state, C{stop} leads to L{State.STOPPING}, and from
        there the finished close to L{State.STOPPED}; a stopped connector
        stays stopped.
        """
        for state in State:
            if state not in (State.STOPPED,):
                self.assertIs(TRANSITIONS[(state, "stop")], State.STOPPING)
        self.assertIs(TRANSITIONS[(State.STOPPING, "stopped")], State.STOPPED)
        self.assertIs(TRANSITIONS[(State.STOPPED, "stop")], State.STOPPED)

    def test_values_are_status_words(self):
        """
        The states' values are the words the status file shows.
        """
        self.assertEqual([s.value for s in State], ["stopped", "connecting", "connected",
                                                    "waiting to reconnect", "failed",
                                                    "stopping"])


class ConnectorTests(SynchronousTestCase):
    """
    L{BusConnector} keeps a session open.
    """

    def setUp(self):
        self.clock = Clock()
        self.endpoint = PumpEndpoint()
        self.sessions = []
        self.fatal = []
        self.setup_result = None
        self.connector = self.make(heartbeat=0)

    def make(self, endpoint=None, urls=(URL,), **kwargs):
        config = BusConfig(urls=tuple(urls), heartbeat=kwargs.pop("heartbeat", 0))
        return BusConnector(self.clock, config, self._setup, self.fatal.append,
                            endpoint=endpoint or self.endpoint, **kwargs)

    def _setup(self, session):
        self.sessions.append(session)
        return self.setup_result

    def test_setup_runs_on_connect(self):
        """
        After login the set-up callable gets the session, which becomes the
        connector's current one, and the connector is connected.
        """
        self.assertIs(self.connector.state, State.STOPPED)
        self.connector.start()
        self.assertIs(self.connector.state, State.CONNECTING)
        broker_handshake(self.endpoint.pumps[0])
        self.assertEqual(len(self.sessions), 1)
        self.assertIs(self.connector.session, self.sessions[0])
        self.assertIs(self.connector.state, State.CONNECTED)
        self.assertTrue(self.sessions[0].client.ready)

    def test_deliveries_per_read(self):
        """
        Each connection's protocol takes the connector's deliveries per read.
        """
        connector = self.make(deliveries_per_read=7)
        connector.start()
        self.assertEqual(self.endpoint.pumps[0].client.max_deliveries_per_read, 7)

    def test_reconnects_and_sets_up_again(self):
        """
        When the connection drops, the session is cleared, the loss is logged
        with its reason, and after the back-off a new connection is set up.
        """
        self.connector.start()
        broker_handshake(self.endpoint.pumps[0])
        with capturedLogs() as events:
            self.endpoint.pumps[0].abortConnection()
        self.assertIsNone(self.connector.session)
        self.assertIs(self.connector.state, State.WAITING)
        self.assertIn("lost the connection to amqp://alice:****@broker:5672/interop (the "
                      "connection closed)", formatEvent(events[-1]))
        self.clock.advance(31)
        broker_handshake(self.endpoint.pumps[1])
        self.assertEqual(len(self.sessions), 2)
        self.assertIs(self.connector.session, self.sessions[1])

    def test_fatal_stops(self):
        """
        A L{FatalBusError} from set-up reaches C{on_fatal}, the connection is
        dropped and no retry follows.
        """
        self.setup_result = defer.fail(QueueLocked("duplicate"))
        self.connector.start()
        broker_handshake(self.endpoint.pumps[0])
        self.assertEqual([str(e) for e in self.fatal], ["duplicate"])
        self.assertFalse(self.endpoint.pumps[0].connected)
        self.assertIs(self.connector.state, State.FAILED)
        self.clock.advance(60)
        self.assertEqual(len(self.endpoint.pumps), 1)

    def test_permission_refused_is_fatal(self):
        """
        A channel the broker closes with 403 (a publish or bind the user's
        permissions do not allow) ends the connector with an
        L{AccessRefused} that names the user, the vhost and the broker's
        reason; no retry follows.
        """
        self.connector.start()
        pump = self.endpoint.pumps[0]
        broker_handshake(pump)
        reason = ("ACCESS_REFUSED - write access to topic 'fromAgent.agent_2.ip.tun.started' "
                  "in exchange 'amq.topic' in vhost 'interop' refused for user 'alice'")
        with capturedLogs():
            pump.channel(1).channel_close(reply_code=403, reply_text=reason, class_id=60,
                                          method_id=40)
            pump.channel(0).connection_close_ok()
        self.assertEqual([type(e) for e in self.fatal], [AccessRefused])
        self.assertEqual(str(self.fatal[0]), "the broker refused user 'alice' on vhost "
                         f"'interop' a permission: {reason}")
        self.assertNotIn("hunter2", str(self.fatal[0]))
        self.assertIs(self.connector.state, State.FAILED)
        self.assertFalse(pump.connected)
        self.clock.advance(60)
        self.assertEqual(len(self.endpoint.pumps), 1)

    def test_permission_refused_during_setup(self):
        """
        A bind refused with 403 while the session is set up is fatal too.
        """
        self.setup_result = None

        def setup(session):
            return session.bind("ioppy.agent.agent_1", "fromAgent.*.ip.tun.packet.to.agent_2")

        connector = BusConnector(self.clock, BusConfig(urls=(URL,), heartbeat=0), setup,
                                 self.fatal.append, endpoint=self.endpoint)
        connector.start()
        pump = self.endpoint.pumps[0]
        broker_handshake(pump)
        with capturedLogs():
            pump.channel(1).channel_close(reply_code=403, reply_text="ACCESS_REFUSED - read "
                                          "access to topic refused", class_id=50, method_id=20)
            pump.channel(0).connection_close_ok()
        self.assertEqual([type(e) for e in self.fatal], [AccessRefused])
        self.assertIn("read access to topic refused", str(self.fatal[0]))
        self.assertIs(connector.state, State.FAILED)
        self.clock.advance(60)
        self.assertEqual(len(self.endpoint.pumps), 1)

    def test_other_channel_close_reconnects(self):
        """
        A channel closed for any other reason (a deleted exchange, 404) is
        not fatal: the connector connects again.
        """
        self.connector.start()
        pump = self.endpoint.pumps[0]
        broker_handshake(pump)
        with capturedLogs():
            pump.channel(1).channel_close(reply_code=404, reply_text="NOT_FOUND - no exchange",
                                          class_id=60, method_id=40)
            pump.channel(0).connection_close_ok()
            self.clock.advance(31)
        self.assertEqual(self.fatal, [])
        self.assertEqual(len(self.endpoint.pumps), 2)

    def test_silent_broker_dropped(self):
        """
        With heartbeats, a broker that sends nothing for two intervals is
        taken for dead: the connection is aborted, the log says why, and it
        is made again.
        """
        connector = self.make(heartbeat=5, retry_policy=lambda failures: 1.0)
        connector.start()
        pump = self.endpoint.pumps[0]
        broker_handshake(pump)
        self.clock.advance(9.9)
        self.assertTrue(pump.connected)
        with capturedLogs() as events:
            self.clock.advance(0.1)
        self.assertTrue(pump.aborted)
        self.assertIsNone(connector.session)
        self.assertIn("nothing heard from the broker for 10.0 s (heartbeat 5 s)",
                      formatEvent(events[-1]))
        self.clock.advance(1.0)
        self.assertEqual(len(self.endpoint.pumps), 2)

    def test_heartbeats_only_when_idle(self):
        """
        A heartbeat frame goes out only when nothing else was sent for half
        an interval.
        """
        connector = self.make(heartbeat=4)
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
        self.assertIs(self.connector.state, State.STOPPING)
        pump.channel(1).channel_close_ok()
        pump.channel(0).connection_close_ok()
        self.successResultOf(d)
        self.assertEqual(method_names(pump, 1) + method_names(pump, 0),
                         ["channel.close", "connection.close"])
        self.assertIs(self.connector.state, State.STOPPED)
        self.clock.advance(60)
        self.assertEqual(len(self.endpoint.pumps), 1)

    def test_stop_while_waiting(self):
        """
        C{stop} during the back-off cancels the retry.
        """
        refused = RefusingEndpoint()
        connector = self.make(endpoint=refused, retry_policy=lambda failures: 2.0)
        with capturedLogs():
            connector.start()
        self.assertIs(connector.state, State.WAITING)
        self.successResultOf(connector.stop())
        self.clock.advance(10)
        self.assertEqual((refused.attempts, connector.state), (1, State.STOPPED))

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
        connector = self.make(endpoint=refused, retry_policy=policy)
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
        With several URLs, each failure moves on to the next broker, round the
        list, and the session is set up on whichever answers.
        """
        urls = [parse_amqp_url(f"amqp://u:p@node{i}/v") for i in (1, 2, 3)]
        endpoints = PerHostEndpoints({"node3"})
        connector = self.make(urls=urls, retry_policy=lambda failures: 1.0)
        connector._endpoints = [endpoints.for_host(u.host) for u in urls]
        with capturedLogs():
            connector.start()
            self.clock.advance(1.0)
            self.clock.advance(1.0)
        self.assertEqual(endpoints.tried, ["node1", "node2", "node3"])
        broker_handshake(endpoints.pumps[0])
        self.assertIs(connector.url, urls[2])
        self.assertEqual(len(self.sessions), 1)
        with capturedLogs():
            endpoints.pumps[0].abortConnection()
            self.clock.advance(1.0)
        self.assertEqual(endpoints.tried[-1], "node1")
