"""
Tests for L{ioppy_agent.router}: the core, its policies, topology files and
the service.
"""

import json
import os

from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from ioppy_agent import wire
from ioppy_agent.actions import Drop, Forward
from ioppy_agent.bus import BusConfig
from ioppy_agent.router import (BINDINGS, ROUTER_QUEUE, BadTopology, FanOut, FixedTopology,
                                IRoutingPolicy, PacketRouter, RouterConfig, RouterService,
                                Topology, parse_topology, read_topology)
from ioppy_agent.testing import RecordingConnector, RecordingSession
from ioppy_agent.url import parse_amqp_url

from ..helpers import fixture
from .test_agent import FakeProcess

BODY = fixture("fromAgent.agent_1.ip.tun.packet.raw")["body"].encode()
BUS = BusConfig(urls=(parse_amqp_url("amqp://u:p@h/v"),))


def ready(name):
    """
    @return: The key and body of a component.ready for C{name}.
    """
    return wire.COMPONENT_READY, json.dumps({"component": name}).encode()


class RouteTests(SynchronousTestCase):
    """
    L{PacketRouter} without a topology: every known agent gets every other
    agent's packets.
    """

    def setUp(self):
        self.router = PacketRouter()

    def send(self, sender, body=BODY, content_type="application/json"):
        return self.router.route(wire.packet_from(sender), body, content_type)

    def route(self, *args):
        with capturedLogs():
            return self.router.route(*args)

    def test_learns_from_started(self):
        """
        tun.started makes an agent known.
        """
        with capturedLogs() as events:
            self.router.route("fromAgent.agent_2.ip.tun.started", b"{}", None)
        self.assertEqual(self.router.agents, ["agent_2"])
        self.assertEqual(formatEvent(events[0]), "agent agent_2 joined; agents: agent_2")

    def test_learns_from_ready(self):
        """
        component.ready makes a component known; the router's own name and
        invalid names are ignored.
        """
        for name in ("agent_3", "packet_router", "a.b"):
            self.route(*ready(name), None)
        self.assertEqual(self.router.agents, ["agent_3"])

    def test_learns_from_packet(self):
        """
        A first packet makes its sender known.
        """
        with capturedLogs():
            self.send("agent_1")
        self.assertEqual(self.router.agents, ["agent_1"])

    def test_forgets_on_shutdown(self):
        """
        component.shutdown forgets the agent.
        """
        with capturedLogs() as events:
            self.send("agent_1")
            self.router.route(wire.COMPONENT_SHUTDOWN,
                              fixture("testingtool.component.shutdown")["body"].encode(), None)
        self.assertEqual(self.router.agents, [])
        self.assertEqual(formatEvent(events[-1]), "agent agent_1 left; agents: none")

    def test_forwards_to_others_unchanged(self):
        """
        A packet goes to every other known agent, with the body exactly as it
        came and its content type.
        """
        for name in ("agent_2", "agent_3"):
            self.route(*ready(name), None)
        action = self.route(wire.packet_from("agent_1"), BODY, "application/json")
        self.assertEqual(action, Forward((
            wire.Message("toAgent.agent_2.ip.tun.packet.raw", BODY, "application/json"),
            wire.Message("toAgent.agent_3.ip.tun.packet.raw", BODY, "application/json")),
            len(BODY), None))
        self.assertIs(action.messages[0].body, BODY)

    def test_raw_forwarded_unchanged(self):
        """
        A raw packet is forwarded as it came, with its content type.
        """
        self.route(*ready("agent_2"), None)
        out = self.route(wire.packet_from("agent_1"), b"\x45raw", "application/octet-stream")
        self.assertEqual(out.messages, (wire.Message("toAgent.agent_2.ip.tun.packet.raw",
                                                     b"\x45raw", "application/octet-stream"),))

    def test_alone(self):
        """
        With no other agent the packet goes nowhere.
        """
        self.assertEqual(self.route(wire.packet_from("agent_1"), BODY, wire.JSON).messages, ())

    def test_missing_content_type(self):
        """
        A packet without a content type is forwarded as JSON.
        """
        self.route(*ready("agent_2"), None)
        action = self.route(wire.packet_from("agent_1"), BODY, None)
        self.assertEqual(action.messages[0].content_type, "application/json")

    def test_lossy_link(self):
        """
        routing.lossy.link.start drops exactly the next N packets.
        """
        self.route(*ready("agent_2"), None)
        with capturedLogs() as events:
            self.router.route(wire.LOSSY_LINK_START,
                              fixture("routing.lossy.link.start")["body"].encode(), None)
        self.assertEqual(formatEvent(events[0]), "lossy link: dropping the next 2 packets")
        results = [self.send("agent_1") for _ in range(4)]
        self.assertEqual(results[:2], [Drop("lossy link"), Drop("lossy link")])
        self.assertEqual([type(r) for r in results[2:]], [Forward, Forward])

    def test_malformed_dropped(self):
        """
        Packet bodies of the wrong shape and malformed control messages are
        counted and dropped; the router keeps routing good ones, warning at
        most once per interval.
        """
        self.route(*ready("agent_2"), None)
        drops = []
        for body, content_type in ((b"junk", wire.JSON), (b'{"x": 1}', wire.JSON),
                                   (b"[1, 2]", wire.JSON), (b"", wire.RAW),
                                   (BODY, "text/plain")):
            drops.append(self.send("agent_1", body, content_type))
        drops.append(self.router.route(wire.LOSSY_LINK_START,
                                       b'{"number_of_packets_to_drop": "x"}', None))
        drops.append(self.router.route(wire.COMPONENT_READY, b"[]", None))
        self.assertEqual({d.reason for d in drops}, {"bad message"})
        self.assertIn("dropped a message on fromAgent.agent_1.ip.tun.packet.raw: body is not",
                      drops[0].detail)
        self.assertEqual(len(self.send("agent_1").messages), 1)
        self.assertEqual(self.router.to_drop, 0)

    def test_packet_not_decoded(self):
        """
        A JSON body of the right shape is forwarded unchanged without being
        decoded: a packet that is wrong inside (here a byte out of range) is
        left to the receiving agent, which decodes it.  Message bytes are
        counted in and out.
        """
        self.route(*ready("agent_2"), None)
        body = b' {"data": [69, 999], "interface_name": "tun0"}\n'
        action = self.route(wire.packet_from("agent_1"), body, wire.JSON)
        self.assertEqual(([m.body for m in action.messages], action.size, action.packet),
                         ([body], len(body), None))

    def test_capture_decodes(self):
        """
        A router that captures packets decodes each one, and drops those that
        do not decode.
        """
        router = PacketRouter(capture=True)
        with capturedLogs():
            router.route(*ready("agent_2"), None)
            self.assertEqual(router.route(wire.packet_from("agent_1"), b'{"data": [69, 999]}',
                                          wire.JSON).reason, "bad message")
            action = router.route(wire.packet_from("agent_1"), BODY, wire.JSON)
        self.assertEqual((len(action.messages), action.packet), (1, wire.decode_packet(BODY)))

    def test_malformed_sender_not_learned(self):
        """
        A malformed packet does not make its sender known.
        """
        self.send("agent_9", b"junk")
        self.assertEqual(self.router.agents, [])


class PolicyTests(SynchronousTestCase):
    """
    The routing policies.
    """

    TOPOLOGY = Topology(frozenset({("agent_1", "agent_2"), ("agent_2", "agent_3")}),
                        frozenset({"agent_TT"}))

    def test_interface(self):
        """
        Both policies provide L{IRoutingPolicy}.
        """
        self.assertTrue(verifyObject(IRoutingPolicy, FanOut()))
        self.assertTrue(verifyObject(IRoutingPolicy, FixedTopology(self.TOPOLOGY)))

    def test_fan_out(self):
        """
        Every known agent gets every other's packets; joining and leaving
        change the peers at once.
        """
        policy = FanOut()
        self.assertEqual([policy.learn(n) for n in ("agent_1", "agent_2", "agent_1")],
                         [True, True, False])
        self.assertEqual(policy.peers_of("agent_1"), ("agent_2",))
        policy.learn("agent_3")
        self.assertEqual(policy.peers_of("agent_1"), ("agent_2", "agent_3"))
        self.assertEqual((policy.forget("agent_2"), policy.forget("agent_2")), (True, False))
        self.assertEqual(policy.peers_of("agent_1"), ("agent_3",))
        self.assertEqual(policy.agents(), ["agent_1", "agent_3"])

    def test_fixed_topology(self):
        """
        The links and observers decide; agents that announce themselves are
        listed but get no route.
        """
        policy = FixedTopology(self.TOPOLOGY)
        policy.learn("agent_4")
        self.assertEqual(policy.peers_of("agent_2"), ("agent_1", "agent_3", "agent_TT"))
        self.assertEqual(policy.peers_of("agent_1"), ("agent_2", "agent_TT"))
        self.assertEqual(policy.peers_of("agent_TT"), ())
        self.assertEqual(policy.peers_of("agent_4"), ("agent_TT",))
        self.assertEqual(policy.agents(), ["agent_4"])


class TopologyTests(SynchronousTestCase):
    """
    Fixed routes from a topology file.
    """

    TEXT = '{"links": [["agent_1", "agent_2"], ["agent_2", "agent_3"]], ' \
           '"observers": ["agent_TT"]}'

    def test_parse(self):
        """
        Links and observers are read.
        """
        self.assertEqual(parse_topology(self.TEXT), Topology(
            frozenset({("agent_1", "agent_2"), ("agent_2", "agent_3")}),
            frozenset({"agent_TT"})))

    def test_routes(self):
        """
        A packet goes to the sender's linked peers and every observer, and
        announcements do not add routes.
        """
        router = PacketRouter(FixedTopology(parse_topology(self.TEXT)))
        with capturedLogs():
            router.route(*ready("agent_4"), None)
            action = router.route(wire.packet_from("agent_2"), BODY, None)
        self.assertEqual([m.routing_key for m in action.messages],
                         ["toAgent.agent_1.ip.tun.packet.raw",
                          "toAgent.agent_3.ip.tun.packet.raw",
                          "toAgent.agent_TT.ip.tun.packet.raw"])

    def test_bad_files(self):
        """
        Each kind of bad topology is refused with a reason.
        """
        for text in ("nope", "[]", '{"links": 1}', '{"links": [["a"]]}',
                     '{"links": [["a", "a"]]}', '{"links": [["a.b", "c"]]}',
                     '{"observers": ["#"]}', '{}', '{"links": [], "extra": 1}'):
            self.assertRaises(BadTopology, parse_topology, text)

    def test_read_errors_name_the_file(self):
        """
        A file that cannot be read or parsed is refused naming it and the
        reason.
        """
        missing = self.mktemp()
        error = self.assertRaises(BadTopology, read_topology, missing)
        self.assertEqual(str(error), f"{missing}: No such file or directory")
        with open(missing, "w") as f:
            f.write('{"links": [["agent_1", "agent_1"]]}')
        error = self.assertRaises(BadTopology, read_topology, missing)
        self.assertIn(f"{missing}: link ['agent_1', 'agent_1'] joins an agent to itself",
                      str(error))


class RouterServiceTests(SynchronousTestCase):
    """
    L{RouterService} on a recording bus.
    """

    def setUp(self):
        self.process = FakeProcess()
        self.service = RouterService(Clock(), RouterConfig(bus=BUS), self.process,
                                     make_connector=RecordingConnector)
        self.service.startService()
        self.session = RecordingSession()

    def test_setup(self):
        """
        The router's queue is bound to agents' packets and announcements and
        to the lossy-link command, and consumed.
        """
        self.successResultOf(self.service.connector.connect(self.session))
        self.assertEqual(self.session.queues, {ROUTER_QUEUE: list(BINDINGS)})
        self.assertIn("fromAgent.*.ip.tun.packet.raw", BINDINGS)
        self.assertIn(ROUTER_QUEUE, self.session.consumers)
        [(key, body, _)] = self.session.published
        self.assertEqual((key, json.loads(body)["component"]),
                         ("testingtool.component.ready", "packet_router"))

    def test_publishes_routes(self):
        """
        What the router decides is published.
        """
        self.service.connector.connect(self.session)
        self.session.published.clear()
        self.session.deliver(ROUTER_QUEUE, *ready("agent_2"))
        self.session.deliver(ROUTER_QUEUE, wire.packet_from("agent_1"), BODY)
        self.assertEqual(self.session.published,
                         [("toAgent.agent_2.ip.tun.packet.raw", BODY, "application/json")])

    def test_refused_publishes_counted(self):
        """
        Copies the session refuses to publish are counted as drops, the
        others as forwarded.
        """
        self.service.connector.connect(self.session)
        for name in ("agent_2", "agent_3"):
            self.session.deliver(ROUTER_QUEUE, *ready(name))
        self.session.refused = "send buffer full"
        self.session.deliver(ROUTER_QUEUE, wire.packet_from("agent_1"), BODY)
        self.session.refused = None
        self.session.deliver(ROUTER_QUEUE, wire.packet_from("agent_1"), BODY)
        counters = self.service.counters
        self.assertEqual((counters.drops["send buffer full"], counters.packets["out"]), (2, 2))

    def test_deliveries_per_read(self):
        """
        The router, which has no TUN to read, takes a whole read of
        deliveries at a time.
        """
        self.assertEqual(self.service.connector.options["deliveries_per_read"], 1024)

    def test_no_peer_counted(self):
        """
        A packet with nobody to go to is counted in, and dropped as having no
        peer.
        """
        self.service.connector.connect(self.session)
        self.session.deliver(ROUTER_QUEUE, wire.packet_from("agent_1"), BODY)
        counters = self.service.counters
        self.assertEqual((counters.packets["in"], counters.drops["no peer"]), (1, 1))

    def test_drops_counted(self):
        """
        What the core drops is counted by reason, with a warning at most once
        per interval; an oversize message likewise.
        """
        self.service.connector.connect(self.session)
        with capturedLogs() as events:
            self.session.deliver(ROUTER_QUEUE, wire.packet_from("agent_1"), b"junk")
            self.session.deliver(ROUTER_QUEUE, wire.packet_from("agent_1"), b"junk")
            self.session.oversize[ROUTER_QUEUE](wire.packet_from("agent_1"), 5000000)
        self.assertEqual(dict(self.service.counters.drops), {"bad message": 2, "too large": 1})
        self.assertEqual(len([e for e in events if "dropped" in formatEvent(e)]), 1)

    def test_describe(self):
        """
        The summary and status name the agents and the broker state.
        """
        self.service.connector.connect(self.session)
        self.session.deliver(ROUTER_QUEUE, *ready("agent_2"))
        line, status = self.service.describe()
        self.assertIn("agents: agent_2; broker connected", line)
        self.assertEqual((status["agents"], status["state"], status["broker"]),
                         (["agent_2"], "connected", "amqp://u:****@h:5672/v"))

    def test_second_router_refused(self):
        """
        A second router on the same vhost stops with exit status 2.
        """
        self.session.locked = True
        self.service.connector.connect(self.session)
        code, message = self.process.failures[0]
        self.assertEqual(code, 2)
        self.assertIn("already routing", message)

    def test_stop(self):
        """
        Stopping closes the session.
        """
        self.service.connector.connect(self.session)
        self.successResultOf(self.service.stopService())
        self.assertTrue(self.session.closed)

    def test_pcap(self):
        """
        With C{--pcap-dir}, each routed packet is captured once.
        """
        from .test_pcap import read_pcap
        directory = self.mktemp()
        os.mkdir(directory)
        service = RouterService(
            Clock(), RouterConfig(bus=BUS, pcap_dir=directory),
            self.process, make_connector=RecordingConnector)
        service.privilegedStartService()
        service.startService()
        service.connector.connect(self.session)
        for name in ("agent_2", "agent_3"):
            self.session.deliver(ROUTER_QUEUE, *ready(name))
        self.session.deliver(ROUTER_QUEUE, wire.packet_from("agent_1"), BODY)
        self.successResultOf(service.stopService())
        _, records = read_pcap(os.path.join(directory, "v.pcap"))
        self.assertEqual([p for _, _, p in records], [wire.decode_packet(BODY)])

    def test_pcap_dir_unwritable(self):
        """
        A capture file that cannot be created stops the router with status 1.
        """
        service = RouterService(
            Clock(), RouterConfig(bus=BUS, pcap_dir=os.path.join(self.mktemp(), "gone")),
            self.process, make_connector=RecordingConnector)
        service.startService()
        self.assertEqual(self.process.failures[0][0], 1)
        self.assertFalse(service.connector.started)
