"""
Tests for L{ioppy_agent.agent.AgentService} with an in-memory TUN, netlink
and bus.
"""

import dataclasses
import json

from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase
from txamqp.client import ChannelClosed
from txamqp.message import Message as AMQPMessage

from ioppy_agent.model import keys, wire
from ioppy_agent.model.addressing import default_addresses
from ioppy_agent.agent import AgentConfig, AgentService, TunInterface
from ioppy_agent.agent.service import HELD_RETRY
from ioppy_agent.bus import BusConfig, QueueHeld, State
from ioppy_agent.bus.spec import load_spec
from ioppy_agent.host.netlink import NetlinkFailure
from ioppy_agent.testing import MemoryLinks, MemoryTunDevice, RecordingConnector, RecordingSession
from ioppy_agent.host.tun import TunError
from ioppy_agent.bus.url import parse_amqp_url

from ..helpers import fixture
from .ip import reply_to

QUEUE = "ioppy.agent.agent_1"
PACKET = bytes(json.loads(fixture("toAgent.agent_2.ip.tun.packet.raw")["body"])["data"])
# What agent_2 sends back: a packet the router forwards to agent_1.
INBOUND = reply_to(PACKET)


class FakeProcess:
    """
    Records what L{ioppy_agent.program.process.ProcessControl} would be asked.
    """

    def __init__(self):
        self.failures = []

    def fail(self, code, message):
        self.failures.append((code, message))


def channel_closed(code, text):
    """
    @return: The L{ChannelClosed} txamqp raises when the broker closes a
        channel with C{code}.
    """
    close = load_spec().classes.byname["channel"].methods.byname["close"]
    return ChannelClosed(AMQPMessage(close, [code, text, 50, 10]))


class AgentTestCase(SynchronousTestCase):
    """
    An agent on fakes.
    """

    netns = None

    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.reactor.advance(1764242400.5)
        self.config = AgentConfig(
            name="agent_1", bus=BusConfig(urls=(parse_amqp_url("amqp://u:secret@h/v"),)),
            addresses=default_addresses("agent_1"), netns=self.netns, mtu=1400)
        self.links = MemoryLinks(namespaces={"ioppy-a"})
        self.devices = []
        self.process = FakeProcess()
        self.agent = AgentService(
            self.reactor, self.config, self.process,
            interface=TunInterface(self.config, open_tun=self._open_tun, links=self.links),
            make_connector=RecordingConnector)
        self.connector = self.agent.connector

    def _open_tun(self, name):
        device = MemoryTunDevice(name.replace("%d", "0"))
        self.devices.append(device)
        return device

    def start(self):
        self.agent.privilegedStartService()
        self.agent.startService()
        return self.devices[-1]

    def connect(self):
        device = self.start()
        session = RecordingSession()
        self.successResultOf(self.connector.connect(session))
        session.published.clear()
        return device, session


class StartTests(AgentTestCase):
    """
    Opening the interface.
    """

    def test_privileged_start_opens(self):
        """
        The TUN is opened and configured in C{privilegedStartService}, before
        privileges are dropped.
        """
        self.agent.privilegedStartService()
        self.assertEqual(len(self.devices), 1)
        name, addresses, mtu, netns = self.links.configured[0]
        self.assertEqual((name, mtu, netns), ("tun0", 1400, None))
        self.assertEqual([str(a) for a in addresses],
                         ["10.2.0.1/24", "bbbb::1/64", "fe80::1/64"])

    def test_prepared_while_privileged(self):
        """
        The bus side loads what it needs from disk in
        C{privilegedStartService}, before twistd drops privileges.
        """
        self.agent.privilegedStartService()
        self.assertTrue(self.connector.prepared)
        self.assertFalse(self.connector.started)

    def test_deliveries_per_read(self):
        """
        The bus hands the agent as many deliveries per reactor turn as the TUN
        port reads packets, so that writing into the TUN never outruns
        reading it.
        """
        from ioppy_agent.host.tun import TunPort
        self.assertEqual(self.connector.options["deliveries_per_read"],
                         TunPort.max_packets_per_read)

    def test_start_opens_if_not_privileged(self):
        """
        Without C{privilegedStartService}, C{startService} opens the TUN,
        starts reading and connects.
        """
        self.agent.startService()
        self.assertEqual(len(self.devices), 1)
        self.assertIn(self.agent.port, self.reactor.getReaders())
        self.assertTrue(self.connector.started)

    def test_opened_once(self):
        """
        Both start hooks together open one device.
        """
        self.start()
        self.assertEqual(len(self.devices), 1)

    def test_open_failure(self):
        """
        A TUN that cannot be opened stops the process with exit status 1 and
        the reason; the bus is never contacted.
        """
        def refuse(name):
            raise TunError("cannot open TUN interface 'tun0': permission denied")

        self.agent._interface._open_tun = refuse
        self.agent.privilegedStartService()
        self.agent.startService()
        self.assertEqual(self.process.failures,
                         [(1, "cannot open TUN interface 'tun0': permission denied")])
        self.assertFalse(self.connector.started)

    def test_configure_failure_closes_device(self):
        """
        If netlink refuses the addresses, the device is closed again and the
        process stops with the reason.
        """
        self.links.fail_with = NetlinkFailure("cannot configure interface 'tun0': busy")
        self.start()
        self.assertTrue(self.devices[0].closed)
        self.assertEqual(self.process.failures[0][0], 1)


class NetnsTests(AgentTestCase):
    """
    With C{--netns}, the interface goes into another namespace.
    """

    netns = "ioppy-a"

    def test_moved_and_renamed(self):
        """
        The device is created under a kernel-chosen name, moved into the
        namespace, renamed there and configured there.
        """
        self.start()
        self.assertEqual(self.links.moved, [("ioppy0", "ioppy-a", "tun0")])
        self.assertEqual(self.links.configured[0][3], "ioppy-a")
        self.assertEqual(self.devices[0].name, "tun0")

    def test_missing_namespace(self):
        """
        A namespace that does not exist is a clear error naming the command
        that creates it.
        """
        self.links.namespaces.clear()
        self.agent.privilegedStartService()
        self.agent.startService()
        code, message = self.process.failures[0]
        self.assertEqual(code, 1)
        self.assertIn("ip netns add ioppy-a", message)
        self.assertEqual(self.devices, [])


class BusTests(AgentTestCase):
    """
    Packets and control messages between the TUN and the bus.
    """

    def test_setup(self):
        """
        On connecting, the agent's queue is bound to its packet keys (from
        the router, and its inbox), tun.start and routes, and consumed, then
        tun.started and component.ready announced.
        """
        self.start()
        session = RecordingSession()
        self.successResultOf(self.connector.connect(session))
        self.assertEqual(session.queues, {QUEUE: ["toAgent.agent_1.ip.tun.packet.raw",
                                                  "ioppy.to.agent_1",
                                                  "toAgent.agent_1.ip.tun.start",
                                                  "ioppy.routes.agent_1",
                                                  "testingtool.component.ready"]})
        self.assertIn(QUEUE, session.consumers)
        keys = [p[0] for p in session.published]
        self.assertEqual(keys, ["fromAgent.agent_1.ip.tun.started",
                                "testingtool.component.ready"])
        started = json.loads(session.published[0][1])
        self.assertEqual((started["ipv4_host"], started["ipv6_host"]), ("10.2.0.1", ":1"))

    def test_duplicate_name(self):
        """
        A queue locked by another connection (405) means another agent has the
        name: the process stops with exit status 2 and a message saying so.
        """
        self.start()
        session = RecordingSession()
        session.locked = True
        self.connector.connect(session)
        code, message = self.process.failures[0]
        self.assertEqual(code, 2)
        self.assertIn("an agent named 'agent_1' is already connected to vhost 'v' on h",
                      message)
        self.assertIs(self.connector.state, State.FAILED)

    def test_own_queue_held_after_a_session(self):
        """
        An agent that had a session, and finds its queue locked on a new
        connection (its old connection's node hangs), does not take that for
        a rival: it says so, connects again soon (the refusal closed the
        channel) and carries on with a queue of this run's own, with the
        same bindings; after that session, the usual queue is tried first
        again.
        """
        self.start()
        self.connector.connect(RecordingSession())
        held = RecordingSession()
        held.locked = {"ioppy.agent.agent_1"}
        with capturedLogs() as events:
            failure = self.failureResultOf(self.connector.connect(held), QueueHeld)
        self.assertEqual(failure.value.retry_after, HELD_RETRY)
        self.assertEqual(self.process.failures, [])
        said = [formatEvent(e) for e in events]
        self.assertTrue(any(s.startswith("queue ioppy.agent.agent_1 is still held by this "
                                          "agent's last connection") for s in said), said)
        own = RecordingSession()
        own.locked = {"ioppy.agent.agent_1"}
        self.successResultOf(self.connector.connect(own))
        (queue,) = own.queues
        self.assertTrue(queue.startswith("ioppy.agent.agent_1."), queue)
        self.assertEqual(own.queues[queue], list(self.agent.core.bindings()))
        self.assertIn(queue, own.consumers)
        self.assertEqual(self.agent.queue, queue)
        free = RecordingSession()
        self.connector.connect(free)
        self.assertEqual(list(free.queues), ["ioppy.agent.agent_1"])

    def test_other_declare_error_retried(self):
        """
        Other channel errors are not fatal: the set-up fails and is retried.
        """
        self.start()
        session = RecordingSession()
        session.declare_error = channel_closed(406, "PRECONDITION_FAILED")
        self.failureResultOf(self.connector.connect(session), ChannelClosed)
        self.assertEqual(self.process.failures, [])

    def test_tun_to_bus(self):
        """
        A packet read from the TUN is published in ioppytest's JSON format
        with the reactor's time.
        """
        device, session = self.connect()
        device.inbound.append(PACKET)
        self.agent.port.doRead()
        [(key, body, content_type)] = session.published
        self.assertEqual((key, content_type),
                         ("fromAgent.agent_1.ip.tun.packet.raw", "application/json"))
        obj = json.loads(body)
        self.assertEqual(bytes(obj["data"]), PACKET)
        self.assertEqual((obj["timestamp"], obj["interface_name"]), (1764242400.5, "tun0"))
        self.assertEqual(self.agent.counters.packets["out"], 1)

    def test_tun_batch_flushed(self):
        """
        After each batch of packets read from the TUN, the session is told to
        send what was published, once.
        """
        device, session = self.connect()
        device.inbound.extend([PACKET, PACKET, PACKET])
        self.agent.port.doRead()
        self.assertEqual(session.flushes, [3])

    def test_tun_while_refused(self):
        """
        While the session refuses to publish (send buffer full, broker
        blocked), packets read are dropped and counted by that reason; then
        publishing resumes.
        """
        device, session = self.connect()
        for reason in ("send buffer full", "broker blocked"):
            session.refused = reason
            device.inbound.append(PACKET)
            self.agent.port.doRead()
        session.refused = None
        device.inbound.append(PACKET)
        self.agent.port.doRead()
        self.assertEqual(dict(self.agent.counters.drops),
                         {"send buffer full": 1, "broker blocked": 1})
        self.assertEqual(len(session.published), 1)

    def test_tun_while_disconnected(self):
        """
        A packet read while there is no session is dropped and counted.
        """
        device = self.start()
        device.inbound.append(PACKET)
        self.agent.port.doRead()
        self.assertEqual(self.agent.counters.drops["not connected"], 1)

    def test_bus_to_tun(self):
        """
        A packet consumed from the bus is written to the TUN as bytes.
        """
        device, session = self.connect()
        session.deliver(QUEUE, "toAgent.agent_1.ip.tun.packet.raw",
                        wire.encode_packet(INBOUND, 1.0))
        self.assertEqual(device.written, [INBOUND])
        self.assertEqual(self.agent.counters.bytes["in"], len(INBOUND))

    def test_bad_messages_dropped(self):
        """
        Malformed packet messages are counted and warned about (at most once
        per interval); good packets between them still arrive.
        """
        device, session = self.connect()
        key = "toAgent.agent_1.ip.tun.packet.raw"
        with capturedLogs() as events:
            for body in (b"junk", b'{"data": [300]}', wire.encode_packet(INBOUND, 1.0),
                         b'{"data": "x"}'):
                session.deliver(QUEUE, key, body)
        self.assertEqual(device.written, [INBOUND])
        self.assertEqual(self.agent.counters.drops["bad message"], 3)
        self.assertEqual(len([e for e in events if "dropped" in formatEvent(e)]), 1)

    def test_not_ip(self):
        """
        Bytes that are not an IPv4 or IPv6 packet are dropped before the TUN.
        """
        device, session = self.connect()
        session.deliver(QUEUE, "toAgent.agent_1.ip.tun.packet.raw",
                        wire.encode_packet(b"\x00junk", 1.0))
        self.assertEqual((device.written, self.agent.counters.drops["not IP"]), ([], 1))

    def test_larger_than_mtu(self):
        """
        A packet longer than the MTU is dropped and counted.
        """
        device, session = self.connect()
        session.deliver(QUEUE, "toAgent.agent_1.ip.tun.packet.raw",
                        wire.encode_packet(b"\x45" + b"x" * 1400, 1.0))
        self.assertEqual(device.written, [])
        self.assertEqual(self.agent.counters.drops["larger than MTU"], 1)

    def test_oversize_counted(self):
        """
        A message too large to be a packet, which the bus skipped, is counted
        as a drop and warned about.
        """
        device, session = self.connect()
        with capturedLogs() as events:
            session.oversize[QUEUE]("toAgent.agent_1.ip.tun.packet.raw", 2000000)
        self.assertEqual(self.agent.counters.drops["too large"], 1)
        self.assertIn("dropped a 2000000-byte message on toAgent.agent_1.ip.tun.packet.raw",
                      formatEvent(events[0]))

    def test_reports_counters(self):
        """
        Every --report-interval seconds while connected the agent reports its
        counters to the router on tun.stats; not before it is connected,
        nor after it stopped.
        """
        self.start()
        self.reactor.advance(5)
        session = RecordingSession()
        self.connector.connect(session)
        session.published.clear()
        self.agent.counters.moved("out", 60)
        self.reactor.advance(5)
        (key, body, _), = [p for p in session.published if p[0].startswith("ioppy.stats.")]
        self.assertEqual(key, "ioppy.stats.agent_1")
        report = json.loads(body)
        self.assertEqual((report["packets"], report["broker"], report["connected_since"]),
                         ({"in": 0, "out": 1}, "h:5672", 1764242405.5))
        self.successResultOf(self.agent.stopService())
        count = len(session.published)
        self.reactor.advance(20)
        self.assertEqual(len(session.published), count)

    def test_router_ready_reannounces(self):
        """
        When the packet router announces itself, the agent publishes
        tun.started again; other components' announcements change nothing.
        """
        device, session = self.connect()
        session.deliver(QUEUE, keys.COMPONENT_READY, b'{"component": "tat"}')
        session.deliver(QUEUE, keys.COMPONENT_READY, b'junk')
        self.assertEqual(session.published, [])
        session.deliver(QUEUE, keys.COMPONENT_READY, b'{"component": "packet_router"}')
        self.assertEqual([p[0] for p in session.published],
                         ["fromAgent.agent_1.ip.tun.started"])

    def test_tun_start(self):
        """
        tun.start re-addresses the interface and is answered with tun.started.
        """
        device, session = self.connect()
        body = json.dumps({"ipv4_host": "10.2.0.9", "ipv4_netmask": "255.255.255.0",
                           "ipv6_prefix": "cccc", "ipv6_host": ":9",
                           "re_route_packets_if": None}).encode()
        session.deliver(QUEUE, "toAgent.agent_1.ip.tun.start", body)
        self.assertEqual([str(a) for a in self.links.configured[-1][1]],
                         ["10.2.0.9/24", "cccc::9/64", "fe80::9/64"])
        [(key, body, _)] = session.published
        self.assertEqual(key, "fromAgent.agent_1.ip.tun.started")
        self.assertEqual(json.loads(body)["ipv4_host"], "10.2.0.9")

    def test_tun_start_reference(self):
        """
        ioppytest's own tun.start message is accepted.
        """
        device, session = self.connect()
        session.deliver(QUEUE, "toAgent.agent_1.ip.tun.start",
                        fixture("toAgent.agent_1.ip.tun.start")["body"].encode())
        self.assertEqual(str(self.agent.addresses.ipv6), "bbbb::1/64")
        self.assertEqual(len(session.published), 1)

    def test_bad_tun_start(self):
        """
        A tun.start that cannot be applied is logged; the addresses stay.
        """
        device, session = self.connect()
        with capturedLogs() as events:
            session.deliver(QUEUE, "toAgent.agent_1.ip.tun.start",
                            b'{"ipv4_host": "banana", "ipv4_netmask": "x", '
                            b'"ipv6_prefix": "bbbb", "ipv6_host": "1"}')
        self.assertEqual(str(self.agent.addresses.ipv4), "10.2.0.1/24")
        self.assertEqual(session.published, [])
        self.assertTrue(any("cannot apply" in formatEvent(e) for e in events))


class StopTests(AgentTestCase):
    """
    The orderly stop.
    """

    def test_stop_order(self):
        """
        Stopping stops reading the TUN, closes the bus session with a
        component.shutdown farewell, then removes the interface.
        """
        device, session = self.connect()
        d = self.agent.stopService()
        self.successResultOf(d)
        self.assertNotIn(self.agent.port, self.reactor.getReaders())
        self.assertEqual([m.routing_key for m in self.connector.stopped_with],
                         ["testingtool.component.shutdown"])
        self.assertEqual(session.published[-1][0], "testingtool.component.shutdown")
        self.assertTrue(device.closed)

    def test_stop_without_interface(self):
        """
        Stopping after a failed start does not raise.
        """
        self.agent._interface._open_tun = lambda name: (_ for _ in ()).throw(TunError("x"))
        self.agent.startService()
        self.successResultOf(self.agent.stopService())


class RawWireTests(AgentTestCase):
    """
    The raw wire format: the body is the packet.
    """

    def setUp(self):
        AgentTestCase.setUp(self)
        self.config = dataclasses.replace(self.config, wire="raw")
        self.agent = AgentService(
            self.reactor, self.config, self.process,
            interface=TunInterface(self.config, open_tun=self._open_tun, links=self.links),
            make_connector=RecordingConnector)
        self.connector = self.agent.connector

    def test_publishes_raw(self):
        """
        With --wire raw, a packet is published as its own bytes, as
        application/octet-stream, with the time it entered the bus in its
        timestamp header (the JSON body carries it itself).
        """
        device, session = self.connect()
        device.inbound.append(PACKET)
        self.agent.port.doRead()
        packets = [m for m in session.published if ".packet." in m[0]]
        self.assertEqual(packets, [("fromAgent.agent_1.ip.tun.packet.raw", PACKET,
                                    "application/octet-stream")])
        self.assertEqual(session.stamps, [self.reactor.seconds()])

    def test_reads_both(self):
        """
        Packets in either format are written to the TUN, so agents with
        different --wire work together.
        """
        device, session = self.connect()
        key = "toAgent.agent_1.ip.tun.packet.raw"
        session.deliver(QUEUE, key, INBOUND, "application/octet-stream")
        session.deliver(QUEUE, key, wire.encode_packet(INBOUND, 1.0), "application/json")
        self.assertEqual(device.written, [INBOUND, INBOUND])


class OperatingTests(AgentTestCase):
    """
    Capture, status and running without privileges.
    """

    def test_pcap_both_directions(self):
        """
        With C{--pcap}, every packet moved either way is captured.
        """
        from .test_pcap import read_pcap
        path = self.mktemp()
        self.config = dataclasses.replace(self.config, pcap=path)
        self.agent = AgentService(
            self.reactor, self.config, self.process,
            interface=TunInterface(self.config, open_tun=self._open_tun, links=self.links),
            make_connector=RecordingConnector)
        self.connector = self.agent.connector
        device, session = self.connect()
        device.inbound.append(b"\x45out")
        self.agent.port.doRead()
        session.deliver(QUEUE, "toAgent.agent_1.ip.tun.packet.raw",
                        wire.encode_packet(INBOUND, 1.0))
        self.successResultOf(self.agent.stopService())
        self.assertEqual([p for _, _, p in read_pcap(path)[1]], [b"\x45out", INBOUND])

    def test_describe(self):
        """
        The summary line and status carry counters, addresses and the broker
        state, without the password.
        """
        device, session = self.connect()
        line, status = self.agent.describe()
        self.assertIn("agent agent_1: out 0 packets", line)
        self.assertIn("broker connected", line)
        self.assertEqual(status["addresses"], ["10.2.0.1/24", "bbbb::1/64", "fe80::1/64"])
        self.assertEqual(status["broker"], "amqp://u:****@h:5672/v")
        self.assertEqual(status["state"], "connected")

    def test_tun_start_without_root(self):
        """
        After twistd dropped privileges, tun.start cannot re-address the
        interface: it is refused with an error saying why, and nothing else
        changes.
        """
        device, session = self.connect()
        self.agent._geteuid = lambda: 65534
        configured = len(self.links.configured)
        with capturedLogs() as events:
            session.deliver(QUEUE, "toAgent.agent_1.ip.tun.start",
                            fixture("toAgent.agent_1.ip.tun.start")["body"].encode())
        self.assertEqual(len(self.links.configured), configured)
        self.assertEqual(session.published, [])
        self.assertIn("needs root", events[0]["log_format"])
        self.assertEqual(events[0]["uid"], 65534)


class RoutesServiceTests(AgentTestCase):
    """
    Routes from the router, carried out.
    """

    ROUTES = json.dumps({
        "router": "r1", "serial": 4, "mode": "direct",
        "destinations": {"agent_2": {"addresses": ["10.2.0.2/32", "cccc::/64"],
                                     "path": "direct"}},
        "multicast": "direct", "senders": {"agent_2": ["10.2.0.2/32", "cccc::/64"]}}).encode()

    def test_bindings_then_bound(self):
        """
        Once the routes are taken, ioppy.bound says so.
        """
        device, session = self.connect()
        with capturedLogs() as events:
            session.deliver(QUEUE, "ioppy.routes.agent_1", self.ROUTES)
        [(key, body, _)] = session.published
        self.assertEqual((key, json.loads(body)["serial"]),
                         ("ioppy.bound.agent_1", 4))
        self.assertIn("routes from the router: 1 destinations (1 direct)",
                      formatEvent(events[0]))

    def test_kernel_routes(self):
        """
        Prefixes behind other agents' hosts are routed into the TUN.
        """
        import ipaddress
        device, session = self.connect()
        with capturedLogs():
            session.deliver(QUEUE, "ioppy.routes.agent_1", self.ROUTES)
        self.assertEqual(self.links.routes["tun0"], {ipaddress.ip_network("cccc::/64")})

    def test_kernel_routes_need_root(self):
        """
        Without root, the prefixes cannot be routed: an error says so, and
        the bindings are made all the same.
        """
        device, session = self.connect()
        self.agent._geteuid = lambda: 65534
        with capturedLogs() as events:
            session.deliver(QUEUE, "ioppy.routes.agent_1", self.ROUTES)
        self.assertNotIn("tun0", self.links.routes)
        self.assertIn("cannot route cccc::/64 into tun0: that needs root",
                      " ".join(formatEvent(e) for e in events))
        self.assertEqual(len(session.queues[QUEUE]), 5)

    def test_reconnect_keeps_routes(self):
        """
        A new session declares the queue again, and says the routes are
        taken.
        """
        device, session = self.connect()
        with capturedLogs():
            session.deliver(QUEUE, "ioppy.routes.agent_1", self.ROUTES)
        again = RecordingSession()
        with capturedLogs():
            self.successResultOf(self.connector.connect(again))
        self.assertIn("ioppy.to.agent_1", again.queues[QUEUE])
        self.assertEqual([k for k, _, _ in again.published][-1],
                         "ioppy.bound.agent_1")
