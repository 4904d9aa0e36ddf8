"""
Tests for L{ioppy_agent.router}.
"""

import json
import os

from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from ioppy_agent import wire
from ioppy_agent.router import (BINDINGS, ROUTER_QUEUE, BadTopology, PacketRouter,
                                RouterConfig, RouterService, Topology, parse_topology)
from ioppy_agent.testing import RecordingConnector, RecordingSession
from ioppy_agent.url import parse_amqp_url

from ..helpers import fixture
from .test_agent import FakeProcess

BODY = fixture("fromAgent.agent_1.ip.tun.packet.raw")["body"].encode()


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
        self.router = PacketRouter(Clock())

    def send(self, sender, body=BODY, content_type="application/json"):
        return self.router.route(wire.packet_from(sender), body, content_type)

    def test_learns_from_started(self):
        """
        tun.started makes an agent known.
        """
        self.router.route("fromAgent.agent_2.ip.tun.started", b"{}", None)
        self.assertEqual(self.router.agents, {"agent_2"})

    def test_learns_from_ready(self):
        """
        component.ready makes a component known; the router's own name and
        invalid names are ignored.
        """
        for name in ("agent_3", "packet_router", "a.b"):
            self.router.route(*ready(name), None)
        self.assertEqual(self.router.agents, {"agent_3"})

    def test_learns_from_packet(self):
        """
        A first packet makes its sender known.
        """
        self.send("agent_1")
        self.assertEqual(self.router.agents, {"agent_1"})

    def test_forgets_on_shutdown(self):
        """
        component.shutdown forgets the agent.
        """
        self.send("agent_1")
        self.router.route(wire.COMPONENT_SHUTDOWN,
                          fixture("testingtool.component.shutdown")["body"].encode(), None)
        self.assertEqual(self.router.agents, set())

    def test_forwards_to_others_unchanged(self):
        """
        A packet goes to every other known agent, with the body exactly as it
        came and its content type.
        """
        for name in ("agent_2", "agent_3"):
            self.router.route(*ready(name), None)
        out = self.send("agent_1")
        self.assertEqual(out, [
            wire.Message("toAgent.agent_2.ip.tun.packet.raw", BODY, "application/json"),
            wire.Message("toAgent.agent_3.ip.tun.packet.raw", BODY, "application/json")])
        self.assertIs(out[0].body, BODY)

    def test_raw_forwarded_unchanged(self):
        """
        A raw packet is forwarded as it came, with its content type.
        """
        self.router.route(*ready("agent_2"), None)
        out = self.send("agent_1", b"\x45raw", "application/octet-stream")
        self.assertEqual(out, [wire.Message("toAgent.agent_2.ip.tun.packet.raw", b"\x45raw",
                                            "application/octet-stream")])

    def test_alone(self):
        """
        With no other agent the packet goes nowhere, counted as such.
        """
        self.assertEqual(self.send("agent_1"), [])
        self.assertEqual(self.router.counters.drops["no peer"], 1)

    def test_missing_content_type(self):
        """
        A packet without a content type is forwarded as JSON.
        """
        self.router.route(*ready("agent_2"), None)
        self.assertEqual(self.send("agent_1", content_type=None)[0].content_type,
                         "application/json")

    def test_lossy_link(self):
        """
        routing.lossy.link.start drops exactly the next N packets.
        """
        self.router.route(*ready("agent_2"), None)
        self.router.route(wire.LOSSY_LINK_START,
                          fixture("routing.lossy.link.start")["body"].encode(), None)
        results = [len(self.send("agent_1")) for _ in range(4)]
        self.assertEqual(results, [0, 0, 1, 1])
        self.assertEqual(self.router.counters.drops["lossy link"], 2)

    def test_malformed_dropped(self):
        """
        Packet bodies of the wrong shape and malformed control messages are
        counted and dropped; the router keeps routing good ones, warning at
        most once per interval.
        """
        self.router.route(*ready("agent_2"), None)
        with capturedLogs() as events:
            for body, content_type in ((b"junk", wire.JSON), (b'{"x": 1}', wire.JSON),
                                       (b"[1, 2]", wire.JSON), (b"", wire.RAW),
                                       (BODY, "text/plain")):
                self.assertEqual(self.send("agent_1", body, content_type), [])
            self.router.route(wire.LOSSY_LINK_START, b'{"number_of_packets_to_drop": "x"}',
                              None)
            self.router.route(wire.COMPONENT_READY, b"[]", None)
            self.assertEqual(len(self.send("agent_1")), 1)
        self.assertEqual(self.router.counters.drops["bad message"], 7)
        self.assertEqual(self.router.to_drop, 0)
        self.assertEqual(len([e for e in events if "dropped" in e["log_format"]]), 1)

    def test_packet_not_decoded(self):
        """
        A JSON body of the right shape is forwarded unchanged without being
        decoded: a packet that is wrong inside (here a byte out of range) is
        left to the receiving agent, which decodes it.  Message bytes are
        counted in and out.
        """
        self.router.route(*ready("agent_2"), None)
        body = b' {"data": [69, 999], "interface_name": "tun0"}\n'
        [message] = self.send("agent_1", body)
        self.assertEqual(message.body, body)
        self.assertEqual(self.router.counters.drops, {})
        self.assertEqual(self.router.counters.bytes["in"], len(body))

    def test_capture_decodes(self):
        """
        A router that captures packets decodes each one, and drops those that
        do not decode.
        """
        captured = []
        router = PacketRouter(Clock(), capture=captured.append)
        router.route(*ready("agent_2"), None)
        self.assertEqual(router.route(wire.packet_from("agent_1"), b'{"data": [69, 999]}',
                                      wire.JSON), [])
        self.assertEqual(router.counters.drops["bad message"], 1)
        self.assertEqual(len(router.route(wire.packet_from("agent_1"), BODY, wire.JSON)), 1)
        self.assertEqual(captured, [wire.decode_packet(BODY)])

    def test_malformed_sender_not_learned(self):
        """
        A malformed packet does not make its sender known.
        """
        self.send("agent_9", b"junk")
        self.assertEqual(self.router.agents, set())


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
        router = PacketRouter(Clock(), parse_topology(self.TEXT))
        router.route(*ready("agent_4"), None)
        keys = [m.routing_key for m in router.route(wire.packet_from("agent_2"), BODY, None)]
        self.assertEqual(keys, ["toAgent.agent_1.ip.tun.packet.raw",
                                "toAgent.agent_3.ip.tun.packet.raw",
                                "toAgent.agent_TT.ip.tun.packet.raw"])
        self.assertEqual(router.peers_of("agent_1"), ["agent_2", "agent_TT"])
        self.assertEqual(router.peers_of("agent_TT"), [])

    def test_bad_files(self):
        """
        Each kind of bad topology is refused with a reason.
        """
        for text in ("nope", "[]", '{"links": 1}', '{"links": [["a"]]}',
                     '{"links": [["a", "a"]]}', '{"links": [["a.b", "c"]]}',
                     '{"observers": ["#"]}', '{}', '{"links": [], "extra": 1}'):
            self.assertRaises(BadTopology, parse_topology, text)


class RouterServiceTests(SynchronousTestCase):
    """
    L{RouterService} on a recording bus.
    """

    def setUp(self):
        self.process = FakeProcess()
        self.service = RouterService(
            Clock(), RouterConfig(url=parse_amqp_url("amqp://u:p@h/v")), self.process,
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
        counters = self.service.router.counters
        self.assertEqual((counters.drops["send buffer full"], counters.packets["out"]), (2, 2))

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
            Clock(), RouterConfig(url=parse_amqp_url("amqp://u:p@h/v"), pcap_dir=directory),
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
            Clock(), RouterConfig(url=parse_amqp_url("amqp://u:p@h/v"),
                                  pcap_dir=os.path.join(self.mktemp(), "gone")),
            self.process, make_connector=RecordingConnector)
        service.startService()
        self.assertEqual(self.process.failures[0][0], 1)
        self.assertFalse(service.connector.started)
