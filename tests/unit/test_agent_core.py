"""
Tests for L{ioppy_agent.agent.core.AgentCore}: what the agent decides for
each packet and message, with no I/O and no reactor (a L{Clock} gives the
time stamps).
"""

import json

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from ioppy_agent.model import control, keys, wire
from ioppy_agent.model.actions import (Drop, Forward, Publish, Readdress, Refuse, Reroute,
                                       WriteToTun)
from ioppy_agent.model.addressing import default_addresses, make_addresses
from ioppy_agent.agent import AgentCore

from ..helpers import fixture
from .ip import ipv4, ipv6, reply_to

IN = "toAgent.agent_1.ip.tun.packet.raw"
START = "toAgent.agent_1.ip.tun.start"
PACKET = bytes(json.loads(fixture("toAgent.agent_2.ip.tun.packet.raw")["body"])["data"])
# What agent_2 sends back: a packet the router forwards to agent_1.
INBOUND = reply_to(PACKET)


class CoreTestCase(SynchronousTestCase):
    """
    The core of agent_1, MTU 1400.
    """

    wire_format = "json"

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1764242400.5)
        self.core = AgentCore("agent_1", default_addresses("agent_1"), self.clock, mtu=1400,
                              wire_format=self.wire_format)


class SessionTests(CoreTestCase):
    """
    What the agent binds, announces and says on leaving.
    """

    def test_bindings(self):
        """
        The queue is the agent's own, bound to its packets, its tun.start and
        component announcements.
        """
        self.assertEqual(self.core.queue, "ioppy.agent.agent_1")
        self.assertEqual(self.core.bindings(), (IN, "ioppy.to.agent_1", START,
                                                "ioppy.routes.agent_1",
                                                "testingtool.component.ready"))

    def test_announcements(self):
        """
        On each connection: tun.started with the addresses in ioppytest's
        fields, then component.ready.
        """
        started, ready = self.core.announcements()
        self.assertEqual((started.routing_key, ready.routing_key),
                         ("fromAgent.agent_1.ip.tun.started", "testingtool.component.ready"))
        body = json.loads(started.body)
        self.assertEqual((body["ipv4_host"], body["ipv6_prefix"], body["ipv6_host"]),
                         ("10.2.0.1", "bbbb", ":1"))
        self.assertEqual(json.loads(ready.body)["component"], "agent_1")

    def test_farewell(self):
        """
        Leaving, the agent announces its shutdown.
        """
        [message] = self.core.farewell()
        self.assertEqual(message.routing_key, "testingtool.component.shutdown")


class FromTunTests(CoreTestCase):
    """
    Packets the host sent into the TUN.
    """

    def test_json(self):
        """
        A packet is forwarded to the agent's own key as ioppytest JSON,
        stamped with the clock's time.
        """
        action = self.core.from_tun(PACKET)
        self.assertIsInstance(action, Forward)
        [message] = action.messages
        self.assertEqual((message.routing_key, message.content_type),
                         ("fromAgent.agent_1.ip.tun.packet.raw", "application/json"))
        body = json.loads(message.body)
        self.assertEqual((bytes(body["data"]), body["timestamp"], body["interface_name"]),
                         (PACKET, 1764242400.5, "tun0"))
        self.assertEqual((action.size, action.packet), (len(PACKET), PACKET))


class RawFromTunTests(CoreTestCase):
    """
    With the raw wire format.
    """

    wire_format = "raw"

    def test_raw(self):
        """
        A packet is forwarded as its own bytes, application/octet-stream.
        """
        [message] = self.core.from_tun(PACKET).messages
        self.assertEqual((message.body, message.content_type),
                         (PACKET, "application/octet-stream"))


class FromBusTests(CoreTestCase):
    """
    Messages consumed from the agent's queue.
    """

    def test_packets_either_format(self):
        """
        A packet in either wire format is written to the TUN.
        """
        for body, content_type in ((wire.encode_packet(INBOUND, 1.0), wire.JSON),
                                   (INBOUND, wire.RAW), (wire.encode_packet(INBOUND, 1.0), None)):
            self.assertEqual(self.core.from_bus(IN, body, content_type), WriteToTun(INBOUND))

    def test_bad_messages(self):
        """
        Bodies that carry no packet are dropped as bad messages, with a
        warning naming the key.
        """
        for body in (b"junk", b'{"data": [300]}', b'{"data": "x"}', b'{"data": []}'):
            action = self.core.from_bus(IN, body, wire.JSON)
            self.assertEqual(action.reason, "bad message")
            self.assertIn(f"dropped a message on {IN}", action.detail)

    def test_unknown_content_type(self):
        """
        A content type of neither format is dropped as such.
        """
        self.assertEqual(self.core.from_bus(IN, PACKET, "text/plain").reason,
                         "unknown content type")

    def test_not_ip(self):
        """
        Bytes that are not an IPv4 or IPv6 packet never reach the TUN.
        """
        self.assertEqual(self.core.from_bus(IN, b"\x00junk", wire.RAW),
                         Drop("not IP", f"dropped a message on {IN}: its data is not an IPv4 "
                                        "or IPv6 packet"))

    def test_larger_than_mtu(self):
        """
        A packet longer than the MTU is dropped.
        """
        self.assertEqual(self.core.from_bus(IN, b"\x45" + b"x" * 1400, wire.RAW),
                         Drop("larger than MTU", "dropped a 1401-byte packet: larger than "
                                                 "the MTU 1400"))

    def test_tun_start(self):
        """
        tun.start asks for new addresses; ioppytest's own message is read.
        """
        action = self.core.from_bus(START, fixture("toAgent.agent_1.ip.tun.start")["body"]
                                    .encode(), wire.JSON)
        self.assertIsInstance(action, Readdress)
        self.assertEqual(str(action.addresses.ipv6), "bbbb::1/64")

    def test_roll_call(self):
        """
        A router's roll call (a tun.start saying so) is answered with the
        agent's announcement; its addresses stay.
        """
        action = self.core.from_bus(START, control.roll_call("agent_1").body, wire.JSON)
        self.assertIsInstance(action, Publish)
        self.assertEqual([m.routing_key for m in action.messages],
                         ["fromAgent.agent_1.ip.tun.started"])

    def test_bad_tun_start(self):
        """
        A tun.start that cannot be applied is refused, saying why.
        """
        action = self.core.from_bus(START, b'{"ipv4_host": "banana", "ipv4_netmask": "x", '
                                           b'"ipv6_prefix": "bbbb", "ipv6_host": "1"}', None)
        self.assertIsInstance(action, Refuse)
        self.assertIn("cannot apply tun.start", action.detail)

    def test_router_ready(self):
        """
        The packet router's component.ready is answered with tun.started;
        other components' and malformed ones with nothing.
        """
        ready = keys.COMPONENT_READY
        self.assertIsNone(self.core.from_bus(ready, b'{"component": "tat"}', None))
        self.assertIsNone(self.core.from_bus(ready, b"junk", None))
        action = self.core.from_bus(ready, b'{"component": "packet_router"}', None)
        self.assertIsInstance(action, Publish)
        self.assertEqual([m.routing_key for m in action.messages],
                         ["fromAgent.agent_1.ip.tun.started"])

    def test_unexpected_key(self):
        """
        A message on a key the queue is not bound to is dropped.
        """
        self.assertEqual(self.core.from_bus("toAgent.agent_2.x", b"", None).reason,
                         "unexpected routing key")

    def test_readdressed(self):
        """
        Once the interface has new addresses, the core holds them and
        announces them.
        """
        addresses = make_addresses("10.2.0.9/24", "cccc", "9")
        [message] = self.core.readdressed(addresses).messages
        self.assertIs(self.core.addresses, addresses)
        self.assertEqual(json.loads(message.body)["ipv4_host"], "10.2.0.9")


def routes_body(**fields):
    """
    @return: A routes message for agent_1, from the usual routes changed by
        C{fields}.
    """
    routes = dict(
        router="r1", serial=1, mode="direct",
        observers=["agent_TT"],
        destinations={"agent_2": {"addresses": ["10.2.0.2/32", "bbbb::2/128", "fe80::2/128",
                                                "cccc::/64"], "path": "direct"},
                      "orig_3": {"addresses": ["10.2.0.3/32"], "path": "router"}},
        multicast="direct",
        senders={"agent_2": ["10.2.0.2/32", "bbbb::2/128", "fe80::2/128", "cccc::/64"],
                 "orig_3": ["10.2.0.3/32"]})
    routes.update(fields)
    return json.dumps(routes).encode()


class DirectTestCase(CoreTestCase):
    """
    A core that has routes, agent_1 routing dddd::/64 behind its host.
    """

    def setUp(self):
        CoreTestCase.setUp(self)
        import ipaddress
        self.core = AgentCore("agent_1", default_addresses("agent_1"), self.clock, mtu=1400,
                              prefixes=(ipaddress.ip_network("dddd::/64"),))
        self.reroute = self.core.from_bus("ioppy.routes.agent_1", routes_body(), None)

    def steer_for(self, packet):
        """
        @return: The inboxes the packet goes out copied to (C{None} for the
            router), or the L{Drop}.  Every packet goes out on the agent's
            own ioppytest key, and one sent straight with the mark that keeps
            it from the router.
        """
        action = self.core.from_tun(packet)
        if isinstance(action, Drop):
            return action
        [message] = action.messages
        self.assertEqual(message.routing_key, "fromAgent.agent_1.ip.tun.packet.raw")
        if message.headers is None:
            return None
        headers = dict(message.headers)
        self.assertEqual(headers["ioppy-direct"], "yes")
        return headers["CC"]


class SendingTests(DirectTestCase):
    """
    Packets from the TUN, routed by destination.
    """

    def test_before_routes(self):
        """
        Without routes, every packet goes to the router's key, unchecked, as
        with ioppytest's router.
        """
        core = AgentCore("agent_1", default_addresses("agent_1"), self.clock)
        for packet in (ipv4("10.2.0.1", "10.2.0.2"), ipv4("10.2.0.99", "10.9.9.9")):
            [message] = core.from_tun(packet).messages
            self.assertEqual((message.routing_key, message.headers),
                             ("fromAgent.agent_1.ip.tun.packet.raw", None))

    def test_unicast_direct(self):
        """
        A unicast packet goes straight to the inbox of the owner of its
        destination, prefixes included, and to the observers'.
        """
        for packet in (ipv4("10.2.0.1", "10.2.0.2"), ipv6("bbbb::1", "bbbb::2"),
                       ipv6("fe80::1", "fe80::2"), ipv6("dddd::5", "cccc::9")):
            self.assertEqual(self.steer_for(packet), ("ioppy.to.agent_2", "ioppy.to.agent_TT"))

    def test_unicast_through_router(self):
        """
        A packet for an agent the router must carry for goes unsteered.
        """
        self.assertIsNone(self.steer_for(ipv4("10.2.0.1", "10.2.0.3")))

    def test_multicast(self):
        """
        Multicast, broadcast and the subnet's broadcast go to every peer.
        """
        for packet in (ipv6("fe80::1", "ff02::1"), ipv6("::", "ff02::1:ff00:1"),
                       ipv4("10.2.0.1", "224.0.0.251"), ipv4("10.2.0.1", "255.255.255.255"),
                       ipv4("10.2.0.1", "10.2.0.255")):
            self.assertEqual(self.steer_for(packet), ("ioppy.to.agent_2", "ioppy.to.orig_3"))

    def test_multicast_paths(self):
        """
        Multicast goes through the router when the router says so, and
        nowhere with nobody to send it to.
        """
        self.core.from_bus("ioppy.routes.agent_1",
                           routes_body(serial=2, multicast="router"), None)
        self.assertIsNone(self.steer_for(ipv6("fe80::1", "ff02::1")))
        self.core.from_bus("ioppy.routes.agent_1",
                           routes_body(serial=3, multicast="none"), None)
        self.assertEqual(self.steer_for(ipv6("fe80::1", "ff02::1")), Drop("no peer"))

    def test_unknown_destination(self):
        """
        A packet to an address the routes do not name goes to the router,
        which may know an agent that joined since, and drops it otherwise.
        """
        self.assertIsNone(self.steer_for(ipv4("10.2.0.1", "10.2.0.77")))

    def test_bound(self):
        """
        Once the routes' bindings are made, the agent says so, naming the
        router and the serial.
        """
        message = self.core.bound()
        self.assertEqual(message.routing_key, "ioppy.bound.agent_1")
        self.assertEqual(json.loads(message.body)["serial"], 1)

    def test_source_not_ours(self):
        """
        A packet the host sends from an address that is not this agent's is
        dropped; routed prefixes and the unspecified address for duplicate
        detection are this agent's.
        """
        for source in ("10.2.0.3", "10.2.0.77"):
            self.assertEqual(self.steer_for(ipv4(source, "10.2.0.2")).reason,
                             "source not ours")
        self.assertIsInstance(self.steer_for(ipv6("dddd::1", "bbbb::2")), tuple)
        self.assertIsInstance(self.steer_for(ipv6("::", "ff02::1:ff00:1")), tuple)

    def test_headers_kept(self):
        """
        The headers of a destination are made once per routes, not per
        packet (the publisher packs each distinct tuple once).
        """
        first, second = (self.core.from_tun(ipv4("10.2.0.1", "10.2.0.2")).messages[0]
                         for _ in range(2))
        self.assertIs(first.headers, second.headers)

    def test_router_mode(self):
        """
        In the router's mode (a lossy link running) every packet goes
        unsteered, to the router.
        """
        self.core.from_bus("ioppy.routes.agent_1", routes_body(serial=2,
                                                                          mode="router"), None)
        self.assertIsNone(self.steer_for(ipv4("10.2.0.1", "10.2.0.2")))

    def test_not_ip(self):
        """
        A packet too short for its header is dropped.
        """
        self.assertEqual(self.steer_for(b"\x45\x00").reason, "not IP")


class ReceivingTests(DirectTestCase):
    """
    Packets straight from other agents.
    """

    def deliver(self, key, packet):
        return self.core.from_bus(key, packet, wire.RAW)

    def test_from_peer(self):
        """
        A packet from a peer (on the peer's own key, which only the peer may
        publish) with the peer's source address is written, unicast or
        multicast.
        """
        for packet in (ipv4("10.2.0.2", "10.2.0.1"), ipv6("fe80::2", "ff02::1")):
            self.assertEqual(self.deliver("fromAgent.agent_2.ip.tun.packet.raw", packet),
                             WriteToTun(packet))

    def test_spoofed_source(self):
        """
        A packet whose source is not its sender's is dropped, saying so.
        """
        for source in ("10.2.0.3", "10.2.0.1"):
            action = self.deliver("fromAgent.agent_2.ip.tun.packet.raw",
                                  ipv4(source, "10.2.0.1"))
            self.assertEqual(action.reason, "source not sender's")
            self.assertIn(f"its source {source} is not one of agent_2's", action.detail)

    def test_unknown_sender(self):
        """
        A packet from an agent the router did not name is dropped.
        """
        self.assertEqual(self.deliver("fromAgent.agent_9.ip.tun.packet.raw",
                                      ipv4("10.2.0.9", "10.2.0.1")).reason, "unknown sender")

    def test_own_multicast(self):
        """
        The agent's own packets, should the broker bring one back, are
        ignored.
        """
        self.assertIsNone(self.deliver("fromAgent.agent_1.ip.tun.packet.raw",
                                       ipv6("fe80::1", "ff02::1")))

    def test_through_router(self):
        """
        A packet on the agent's own toAgent key came through the router,
        which checked it.
        """
        packet = ipv4("10.2.0.3", "10.2.0.1")
        self.assertEqual(self.deliver(IN, packet), WriteToTun(packet))

    def test_bad_body(self):
        """
        A direct message that carries no packet is dropped as such.
        """
        self.assertEqual(self.core.from_bus("fromAgent.agent_2.ip.tun.packet.raw",
                                            b"junk", wire.JSON).reason, "bad message")


class RoutesTests(DirectTestCase):
    """
    Routes from the router.
    """

    def test_first_routes(self):
        """
        The first routes route the prefixes behind other hosts into the TUN.
        """
        self.assertIsInstance(self.reroute, Reroute)
        self.assertEqual([str(n) for n in self.reroute.add_routes], ["cccc::/64"])
        self.assertIn("2 destinations (1 direct)", self.reroute.summary)

    def test_changed_routes(self):
        """
        New routes remove kernel routes no longer needed.
        """
        action = self.core.from_bus(
            "ioppy.routes.agent_1",
            routes_body(serial=2, destinations={"agent_2": {"addresses": ["10.2.0.2/32"]}}),
            None)
        self.assertEqual(action.add_routes, ())
        self.assertEqual([str(n) for n in action.remove_routes], ["cccc::/64"])

    def test_refused(self):
        """
        Routes that cannot be read (an observer that is no agent's name, an
        address that is none) are refused as a whole; the old routes stay.
        """
        for change in (dict(observers=["a.b"]), dict(observers="agent_TT"),
                       dict(senders={"agent_2": ["x"]})):
            action = self.core.from_bus("ioppy.routes.agent_1",
                                        routes_body(serial=2, **change), None)
            self.assertIsInstance(action, Refuse)
            self.assertEqual(self.core.routes.serial, 1)

    def test_announces_prefixes(self):
        """
        tun.started announces the prefixes routed behind the host.
        """
        started, _ = self.core.announcements()
        self.assertEqual(json.loads(started.body)["ioppy_routes"], ["dddd::/64"])
