"""
Tests for L{ioppy_agent.model.grants}, and for what the router and the agent do
with them and with the C{user_id} of messages in a session made by
C{ioppy-session}: only the owner announces, claims and steers.
"""

import dataclasses
import ipaddress
import json

from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from ioppy_agent.model import control, keys, wire
from ioppy_agent.model.actions import Drop, WriteToTun
from ioppy_agent.model.addressing import default_addresses
from ioppy_agent.agent import AgentService, TunInterface
from ioppy_agent.agent.core import AgentCore
from ioppy_agent.bus import BusConfig, QueueHeld
from ioppy_agent.model.grants import BadGrants, Claims, Grants, default_grant
from ioppy_agent.router import PacketRouter, RouterConfig, RouterService
from ioppy_agent.model.routes import DIRECT, Peer, Routes
from ioppy_agent.testing import RecordingConnector, RecordingSession
from ioppy_agent.bus.url import parse_amqp_url

from .ip import ipv4, ipv6
from .test_agent import QUEUE, AgentTestCase, FakeProcess
from .test_router import started

net = ipaddress.ip_network


class GrantsTests(SynchronousTestCase):
    """
    What each participant may own.
    """

    def test_defaults(self):
        """
        agent_N gets 10.2.0.N, bbbb::N and fe80::N; a name with no number
        nothing.
        """
        self.assertEqual(default_grant("agent_3"),
                         (net("10.2.0.3/32"), net("bbbb::3/128"), net("fe80::3/128")))
        self.assertEqual(default_grant("agent_TT"), ())

    def test_extra_and_round_trip(self):
        """
        More prefixes can be granted; the file reads back the same.
        """
        grants = Grants.default(["agent_1", "agent_2"], {"agent_1": ("2001:db8:1::/48",)})
        self.assertTrue(grants.allows("agent_1", net("2001:db8:1:5::/64")))
        self.assertFalse(grants.allows("agent_2", net("2001:db8:1:5::/64")))
        self.assertFalse(grants.allows("agent_1", net("10.2.0.0/24")))
        self.assertEqual(Grants.loads(grants.dumps()).networks, grants.networks)

    def test_refused(self):
        """
        Overlapping grants, a default route, a grant for no participant and
        files that are not grants are refused, saying why.
        """
        cases = [
            (lambda: Grants.default(["agent_1", "agent_2"], {"agent_1": ("10.2.0.0/24",)}),
             "overlaps agent_1's 10.2.0.0/24"),
            (lambda: Grants.default(["agent_1"], {"agent_1": ("::/0",)}), "default route"),
            (lambda: Grants.default(["agent_1"], {"agent_9": ("10.9.0.0/16",)}),
             "not a participant"),
            (lambda: Grants.default(["agent_1"], {"agent_1": ("nonsense",)}), "nonsense"),
            (lambda: Grants.loads("{"), "not JSON"),
            (lambda: Grants.loads('{"participants": {}}'), "not an ioppy grants file"),
            (lambda: Grants.loads('{"ioppy_grants": 1, "participants": {"a.b": []}}'),
             "not allowed"),
            (lambda: Grants.loads('{"ioppy_grants": 1, "participants": {"a": "10.0.0.1"}}'),
             "not a list"),
        ]
        for make, said in cases:
            with self.assertRaises((BadGrants, ValueError)) as caught:
                make()
            self.assertIn(said, str(caught.exception))


class ClaimsTests(SynchronousTestCase):
    """
    First come, first served, within the grants.
    """

    def test_first_claim_wins(self):
        """
        Without grants, a claim that overlaps another agent's holding, and a
        default route, are refused; the holding is free once its owner leaves.
        """
        claims = Claims()
        self.assertEqual(claims.admit("agent_2", [net("10.2.0.2/32")]), ([net("10.2.0.2/32")], []))
        admitted, refused = claims.admit("agent_4", [net("10.2.0.4/32"), net("10.2.0.0/24"),
                                                     net("0.0.0.0/0")])
        self.assertEqual(admitted, [net("10.2.0.4/32")])
        self.assertEqual(refused, [(net("10.2.0.0/24"), "agent_2 holds 10.2.0.2/32"),
                                   (net("0.0.0.0/0"), "a default route")])
        claims.release("agent_2")
        self.assertEqual(claims.admit("agent_4", [net("10.2.0.2/32")])[1], [])

    def test_within_grants(self):
        """
        With grants, a claim outside the claimant's grant is refused.
        """
        claims = Claims(Grants.default(["agent_1", "agent_2"]))
        admitted, refused = claims.admit("agent_1", [net("10.2.0.1/32"), net("10.2.0.2/32")])
        self.assertEqual(admitted, [net("10.2.0.1/32")])
        self.assertEqual(refused, [(net("10.2.0.2/32"), "outside agent_1's grant")])


class RouterClaimTests(SynchronousTestCase):
    """
    The router hands out only admitted claims, and takes the messages that
    do not name their sender only from who may send them.
    """

    def setUp(self):
        self.router = PacketRouter(router_id="r1")

    def route(self, *args):
        with capturedLogs() as events:
            action = self.router.route(*args)
        self.logged = [formatEvent(e) for e in events]
        return action

    def owner(self, address):
        address = ipaddress.ip_address(address)
        return self.router.steering.directory.owner(address.version, address.packed)

    def test_conflicting_claim_refused(self):
        """
        agent_4 announcing agent_2's address (and a default route) keeps
        neither: agent_2 stays the owner, and the refusal is logged.
        """
        self.route(*started("agent_2"), None)
        self.route(*started("agent_4", ioppy_routes=["10.2.0.2/32", "::/0"]), None)
        self.assertEqual(self.owner("10.2.0.2"), "agent_2")
        self.assertEqual(self.owner("bbbb::77"), None)
        self.assertIn("refused agent_4's claim of 10.2.0.2/32: agent_2 holds 10.2.0.2/32",
                      self.logged)
        self.assertIn("refused agent_4's claim of ::/0: a default route", self.logged)

    def test_grants(self):
        """
        With grants, a claim outside the grant is refused, and a name the
        grants do not hold is no agent.
        """
        self.router = PacketRouter(router_id="r1", grants=Grants.default(["agent_1"]))
        self.route(*started("agent_1", ioppy_routes=["2001:db8::/32"]), None)
        self.assertEqual(self.owner("10.2.0.1"), "agent_1")
        self.assertEqual(self.owner("2001:db8::1"), None)
        self.assertEqual(self.route(*started("agent_7"), None).reason, "not an agent")
        self.assertEqual(self.router.agents, ["agent_1"])

    def test_shutdown_only_from_its_sender(self):
        """
        In a session, a shutdown naming agent_2 counts only with agent_2's
        (or the router's) user_id; agent_1's, or none, is dropped.
        """
        self.router = PacketRouter(router_id="r1", session="s42")
        for name in ("agent_1", "agent_2"):
            self.route(*started(name), None)
        body = json.dumps({"component": "agent_2"}).encode()
        for user_id in ("s42.agent_1", None, "s43.agent_2", "s42.agent_2.x"):
            action = self.route(keys.COMPONENT_SHUTDOWN, body, None, user_id)
            self.assertEqual(action.reason, "not allowed", user_id)
            self.assertEqual(self.router.agents, ["agent_1", "agent_2"])
        self.assertIsNone(self.route(keys.COMPONENT_SHUTDOWN, body, None, "s42.agent_2"))
        self.assertEqual(self.router.agents, ["agent_1"])

    def test_lossy_link_only_from_the_router(self):
        """
        In a session only the router's user may start a lossy link.
        """
        self.router = PacketRouter(router_id="r1", session="s42")
        body = json.dumps({"number_of_packets_to_drop": 1000000}).encode()
        action = self.route(keys.LOSSY_LINK_START, body, None, "s42.agent_1")
        self.assertEqual(action.reason, "not allowed")
        self.assertEqual(self.router.to_drop, 0)
        self.assertIsNone(self.route(keys.LOSSY_LINK_START, body, None, "s42.router"))
        self.assertEqual(self.router.to_drop, 1000000)

    def test_outside_a_session_anyone(self):
        """
        On one shared user (no session), a shutdown needs no user_id.
        """
        self.route(*started("agent_2"), None)
        self.route(keys.COMPONENT_SHUTDOWN, json.dumps({"component": "agent_2"}).encode(),
                   None)
        self.assertEqual(self.router.agents, [])


class AgentSourceTests(SynchronousTestCase):
    """
    An agent checks the source of every packet it writes, on every key.
    """

    def setUp(self):
        self.core = AgentCore("agent_1", default_addresses("agent_1"), None, session="s42")

    def deliver(self, packet, user_id=None):
        return self.core.from_bus(keys.packet_to("agent_1"), packet, wire.RAW, user_id)

    def test_from_the_router(self):
        """
        From the router's key: not from this agent's own address; with
        routes, only from a peer's (or IPv6 link-local) address.
        """
        self.assertEqual(self.deliver(ipv4("10.2.0.9", "10.2.0.1")),
                         WriteToTun(ipv4("10.2.0.9", "10.2.0.1")))
        self.assertEqual(self.deliver(ipv4("10.2.0.1", "10.2.0.1")).reason, "source is ours")
        routes = Routes("r1", 1, DIRECT, {"agent_2": Peer(("10.2.0.2/32",), DIRECT)}, DIRECT,
                        {"agent_2": ("10.2.0.2/32", "bbbb::2/128")}, ())
        self.core.from_bus(keys.routes("agent_1"),
                           control.routes_message("agent_1", routes).body, None)
        self.assertEqual(type(self.deliver(ipv4("10.2.0.2", "10.2.0.1"))), WriteToTun)
        self.assertEqual(self.deliver(ipv4("10.2.0.3", "10.2.0.1")).reason,
                         "source of no peer")
        self.assertEqual(type(self.deliver(ipv6("fe80::99", "fe80::1"))), WriteToTun)

    def test_router_announcement_only_from_the_router(self):
        """
        In a session, the router's component.ready makes the agent announce
        itself again only with the router's user_id.
        """
        body = json.dumps({"component": keys.ROUTER_NAME}).encode()
        forged = self.core.from_bus(keys.COMPONENT_READY, body, None, "s42.agent_2")
        self.assertEqual(type(forged), Drop)
        self.assertEqual(forged.reason, "not allowed")
        answer = self.core.from_bus(keys.COMPONENT_READY, body, None, "s42.router")
        self.assertEqual(answer.messages[0].routing_key, keys.tun_started("agent_1"))


class SessionAgentTests(AgentTestCase):
    """
    With a session's credentials the agent declares and binds nothing: it
    consumes the queue the router made, as its only consumer.
    """

    def setUp(self):
        AgentTestCase.setUp(self)
        self.config = dataclasses.replace(self.config, bus=BusConfig(
            urls=(parse_amqp_url("amqp://s42.agent_1:secret@h/s42"),)))
        self.agent = AgentService(
            self.reactor, self.config, self.process,
            interface=TunInterface(self.config, open_tun=self._open_tun, links=self.links),
            make_connector=RecordingConnector)
        self.connector = self.agent.connector

    def test_consumes_exclusively(self):
        device, session = self.connect()
        self.assertEqual(session.queues, {})
        self.assertEqual(session.exclusive, {QUEUE: True})
        self.assertIn(QUEUE, session.consumers)

    def test_waits_for_its_queue(self):
        """
        Until the router made its queue, the agent tries again.
        """
        self.start()
        session = RecordingSession()
        session.missing.add(QUEUE)
        with capturedLogs():
            failure = self.failureResultOf(self.connector.connect(session))
        self.assertIsInstance(failure.value, QueueHeld)


class SessionRouterTests(SynchronousTestCase):
    """
    A session's router declares and binds each participant's queue.
    """

    def test_declares_participants_queues(self):
        bus = BusConfig(urls=(parse_amqp_url("amqp://s42.router:p@h/s42"),))
        config = RouterConfig(bus=bus, grants=Grants.default(["agent_1", "agent_2"]))
        service = RouterService(Clock(), config, FakeProcess(), make_connector=RecordingConnector)
        service.privilegedStartService()
        service.startService()
        session = RecordingSession()
        with capturedLogs():
            service.connector.connect(session)
        self.assertEqual(sorted(session.shared), ["ioppy.agent.agent_1", "ioppy.agent.agent_2"])
        self.assertEqual(session.shared["ioppy.agent.agent_2"],
                         list(keys.agent_bindings("agent_2")))
