"""
Tests for L{ioppy_agent.agent.core.AgentCore}: what the agent decides for
each packet and message, with no I/O and no reactor (a L{Clock} gives the
time stamps).
"""

import json

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from ioppy_agent import wire
from ioppy_agent.actions import Drop, Forward, Publish, Readdress, Refuse, WriteToTun
from ioppy_agent.addressing import default_addresses, make_addresses
from ioppy_agent.agent import AgentCore

from ..helpers import fixture

IN = "toAgent.agent_1.ip.tun.packet.raw"
START = "toAgent.agent_1.ip.tun.start"
PACKET = bytes(json.loads(fixture("toAgent.agent_2.ip.tun.packet.raw")["body"])["data"])


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
        self.assertEqual(self.core.bindings(), (IN, START, "testingtool.component.ready"))

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
        for body, content_type in ((wire.encode_packet(PACKET, 1.0), wire.JSON),
                                   (PACKET, wire.RAW), (wire.encode_packet(PACKET, 1.0), None)):
            self.assertEqual(self.core.from_bus(IN, body, content_type), WriteToTun(PACKET))

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
        ready = wire.COMPONENT_READY
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
