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

from ioppy_agent.model import control, keys, wire
from ioppy_agent.model.actions import Drop, Forward
from ioppy_agent.model.addressing import default_addresses, make_addresses
from ioppy_agent.bus import BusConfig, QueueHeld
from ioppy_agent.router import (BINDINGS, ROUTER_QUEUE, BadTopology, FanOut, FixedTopology,
                                IRoutingPolicy, PacketRouter, RouterConfig, RouterService,
                                Topology, parse_topology, read_topology)
from ioppy_agent.router.service import STANDBY_RETRY
from ioppy_agent.testing import RecordingConnector, RecordingSession
from ioppy_agent.bus.url import parse_amqp_url

from ..helpers import fixture
from .ip import ipv4, ipv6
from .test_agent import FakeProcess

BODY = fixture("fromAgent.agent_1.ip.tun.packet.raw")["body"].encode()
BUS = BusConfig(urls=(parse_amqp_url("amqp://u:p@h/v"),))


def ready(name):
    """
    @return: The key and body of a component.ready for C{name}.
    """
    return keys.COMPONENT_READY, json.dumps({"component": name}).encode()


def started(name, direct=True, addresses=None, **extra):
    """
    @return: The key and body of agent C{name}'s tun.started: ours, or with
        C{direct} false an original ioppytest agent's.
    """
    addresses = addresses or default_addresses(name)
    body = json.loads(control.started(name, addresses).body)
    if not direct:
        del body["ioppy_direct"], body["ioppy_routes"]
    body.update(extra)
    return keys.tun_started(name), json.dumps(body).encode()


def routes_in(messages):
    """
    @return: The routes each routes message in C{messages} gives, by agent.
    """
    found = {}
    for message in messages:
        kind, name = keys.parse(message.routing_key) or (None, None)
        if kind == keys.ROUTES:
            found[name] = json.loads(message.body)
    return found


class RouterTestCase(SynchronousTestCase):
    """
    A L{PacketRouter}, and ways to talk to it.
    """

    def setUp(self):
        self.router = PacketRouter(router_id="r1")

    def route(self, *args):
        with capturedLogs():
            return self.router.route(*args)

    def announce(self, *names, direct=True):
        for name in names:
            self.route(*started(name, direct), None)

    def send(self, sender, packet, content_type=wire.RAW):
        return self.route(keys.packet_from(sender), packet, content_type)

    def settle(self):
        """
        Let every agent that gets routes say it bound them, until the routes
        settle.

        @return: The routes each agent was sent last, by name.
        """
        last = {}
        for _ in range(10):
            sent = routes_in(self.router.take_control())
            if not sent:
                return last
            last.update(sent)
            for name, routes in sent.items():
                self.route(keys.bound(name), json.dumps(
                    {"router": routes["router"], "serial": routes["serial"]}).encode(), None)
        raise AssertionError("the routes did not settle")


class LearningTests(RouterTestCase):
    """
    Agents known, and forgotten.
    """

    def test_learns_from_started(self):
        """
        tun.started makes an agent known, with its addresses.
        """
        self.announce("agent_2")
        self.assertEqual(self.router.agents, ["agent_2"])
        self.assertEqual([str(n) for n in self.router.steering.agents["agent_2"].networks],
                         ["10.2.0.2/32", "bbbb::2/128", "fe80::2/128"])

    def test_ready_is_not_an_agent(self):
        """
        component.ready, as ioppytest's capture dumpers, sniffer and
        coordinator send it, makes no agent: only a TUN's announcement or a
        packet does.
        """
        for name in ("capture_dumper_11a73bb2", "sniffing", "agent_3"):
            self.assertIsNone(self.route(*ready(name), None))
        self.assertEqual(self.router.agents, [])
        self.assertEqual(self.router.take_control(), [])

    def test_learns_original_ipv4_address(self):
        """
        The original agent 0.2.20 announces its IPv4 address as
        C{ipv4_address}, with C{ipv4_host} null: the router learns it, and
        forwards to it over IPv4.
        """
        body = json.dumps({"_api_version": "1.2.15", "ipv4_address": "10.2.0.2",
                           "ipv4_host": None, "ipv4_netmask": "255.255.255.0",
                           "ipv4_network": "10.2.0.0", "ipv6_prefix": "bbbb",
                           "ipv6_host": "2", "name": "agent_2"}).encode()
        self.route("fromAgent.agent_2.ip.tun.started", body, wire.JSON)
        self.assertEqual([str(n) for n in self.router.steering.agents["agent_2"].networks],
                         ["10.2.0.2/32", "bbbb::2/128", "fe80::2/128"])
        forward = self.send("agent_1", ipv4("10.2.0.1", "10.2.0.2"))
        self.assertEqual([m.routing_key for m in forward.messages],
                         ["toAgent.agent_2.ip.tun.packet.raw"])

    def test_learns_from_packet(self):
        """
        A first packet makes its sender known; an agent that never announced
        its addresses is taken to own the sources of its packets.
        """
        self.send("agent_1", ipv6("bbbb::1", "bbbb::2"))
        self.assertEqual(self.router.agents, ["agent_1"])
        self.assertEqual([str(n) for n in self.router.steering.agents["agent_1"].networks],
                         ["bbbb::1/128"])

    def test_forgets_on_shutdown(self):
        """
        component.shutdown forgets the agent and its addresses.
        """
        self.announce("agent_1")
        with capturedLogs() as events:
            self.router.route(keys.COMPONENT_SHUTDOWN,
                              fixture("testingtool.component.shutdown")["body"].encode(), None)
        self.assertEqual((self.router.agents, self.router.steering.agents), ([], {}))
        self.assertEqual(formatEvent(events[-1]), "agent agent_1 left; agents: none")

    def test_malformed_sender_not_learned(self):
        """
        A malformed packet does not make its sender known.
        """
        self.send("agent_9", b"junk", wire.JSON)
        self.assertEqual(self.router.agents, [])

    def test_bad_started(self):
        """
        A tun.started whose addresses do not parse is dropped as bad.
        """
        action = self.route(*started("agent_2", ipv4_host="banana"), None)
        self.assertEqual(action.reason, "bad message")


class ForwardingTests(RouterTestCase):
    """
    What the router still carries: packets published on the router's key.
    """

    def setUp(self):
        RouterTestCase.setUp(self)
        self.announce("agent_1", "agent_2", "agent_3", direct=False)

    def test_unicast_to_owner(self):
        """
        A unicast packet goes to the owner of its destination only, with the
        body exactly as it came.
        """
        action = self.send("agent_1", BODY, "application/json")
        self.assertEqual(action, Forward((
            wire.Message("toAgent.agent_2.ip.tun.packet.raw", BODY, "application/json"),),
            len(BODY), wire.decode_packet(BODY)))
        self.assertIs(action.messages[0].body, BODY)

    def test_multicast_to_peers(self):
        """
        Multicast goes to every peer.
        """
        action = self.send("agent_1", ipv6("fe80::1", "ff02::1"))
        self.assertEqual([m.routing_key for m in action.messages],
                         ["toAgent.agent_2.ip.tun.packet.raw",
                          "toAgent.agent_3.ip.tun.packet.raw"])
        self.assertEqual(len(self.send("agent_1", ipv4("10.2.0.1", "10.2.0.255")).messages), 2)

    def test_no_route(self):
        """
        A packet to an address nobody owns is dropped, not flooded.
        """
        action = self.send("agent_1", ipv4("10.2.0.1", "10.2.0.77"))
        self.assertEqual(action.reason, "no route")
        self.assertIn("10.2.0.77", action.detail)

    def test_original_link_local(self):
        """
        An original agent's kernel-made link-local address, which it never
        announces, may be its source (its router solicitations and
        neighbour discovery); an ioppy agent's may not, and other sources
        stay refused for both.
        """
        self.route(*started("agent_3", direct=False), None)
        self.route(*started("agent_4"), None)
        solicitation = ipv6("fe80::886:9aba:dc88:c164", "ff02::2")
        self.assertEqual(type(self.send("agent_3", solicitation)), Forward)
        self.assertEqual(self.send("agent_4", solicitation).reason, "source not sender's")
        self.assertEqual(self.send("agent_3", ipv6("bbbb::9", "bbbb::4")).reason,
                         "source not sender's")
        self.assertEqual(self.send("agent_3", ipv4("10.2.0.9", "10.2.0.4")).reason,
                         "source not sender's")

    def test_source_checked(self):
        """
        A packet whose source is not its sender's is dropped.
        """
        action = self.send("agent_1", ipv4("10.2.0.3", "10.2.0.2"))
        self.assertEqual(action.reason, "source not sender's")

    def test_raw_and_missing_content_type(self):
        """
        A raw packet is forwarded with its content type; one without a
        content type as JSON.
        """
        packet = ipv4("10.2.0.1", "10.2.0.2")
        self.assertEqual(self.send("agent_1", packet).messages[0].content_type, wire.RAW)
        action = self.route(keys.packet_from("agent_1"), wire.encode_packet(packet, 1.0), None)
        self.assertEqual(action.messages[0].content_type, wire.JSON)

    def test_lossy_link(self):
        """
        routing.lossy.link.start drops exactly the next N packets.
        """
        with capturedLogs() as events:
            self.router.route(keys.LOSSY_LINK_START,
                              fixture("routing.lossy.link.start")["body"].encode(), None)
        self.assertEqual(formatEvent(events[0]), "lossy link: dropping the next 2 packets")
        results = [self.send("agent_1", BODY, wire.JSON) for _ in range(4)]
        self.assertEqual(results[:2], [Drop("lossy link"), Drop("lossy link")])
        self.assertEqual([type(r) for r in results[2:]], [Forward, Forward])

    def test_malformed_dropped(self):
        """
        Packet bodies that carry no packet, and malformed control messages,
        are dropped as bad, with a warning naming the key.
        """
        drops = [self.send("agent_1", body, content_type) for body, content_type in (
            (b"junk", wire.JSON), (b'{"x": 1}', wire.JSON), (b"[1, 2]", wire.JSON),
            (b'{"data": [69, 999]}', wire.JSON), (b"", wire.RAW), (BODY, "text/plain"))]
        drops.append(self.route(keys.LOSSY_LINK_START, b'{"number_of_packets_to_drop": "x"}',
                                None))
        drops.append(self.route(keys.COMPONENT_SHUTDOWN, b"[]", None))
        self.assertEqual({d.reason for d in drops}, {"bad message"})
        self.assertIn("dropped a message on fromAgent.agent_1.ip.tun.packet.raw: body is not",
                      drops[0].detail)
        self.assertEqual(len(self.send("agent_1", BODY, wire.JSON).messages), 1)

    def test_not_ip(self):
        """
        A packet with no IP header is dropped.
        """
        self.assertEqual(self.send("agent_1", b"\x45\x00").reason, "not IP")


class SteeringTests(RouterTestCase):
    """
    The routes the router tells each agent.
    """

    def test_routes_for_direct_agents(self):
        """
        Agents that take direct delivery get routes: wildcard bindings for
        their own packets, each peer's addresses to send to and to check.
        Each peer is reached through the router until it says it has bound
        its queue, then straight.
        """
        self.announce("agent_1", "agent_2")
        routes = routes_in(self.router.take_control())
        self.assertEqual(sorted(routes), ["agent_1", "agent_2"])
        self.assertEqual((routes["agent_1"]["destinations"]["agent_2"]["path"],
                          routes["agent_1"]["multicast"]), ("router", "router"))
        for name, sent in routes.items():
            self.route(keys.bound(name), json.dumps(
                {"router": sent["router"], "serial": sent["serial"]}).encode(), None)
        one = self.settle()["agent_1"]
        self.assertEqual(one["observers"], [])
        self.assertEqual(one["destinations"], {"agent_2": {
            "addresses": ["10.2.0.2/32", "bbbb::2/128", "fe80::2/128"], "path": "direct"}})
        self.assertEqual((one["multicast"], one["mode"], one["router"]), ("direct", "direct",
                                                                          "r1"))
        self.assertEqual(one["senders"], {"agent_2": ["10.2.0.2/32", "bbbb::2/128",
                                                      "fe80::2/128"]})

    def test_original_agents(self):
        """
        An original agent gets no routes, and is reached through the router.
        """
        self.announce("agent_1")
        self.announce("orig_3", direct=False)
        self.route(*started("orig_3", direct=False, ipv4_host="10.2.0.3", ipv6_host="3"), None)
        routes = routes_in(self.router.take_control())
        self.assertNotIn("orig_3", routes)
        self.assertEqual(routes["agent_1"]["destinations"]["orig_3"]["path"], "router")
        self.assertEqual(routes["agent_1"]["multicast"], "router")

    def test_only_changes_sent(self):
        """
        Routes are sent again only when they change, or to an agent that
        announces itself again (a new connection of it).
        """
        self.announce("agent_1", "agent_2")
        self.router.take_control()
        self.announce("agent_2")
        self.assertEqual(sorted(routes_in(self.router.take_control())), ["agent_2"])
        self.route(*started("agent_2", ipv6_host="22"), None)
        self.assertEqual(sorted(routes_in(self.router.take_control())), ["agent_1", "agent_2"])

    def test_new_session_resends(self):
        """
        After the router connects again, agents get their routes again when
        they announce themselves.
        """
        self.announce("agent_1", "agent_2")
        self.router.take_control()
        self.router.connected()
        self.announce("agent_1")
        self.assertEqual(sorted(routes_in(self.router.take_control())), ["agent_1", "agent_2"])

    def test_lossy_link_mode(self):
        """
        While a lossy link drops packets, every agent sends through the
        router; then directly again.
        """
        self.announce("agent_1", "agent_2")
        self.router.take_control()
        self.route(keys.LOSSY_LINK_START, b'{"number_of_packets_to_drop": 1}', None)
        modes = {n: r["mode"] for n, r in routes_in(self.router.take_control()).items()}
        self.assertEqual(modes, {"agent_1": "router", "agent_2": "router"})
        self.send("agent_1", ipv4("10.2.0.1", "10.2.0.2"))
        modes = {n: r["mode"] for n, r in routes_in(self.router.take_control()).items()}
        self.assertEqual(modes, {"agent_1": "direct", "agent_2": "direct"})

    def test_topology(self):
        """
        With a topology, a sender is told the observers to copy its packets
        to, and a destination is direct only if the observers take direct
        delivery too.
        """
        topology = Topology(frozenset({("agent_1", "agent_2")}), frozenset({"agent_TT"}))
        self.router = PacketRouter(FixedTopology(topology), router_id="r1")
        self.announce("agent_1", "agent_2", "agent_3")
        tt = make_addresses("10.2.0.99/24", "bbbb", "99")
        self.route(*started("agent_TT", addresses=tt), None)
        routes = self.settle()
        self.assertEqual(routes["agent_1"]["observers"], ["agent_TT"])
        self.assertEqual(routes["agent_3"]["observers"], ["agent_TT"])
        self.assertEqual(sorted(routes["agent_2"]["senders"]), ["agent_1"])
        self.assertEqual(sorted(routes["agent_1"]["destinations"]), ["agent_2", "agent_TT"])
        self.assertEqual(routes["agent_3"]["destinations"], {"agent_TT": {
            "addresses": ["10.2.0.99/32", "bbbb::99/128", "fe80::99/128"], "path": "direct"}})
        self.route(*started("agent_TT", direct=False, addresses=tt), None)
        routes = self.settle()
        self.assertEqual(routes["agent_1"]["destinations"]["agent_2"]["path"], "router")

    def test_learning_bounded(self):
        """
        The router learns at most MAX_AGENTS agents, whatever is announced;
        the rest are dropped and counted, and a log line names at most 16
        agents, however many there are.
        """
        from ioppy_agent.router import core
        self.patch(core, "MAX_AGENTS", 40)
        with capturedLogs() as events:
            drops = [self.route(*started(f"agent_{n}"), None) for n in range(1, 46)]
        self.assertEqual(len(self.router.agents), 40)
        self.assertEqual({d.reason for d in drops if d is not None}, {"too many agents"})
        self.assertEqual(sum(1 for d in drops if d is not None), 5)
        joined = [formatEvent(e) for e in events if "joined" in formatEvent(e)]
        self.assertEqual(len(joined), 40)
        self.assertTrue(joined[-1].endswith(" and 24 more"), joined[-1])
        self.assertLess(max(len(line) for line in joined), 300)
        body = started("agent_1")[1]
        self.assertEqual(self.route(keys.tun_started("packet_router"), body, None).reason,
                         "not an agent")

    def test_agent_started_again(self):
        """
        An agent that announces itself again, unchanged (killed and started
        again: a new connection, no routes), is sent its routes again, and
        its peers reach it through the router until it says it has them.
        """
        self.announce("agent_1", "agent_2")
        self.settle()
        self.route(*started("agent_1"), None)
        routes = routes_in(self.router.take_control())
        self.assertIn("agent_1", routes)
        self.assertEqual(routes["agent_2"]["destinations"]["agent_1"]["path"], "router")
        for name, sent in routes.items():
            self.route(keys.bound(name), json.dumps(
                {"router": sent["router"], "serial": sent["serial"]}).encode(), None)
        routes = self.settle()
        self.assertEqual(routes["agent_2"]["destinations"]["agent_1"]["path"], "direct")

    def test_acknowledgement_checked(self):
        """
        A tun.bound for other routes than those last sent, or from another
        router, changes nothing; a malformed one is dropped.
        """
        self.announce("agent_1", "agent_2")
        sent = routes_in(self.router.take_control())
        for router, serial in (("r2", sent["agent_2"]["serial"]), ("r1", 99)):
            self.route(keys.bound("agent_2"),
                       json.dumps({"router": router, "serial": serial}).encode(), None)
        self.assertEqual(self.router.take_control(), [])
        self.assertEqual(self.route(keys.bound("agent_2"), b"{}", None).reason,
                         "bad message")


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
        A multicast packet carried by the router goes to the sender's linked
        peers and every observer, a unicast one to its owner and every
        observer, an announcement adds no route, and nothing goes between
        agents that are not linked.
        """
        router = PacketRouter(FixedTopology(parse_topology(self.TEXT)))
        with capturedLogs():
            for name in ("agent_1", "agent_2", "agent_3", "agent_4"):
                body = json.loads(started(name, direct=False)[1])
                router.route(keys.tun_started(name), json.dumps(body).encode(), None)
            multicast = router.route(keys.packet_from("agent_2"), ipv6("fe80::2", "ff02::1"),
                                     wire.RAW)
            unicast = router.route(keys.packet_from("agent_2"), ipv4("10.2.0.2", "10.2.0.1"),
                                   wire.RAW)
            unlinked = router.route(keys.packet_from("agent_1"), ipv4("10.2.0.1", "10.2.0.4"),
                                    wire.RAW)
        self.assertEqual([m.routing_key for m in multicast.messages],
                         ["toAgent.agent_1.ip.tun.packet.raw",
                          "toAgent.agent_3.ip.tun.packet.raw",
                          "toAgent.agent_TT.ip.tun.packet.raw"])
        self.assertEqual([m.routing_key for m in unicast.messages],
                         ["toAgent.agent_1.ip.tun.packet.raw",
                          "toAgent.agent_TT.ip.tun.packet.raw"])
        self.assertEqual(unlinked.reason, "no route")

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
        self.assertIn(("ioppy.unsteered", ""), BINDINGS)
        self.assertEqual(self.session.exchanges, {
            "ioppy.unsteered": ("fanout", {}), "ioppy.direct": ("fanout", {}),
            "ioppy.steer": ("headers", {"alternate-exchange": "ioppy.unsteered"})})
        self.assertEqual(self.session.exchange_bindings, {
            ("ioppy.steer", "amq.topic", "fromAgent.*.ip.tun.packet.raw", ()),
            ("ioppy.direct", "ioppy.steer", "",
             (("ioppy-direct", "yes"), ("x-match", "all")))})
        self.assertIn(ROUTER_QUEUE, self.session.consumers)
        [(key, body, _)] = self.session.published
        self.assertEqual((key, json.loads(body)["component"]),
                         ("testingtool.component.ready", "packet_router"))

    def announce(self, *names, direct=False):
        for name in names:
            self.session.deliver(ROUTER_QUEUE, *started(name, direct))

    def test_forwards(self):
        """
        A packet the router carries is published to its receivers.
        """
        self.service.connector.connect(self.session)
        self.announce("agent_1", "agent_2")
        self.session.published.clear()
        self.session.deliver(ROUTER_QUEUE, keys.packet_from("agent_1"), BODY)
        self.assertEqual(self.session.published,
                         [("toAgent.agent_2.ip.tun.packet.raw", BODY, "application/json")])

    def test_publishes_routes(self):
        """
        The routes the core decides are published to the agents that take
        direct delivery.
        """
        self.service.connector.connect(self.session)
        self.session.published.clear()
        self.announce("agent_1", "agent_2", direct=True)
        self.assertEqual([key for key, _, _ in self.session.published],
                         ["ioppy.routes.agent_1", "ioppy.routes.agent_1",
                          "ioppy.routes.agent_2"])

    def test_roll_call(self):
        """
        A second after it connects, the router sends a roll call to each
        agent named for it that has not announced itself, and to no other.
        """
        clock = Clock()
        service = RouterService(clock, RouterConfig(bus=BUS, roll_call=("agent_3", "agent_2")),
                                self.process, make_connector=RecordingConnector)
        service.startService()
        with capturedLogs() as events:
            service.connector.connect(self.session)
            self.session.deliver(ROUTER_QUEUE, *started("agent_2"))
            self.session.published.clear()
            clock.advance(0.9)
            self.assertEqual(self.session.published, [])
            clock.advance(0.1)
        [(key, body, _)] = self.session.published
        self.assertEqual(key, "toAgent.agent_3.ip.tun.start")
        self.assertEqual(json.loads(body)["ipv4_address"], "10.2.0.3")
        self.assertTrue(control.is_roll_call(body))
        self.assertIn("roll call: asked agent_3 to announce themselves",
                      [formatEvent(e) for e in events])
        # Called again while it does not answer, five times in all.
        self.session.published.clear()
        with capturedLogs() as events:
            clock.advance(2.0)
            self.assertEqual([k for k, _, _ in self.session.published],
                             ["toAgent.agent_3.ip.tun.start"])
            clock.pump([2.0] * 5)
        self.assertEqual(len(self.session.published), 4)
        self.assertIn("roll call: asked agent_3 5 times; no answer yet",
                      [formatEvent(e) for e in events])
        # Once it answers, it is called no more.
        self.session.published.clear()
        service.connector.connect(self.session)
        self.session.deliver(ROUTER_QUEUE, *started("agent_3", direct=False))
        self.session.published.clear()
        clock.pump([1.0, 2.0, 2.0])
        self.assertEqual(self.session.published, [])
        self.successResultOf(service.stopService())

    def test_routes_while_send_buffer_full(self):
        """
        Routes go out while the session refuses packets (send buffer full,
        broker blocked): losing them would leave agents with stale routes.
        """
        self.service.connector.connect(self.session)
        self.session.published.clear()
        self.session.refused = "send buffer full"
        self.announce("agent_1", "agent_2", direct=True)
        self.assertEqual([key for key, _, _ in self.session.published],
                         ["ioppy.routes.agent_1", "ioppy.routes.agent_1",
                          "ioppy.routes.agent_2"])

    def test_refused_publishes_counted(self):
        """
        Copies the session refuses to publish are counted as drops, the
        others as forwarded.
        """
        self.service.connector.connect(self.session)
        self.announce("agent_1", "agent_2", "agent_3")
        packet = ipv6("fe80::1", "ff02::1")
        self.session.refused = "send buffer full"
        self.session.deliver(ROUTER_QUEUE, keys.packet_from("agent_1"), packet, wire.RAW)
        self.session.refused = None
        self.session.deliver(ROUTER_QUEUE, keys.packet_from("agent_1"), packet, wire.RAW)
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
        A multicast packet with nobody to go to is counted in, and dropped as
        having no peer.
        """
        self.service.connector.connect(self.session)
        self.announce("agent_1")
        self.session.deliver(ROUTER_QUEUE, keys.packet_from("agent_1"),
                             ipv6("fe80::1", "ff02::1"), wire.RAW)
        counters = self.service.counters
        self.assertEqual((counters.packets["in"], counters.drops["no peer"]), (1, 1))

    def test_drops_counted(self):
        """
        What the core drops is counted by reason, with a warning at most once
        per interval; an oversize message likewise.
        """
        self.service.connector.connect(self.session)
        with capturedLogs() as events:
            self.session.deliver(ROUTER_QUEUE, keys.packet_from("agent_1"), b"junk")
            self.session.deliver(ROUTER_QUEUE, keys.packet_from("agent_1"), b"junk")
            self.session.oversize[ROUTER_QUEUE](keys.packet_from("agent_1"), 5000000)
        self.assertEqual(dict(self.service.counters.drops), {"bad message": 2, "too large": 1})
        self.assertEqual(len([e for e in events if "dropped" in formatEvent(e)]), 1)

    def test_describe(self):
        """
        The summary and status name the agents and the broker state.
        """
        self.service.connector.connect(self.session)
        self.session.deliver(ROUTER_QUEUE, *started("agent_2"))
        line, status = self.service.describe()
        self.assertIn("agents: agent_2; broker connected", line)
        self.assertEqual((status["agents"], status["state"], status["broker"]),
                         (["agent_2"], "connected", "amqp://u:****@h:5672/v"))

    def test_second_router_stands_by(self):
        """
        A second router on the same vhost does not exit: it says once that it
        stands by, each attempt fails with a L{QueueHeld} to be retried in
        L{STANDBY_RETRY} seconds, and when the queue is free it takes over.
        """
        with capturedLogs() as events:
            for _ in range(3):
                held = RecordingSession()
                held.locked = True
                failure = self.failureResultOf(self.service.connector.connect(held), QueueHeld)
                self.assertEqual(failure.value.retry_after, STANDBY_RETRY)
        self.assertEqual(self.process.failures, [])
        said = [formatEvent(e) for e in events]
        self.assertEqual(len([s for s in said if s.startswith("standing by")]), 1, said)
        self.assertIn("another ioppy-router is routing vhost 'v'", said[0])
        line, status = self.service.describe()
        self.assertTrue(line.endswith("(standing by)"))
        self.assertIs(status["standby"], True)
        with capturedLogs() as events:
            self.service.connector.connect(self.session)
        self.assertIn(ROUTER_QUEUE, self.session.consumers)
        self.assertIn("router took over, connected to", formatEvent(events[-1]))
        self.assertIs(self.service.describe()[1]["standby"], False)

    def test_stop(self):
        """
        Stopping closes the session.
        """
        self.service.connector.connect(self.session)
        self.successResultOf(self.service.stopService())
        self.assertTrue(self.session.closed)

    def test_pcap(self):
        """
        With C{--pcap-dir}, the router also consumes a queue of its own
        bound to every agent's packets as they enter the bus, and captures
        each packet from it once, whichever way it went on.
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
        self.assertEqual(self.session.queues["ioppy.router.capture"],
                         ["fromAgent.*.ip.tun.packet.raw"])
        self.announce("agent_1", "agent_2", "agent_3")
        direct = ipv4("10.2.0.2", "10.2.0.1")
        # Through the router: captured from the capture queue, not again
        # when forwarded.
        for queue in ("ioppy.router.capture", ROUTER_QUEUE):
            self.session.deliver(queue, keys.packet_from("agent_1"), BODY)
        self.session.deliver("ioppy.router.capture", keys.packet_from("agent_2"), direct,
                             wire.RAW)
        self.session.deliver("ioppy.router.capture", keys.packet_from("agent_2"), b"junk",
                             wire.RAW)
        self.successResultOf(service.stopService())
        _, records = read_pcap(os.path.join(directory, "v.pcap"))
        self.assertEqual([p for _, _, p in records], [wire.decode_packet(BODY), direct])

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
