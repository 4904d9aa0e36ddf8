"""
Faults inflicted on the real programs: a silent broker, a broker restart, a
closed connection, a killed router, agents coming and going, SIGTERM during
a flood, and a dead broker among several.
"""

import os
import signal
import subprocess
import time

from .. import lab
from ..lab.broker import PrivateNode

from .harness import Namespace, Program, rabbitmqctl_connections
from .test_tunnel import CONNECTED, TunnelTestCase


def ifindex(namespace):
    return int(namespace.run("cat", "/sys/class/net/tun0/ifindex").stdout)


def wait_until_pings(namespace, address, within):
    """
    Ping once a second until a reply comes.

    @return: Seconds it took.
    """
    start = time.monotonic()
    while time.monotonic() - start < within:
        sent, received, _ = namespace.ping(address, count=1)
        if received:
            return time.monotonic() - start
    raise AssertionError(f"no reply from {address} within {within} s")


class FaultTestCase(TunnelTestCase):
    """
    A router and two agents, each agent's TUN in its own namespace.
    """

    def setUp(self):
        TunnelTestCase.setUp(self)
        self.ns1, self.ns2 = Namespace(self.addCleanup), Namespace(self.addCleanup)

    def start_all(self, *agent_args):
        self.router_program = self.router()
        self.agent1 = self.agent("agent_1", self.ns1, *agent_args)
        self.agent2 = self.agent("agent_2", self.ns2, *agent_args)
        self.assertPings(self.ns1, "10.2.0.2", count=2)

    def assertAlive(self, *programs):
        for program in programs:
            self.assertIsNone(program.process.poll(), program.text())


class BrokerFaultTests(FaultTestCase):
    """
    The broker goes away, and comes back.  Tests that stop or reconfigure
    the broker do it to a private node (L{PrivateNode}), never to the
    machine's.
    """

    def private_node(self):
        """
        Move the test onto a RabbitMQ node of its own, which it may stop or
        reconfigure without touching the machine's broker.
        """
        node = PrivateNode(self.addCleanup)
        self.vhost = lab.VHost(self.addCleanup, node)
        return node

    def test_broker_restart(self):
        """
        rabbitmqctl stop_app / start_app on the broker while the agents run:
        no process restarts, the interfaces keep their ifindex, and pings
        come back within 10 s of the broker.
        """
        node = self.private_node()
        self.start_all()
        before = (ifindex(self.ns1), ifindex(self.ns2))
        node.ctl("stop_app", timeout=120)
        try:
            time.sleep(3)
            sent, received, _ = self.ns1.ping("10.2.0.2", count=2)
            self.assertEqual(received, 0)
        finally:
            node.ctl("start_app", timeout=120)
            node.ctl("await_startup", timeout=120)
        self.assertLess(wait_until_pings(self.ns1, "10.2.0.2", within=10), 10)
        self.assertPings(self.ns2, "bbbb::1")
        self.assertAlive(self.agent1, self.agent2, self.router_program)
        self.assertEqual((ifindex(self.ns1), ifindex(self.ns2)), before)
        self.assertIn("lost the connection", self.agent1.text())
        self.assertStops(self.agent1, self.agent2, self.router_program)

    def test_connection_closed(self):
        """
        rabbitmqctl close_connection on the agent's connection: it connects
        again and tunnels on, same process, same interface.
        """
        self.start_all()
        before = ifindex(self.ns1)
        [pid] = [pid for pid, vhost, name in rabbitmqctl_connections()
                 if vhost == self.vhost.name and name == "ioppy-agent agent_1"]
        lab.rabbitmqctl("close_connection", pid, "closed by the fault test")
        self.agent1.wait_for("closed by the fault test")
        self.agent1.wait_for(r"agent agent_1 connected to(.|\n)*agent agent_1 connected to")
        self.assertPings(self.ns1, "10.2.0.2")
        self.assertAlive(self.agent1)
        self.assertEqual(ifindex(self.ns1), before)

    def test_silent_broker(self):
        """
        A broker that stops answering (a proxy that swallows every byte) is
        noticed within twice the heartbeat; the agent reconnects once the
        path works again.
        """
        flag = os.path.abspath(self.mktemp())
        port = lab.free_port()
        argv, env = lab.tool("hold-proxy", str(port), flag)
        proxy = Program(self.addCleanup, None, argv=argv, env=env)
        proxy.wait_for("listening")
        self.addCleanup(lambda: os.path.exists(flag) and os.unlink(flag))
        agent = Program(self.addCleanup, "ioppy-agent", "--url",
                        f"amqp://guest:guest@127.0.0.1:{port}/{self.vhost.name}",
                        "--name", "agent_1", "--netns", self.ns1.name, "--heartbeat", "2")
        agent.wait_for(CONNECTED)
        before = ifindex(self.ns1)
        open(flag, "w").close()
        start = time.monotonic()
        agent.wait_for("lost the connection", timeout=10)
        noticed = time.monotonic() - start
        self.assertLess(noticed, 2 * 2 + 1.0)
        os.unlink(flag)
        agent.wait_for(r"connected to(.|\n)*connected to", timeout=15)
        self.assertEqual(ifindex(self.ns1), before)
        self.assertStops(agent)

    def test_broker_blocks_publishers(self):
        """
        When RabbitMQ blocks publishers (its memory alarm, raised here by
        setting the watermark near zero), the agents drop and count packets
        as 'broker blocked' instead of buffering them, and pass traffic again
        once it unblocks.
        """
        node = self.private_node()
        self.start_all("--stats-interval", "1")
        watermark = node.ctl(
            "eval", "vm_memory_monitor:get_vm_memory_high_watermark().").stdout.strip()
        node.ctl("set_vm_memory_high_watermark", "0.0000001")
        self.agent1.wait_for("the broker blocked publishing")
        self.ns1.ping("10.2.0.2", count=3)
        self.agent1.wait_for(r"broker blocked: [1-9]")
        node.ctl("set_vm_memory_high_watermark", watermark)
        self.agent1.wait_for("the broker unblocked publishing")
        self.assertLess(wait_until_pings(self.ns1, "10.2.0.2", within=10), 10)
        self.assertAlive(self.agent1, self.agent2, self.router_program)

    def test_next_broker(self):
        """
        With several --url, a dead first broker is passed over for the next.
        """
        router = Program(self.addCleanup, "ioppy-router", "--url",
                         f"amqp://guest:guest@127.0.0.1:{lab.free_port()}/{self.vhost.name}",
                         "--url", self.vhost.url)
        router.wait_for("router connected to amqp://guest:\\*\\*\\*\\*@127.0.0.1:5672/")
        self.assertIn("Connection was refused", router.text())
        self.assertStops(router)


class RouterAndAgentFaultTests(FaultTestCase):
    """
    Programs killed, started and stopped around a running tunnel.
    """

    def test_router_killed(self):
        """
        kill -9 on the router leaves the agents running and tunnelling to
        the peers they know; an agent that joins meanwhile reaches nobody
        until a new router starts, learns the others and steers it.
        """
        self.start_all()
        self.router_program.process.send_signal(signal.SIGKILL)
        self.router_program.wait(timeout=10)
        self.assertPings(self.ns1, "10.2.0.2", count=2)
        self.assertAlive(self.agent1, self.agent2)
        ns3 = Namespace(self.addCleanup)
        agent3 = self.agent("agent_3", ns3)
        sent, received, _ = ns3.ping("10.2.0.1", count=2)
        self.assertEqual(received, 0)
        router = self.router()
        self.assertLess(wait_until_pings(ns3, "10.2.0.1", within=10), 10)
        self.assertPings(self.ns2, "bbbb::3")
        self.assertStops(self.agent1, self.agent2, agent3, router)

    def test_standby_router(self):
        """
        A second router on the vhost stands by instead of exiting; when the
        active one is killed it takes over within a few seconds, and an
        agent that joins then gets its routes from it.
        """
        self.start_all()
        standby = Program(self.addCleanup, "ioppy-router", "--url", self.vhost.url)
        standby.wait_for("standing by: another ioppy-router is routing vhost", timeout=30)
        time.sleep(3)
        self.assertAlive(standby)
        self.assertNotIn("took over", standby.text())
        self.router_program.process.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        self.router_program.wait(timeout=10)
        standby.wait_for("router took over, connected to", timeout=10)
        took = time.monotonic() - killed
        print(f"\n  standby router took over {took:.1f} s after kill -9", flush=True)
        self.assertLess(took, 5.0, standby.text())
        ns3 = Namespace(self.addCleanup)
        agent3 = self.agent("agent_3", ns3)
        self.assertLess(wait_until_pings(ns3, "10.2.0.1", within=15), 15)
        self.assertPings(self.ns1, "10.2.0.2", count=2)
        self.assertStops(self.agent1, self.agent2, agent3, standby)

    def test_agents_join_and_leave(self):
        """
        Ten agents join and leave, twice, while two others ping each other:
        no ping between the two is lost.
        """
        self.start_all()
        pinger = subprocess.Popen(
            ["ip", "netns", "exec", self.ns1.name, "ping", "-i", "0.2", "-c", "150", "-W",
             "3", "10.2.0.2"], stdout=subprocess.PIPE, text=True)
        self.addCleanup(lambda: pinger.poll() is None and pinger.kill())
        namespaces = [Namespace(self.addCleanup) for _ in range(10)]
        for _ in range(2):
            churn = [self.agent(f"agent_{11 + i}", ns, wait=None)
                     for i, ns in enumerate(namespaces)]
            for agent in churn:
                agent.wait_for(CONNECTED, timeout=60)
            for agent in churn:
                agent.process.send_signal(signal.SIGTERM)
            for agent in churn:
                self.assertEqual(agent.wait(timeout=10), 0, agent.text())
        output, _ = pinger.communicate(timeout=60)
        self.assertIn("150 packets transmitted, 150 received", output)

    def test_sigterm_during_flood(self):
        """
        SIGTERM while a ping flood crosses the tunnel: the agent exits 0
        within 2 s and leaves no interface or queue.
        """
        self.start_all()
        flood = subprocess.Popen(
            ["ip", "netns", "exec", self.ns1.name, "ping", "-f", "-w", "20", "10.2.0.2"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(lambda: flood.poll() is None and flood.kill())
        time.sleep(2)
        code, seconds = self.agent1.terminate(timeout=5)
        self.assertEqual(code, 0, self.agent1.text())
        self.assertLess(seconds, 2.0)
        flood.kill()
        flood.wait(timeout=10)
        self.assertNotIn("tun0", self.ns1.links())
        self.assertNotIn("ioppy.agent.agent_1", self.vhost.queues())
