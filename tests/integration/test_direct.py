"""
Direct delivery on the real broker, with the programs run by twistd: one
broker pass per packet, the router only steering; and the compatibility
with ioppytest's sniffer, original agents and ioppytest's router.
"""

import json
import os
import shutil
import signal
import subprocess
import time

from ioppy_agent.model import keys, wire

from .. import lab
from ..lab.packets import echo_request
from .harness import Namespace, Program
from .test_tunnel import TunnelTestCase

ROUTED = r"routes from the router: \d+ destinations \((\d+) direct\)"


def status(path, timeout=10.0, until=lambda state: True):
    """
    @return: The status file at C{path} once C{until} holds for it.
    """
    deadline = time.monotonic() + timeout
    state = {}
    while time.monotonic() < deadline:
        try:
            with open(path) as f:
                state = json.load(f)
        except (OSError, ValueError):
            state = {}
        if state and until(state):
            return state
        time.sleep(0.1)
    raise AssertionError(f"status {path} never matched: {state}")


class DirectTestCase(TunnelTestCase):
    """
    Agents and a router, each agent with a status file; helpers to wait
    until direct delivery is in place.
    """

    def setUp(self):
        TunnelTestCase.setUp(self)
        self.dir = os.path.abspath(self.mktemp())
        os.mkdir(self.dir)

    def status_file(self, name):
        return os.path.join(self.dir, name + ".json")

    def agent(self, name, namespace, *args, wait=r"agent \S+ connected to"):
        return TunnelTestCase.agent(self, name, namespace, "--status-file",
                                    self.status_file(name), "--status-interval", "0.2",
                                    "--stats-interval", "0", *args, wait=wait)

    def router(self, *args):
        return TunnelTestCase.router(self, "--status-file", self.status_file("router"),
                                     "--status-interval", "0.2", "--stats-interval", "0", *args)

    def wait_direct(self, agent, peers):
        """
        Wait until C{agent} has routes with C{peers} destinations reached
        straight.
        """
        agent.wait_for(ROUTED.replace(r"(\d+) direct", f"{peers} direct"), timeout=20)

    def sniffer(self, pattern="fromAgent.#", command="sniff"):
        """
        @param command: C{"sniff"} for the packets ioppytest's sniffer keeps,
            C{"listen"} for every message.
        """
        argv, env = lab.tool(command, self.vhost.url, pattern)
        sniffer = Program(self.addCleanup, None, argv=argv, env=env)
        sniffer.wait_for('"event": "listening"')
        return sniffer

    def packets(self, program):
        return [json.loads(line) for line in program.text().splitlines()
                if line.startswith('{"') and '"event": "packet"' in line]


class OneHopTests(DirectTestCase):
    """
    Packets between agents that take direct delivery.
    """

    def setUp(self):
        DirectTestCase.setUp(self)
        self.ns1, self.ns2, self.ns3 = (Namespace(self.addCleanup) for _ in range(3))
        self.router_program = self.router()
        self.agent1 = self.agent("agent_1", self.ns1)
        self.agent2 = self.agent("agent_2", self.ns2)
        self.wait_direct(self.agent1, 1)
        self.wait_direct(self.agent2, 1)

    def test_one_broker_pass(self):
        """
        Pings cross straight between the agents both ways, IPv4 and IPv6: the
        router carries none of them, and a consumer bound to fromAgent.#, as
        ioppytest's sniffer is, sees each packet exactly once.
        """
        sniffer = self.sniffer()
        before = status(self.status_file("router"))["packets"]["in"]
        self.assertPings(self.ns1, "10.2.0.2", count=10, interval=0.05)
        self.assertPings(self.ns2, "bbbb::1", count=5, interval=0.05)
        time.sleep(1)
        self.assertEqual(status(self.status_file("router"))["packets"]["in"], before)
        seen = [p for p in self.packets(sniffer) if p.get("icmp") in (0, 8)]
        self.assertEqual(sorted((p["icmp"], p["seq"]) for p in seen),
                         sorted((kind, seq) for kind in (0, 8) for seq in range(1, 11)))
        self.assertEqual({p["key"] for p in seen},
                         {"fromAgent.agent_1.ip.tun.packet.raw",
                          "fromAgent.agent_2.ip.tun.packet.raw"})

    def test_bystander_gets_nothing(self):
        """
        A third agent's TUN receives none of a unicast exchange between two
        others.
        """
        agent3 = self.agent("agent_3", self.ns3)
        self.wait_direct(agent3, 2)
        self.wait_direct(self.agent1, 2)
        settle = status(self.status_file("agent_3"))["packets"]["in"]
        self.assertPings(self.ns1, "10.2.0.2", count=20, interval=0.05)
        time.sleep(0.5)
        self.assertEqual(status(self.status_file("agent_3"))["packets"]["in"], settle)

    def test_router_killed_mid_ping(self):
        """
        kill -9 of the router while agent_1 pings agent_2 ten times a second,
        and a new router 3 s later: no ping is lost, and the new router
        learns the session and steers it again.
        """
        pinger = subprocess.Popen(
            ["ip", "netns", "exec", self.ns1.name, "ping", "-i", "0.1", "-c", "60", "-W", "2",
             "10.2.0.2"], stdout=subprocess.PIPE, text=True)
        self.addCleanup(lambda: pinger.poll() is None and pinger.kill())
        time.sleep(1)
        self.router_program.process.send_signal(signal.SIGKILL)
        self.router_program.wait(timeout=10)
        time.sleep(3)
        router = TunnelTestCase.router(self)
        router.wait_for("agent agent_2 has")
        output, _ = pinger.communicate(timeout=60)
        self.assertIn("60 packets transmitted, 60 received", output)
        self.assertIn("agent agent_1 has", router.text())

    def test_spoofed_sources_dropped(self):
        """
        A packet from an address that is not the sender's is dropped: by the
        sending agent when its host sends it, by the receiving agent when a
        client with the sender's credentials publishes it; neither reaches a
        TUN.
        """
        self.ns1.run("ip", "addr", "add", "10.2.0.77/32", "dev", "tun0")
        sent, received, _ = self.ns1.ping("10.2.0.2", count=3, source="10.2.0.77")
        self.assertEqual(received, 0)
        status(self.status_file("agent_1"),
               until=lambda s: s["drops"].get("source not ours", 0) >= 3)
        spoofed = echo_request(bytes([10, 2, 0, 3]), bytes([10, 2, 0, 2]))
        lab.publish(self.vhost.url, keys.packet_from("agent_1"),
                    wire.encode_packet(spoofed, 1.0).decode(), copy_to=keys.inbox("agent_2"))
        state = status(self.status_file("agent_2"),
                       until=lambda s: s["drops"].get("source not sender's", 0) >= 1)
        self.assertEqual(state["drops"]["source not sender's"], 1)

    def test_copies_cannot_forge(self):
        """
        RabbitMQ 3.10 routes any key named in CC: agent_1's message on its
        own key, copied to agent_2's routes and tun.start keys, reaches
        agent_2's queue, but on agent_1's key, so agent_2 reads it as a
        packet from agent_1 (and drops it: it is none), not as routes or
        tun.start; its routes and addresses stay.
        """
        forged = json.dumps({"router": "forged", "serial": 99, "mode": "router",
                             "ipv4_address": "10.2.0.202", "ipv6_prefix": "bbbb",
                             "ipv6_host": "202"})
        lab.publish(self.vhost.url, keys.packet_from("agent_1"), forged,
                    copy_to=",".join([keys.routes("agent_2"), keys.tun_start("agent_2")]))
        state = status(self.status_file("agent_2"),
                       until=lambda s: s["drops"].get("bad message", 0) >= 1)
        self.assertEqual(state["drops"]["bad message"], 1)
        self.assertNotIn("forged", self.agent2.text())
        self.assertNotIn("10.2.0.202", self.agent2.text())
        self.assertPings(self.ns1, "10.2.0.2", count=3, interval=0.05)


class CompatibilityTests(DirectTestCase):
    """
    Original ioppytest agents, and ioppytest's own router.
    """

    def original(self, name, address):
        argv, env = lab.tool("original-agent", self.vhost.url, name, address)
        agent = Program(self.addCleanup, None, argv=argv, env=env, interactive=True)
        agent.wait_for('"event": "ready"')
        return agent

    def test_original_agent_both_ways(self):
        """
        An agent that behaves as the original one (only its toAgent key in,
        JSON on its fromAgent key out) and ours reach each other both ways
        through ioppy-router, which carries for the original agent while
        our two agents still go straight; nothing arrives twice.
        """
        ns1, ns2 = Namespace(self.addCleanup), Namespace(self.addCleanup)
        self.router()
        agent1 = self.agent("agent_1", ns1)
        self.agent("agent_2", ns2)
        orig = self.original("orig_3", "10.2.0.3")
        self.wait_direct(agent1, 1)
        sent, received, output = ns1.ping("10.2.0.3", count=5, interval=0.1)
        self.assertEqual(received, 5, output)
        self.assertNotIn("DUP", output)
        orig.send("ping 10.2.0.1 5")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            replies = [json.loads(line) for line in orig.text().splitlines()
                       if '"event": "received"' in line and '"icmp": 0' in line]
            if len(replies) >= 5:
                break
            time.sleep(0.1)
        self.assertEqual(sorted(r["seq"] for r in replies), [1, 2, 3, 4, 5])
        self.assertPings(ns1, "10.2.0.2", count=3)

    def test_behind_ioppytest_router(self):
        """
        Behind a router with ioppytest's fixed table, our agents work as the
        original ones do, with no duplicate.
        """
        argv, env = lab.tool("ioppytest-router", self.vhost.url, "agent_1:agent_2")
        fixed = Program(self.addCleanup, None, argv=argv, env=env)
        fixed.wait_for('"event": "ready"')
        ns1, ns2 = Namespace(self.addCleanup), Namespace(self.addCleanup)
        agent1 = self.agent("agent_1", ns1)
        self.agent("agent_2", ns2)
        sent, received, output = ns1.ping("10.2.0.2", count=5, interval=0.1)
        self.assertEqual(received, 5, output)
        self.assertNotIn("DUP", output)
        sent, received, output = ns2.ping("bbbb::1", count=3, interval=0.1)
        self.assertEqual(received, 3, output)
        self.assertNotIn("routes from the router", agent1.text())


class SteeringFeatureTests(DirectTestCase):
    """
    Topology, observers, the lossy link and routed prefixes with direct
    delivery.
    """

    def test_topology_and_observer(self):
        """
        With a topology, linked agents reach each other, unlinked ones do
        not, and the observer gets a copy of every packet.
        """
        path = os.path.join(self.dir, "topology.json")
        with open(path, "w") as f:
            json.dump({"links": [["agent_1", "agent_2"]], "observers": ["agent_TT"]}, f)
        namespaces = {n: Namespace(self.addCleanup) for n in ("agent_1", "agent_2", "agent_3",
                                                              "agent_TT")}
        self.router("--topology", path)
        agents = {n: self.agent(n, ns, *(["--ipv4", "10.2.0.99/24", "--ipv6-host", "99",
                                          "--pcap", os.path.join(self.dir, "tt.pcap")]
                                         if n == "agent_TT" else []))
                  for n, ns in namespaces.items()}
        self.wait_direct(agents["agent_1"], 2)
        self.assertPings(namespaces["agent_1"], "10.2.0.2", count=4, interval=0.1)
        sent, received, _ = namespaces["agent_1"].ping("10.2.0.3", count=2, interval=0.1)
        self.assertEqual(received, 0)
        time.sleep(0.5)
        read = subprocess.run([shutil.which("tshark"), "-r", os.path.join(self.dir, "tt.pcap"),
                               "-Y", "icmp && ip.dst == 10.2.0.2"],
                              capture_output=True, text=True, timeout=60)
        self.assertEqual(read.stdout.count("Echo (ping) request"), 4, read.stdout)

    def test_lossy_link(self):
        """
        routing.lossy.link.start drops the next N packets of the session,
        then direct delivery resumes.
        """
        ns1, ns2 = Namespace(self.addCleanup), Namespace(self.addCleanup)
        self.router()
        agent1 = self.agent("agent_1", ns1)
        self.agent("agent_2", ns2)
        self.wait_direct(agent1, 1)
        lab.publish(self.vhost.url, keys.LOSSY_LINK_START,
                    json.dumps({"number_of_packets_to_drop": 3}))
        agent1.wait_for("mode router")
        sent, received, output = ns1.ping("10.2.0.2", count=10, interval=0.2)
        self.assertEqual((sent, received), (10, 7), output)
        agent1.wait_for(r"mode router(.|\n)*mode direct", timeout=10)
        self.assertPings(ns1, "10.2.0.2", count=3)

    def test_routed_prefix(self):
        """
        A prefix routed behind agent_1's host (--route) is reached from
        agent_2's host, and agent_1 may answer from it.
        """
        ns1, ns2 = Namespace(self.addCleanup), Namespace(self.addCleanup)
        ns1.run("ip", "-6", "addr", "add", "cccc::1/128", "dev", "lo")
        self.router()
        self.agent("agent_1", ns1, "--route", "cccc::/64")
        agent2 = self.agent("agent_2", ns2)
        self.wait_direct(agent2, 1)
        self.assertIn("cccc::/64", ns2.run("ip", "-6", "route", "show", "dev", "tun0").stdout)
        self.assertPings(ns2, "cccc::1", count=3)
