"""
The tunnel on a three-node RabbitMQ cluster the test starts (its own node
names, ports, data and log directories; the machine's broker is never
touched), with the router and each agent connected to a different node,
while nodes die, restart and hang.  Each gap is measured and printed.
"""

import signal
import time

from .. import lab
from ..lab.broker import Cluster

from .harness import Namespace, Program
from .test_faults import ifindex, wait_until_pings
from .test_tunnel import TunnelTestCase

# Which node each program tries first: router on node 2, agent_1 on node 0,
# agent_2 on node 1, each going round the others after.
ROUTER_ORDER, AGENT1_ORDER, AGENT2_ORDER = (2, 0, 1), (0, 1, 2), (1, 2, 0)


def addresses(namespace):
    return sorted(namespace.run("ip", "-o", "addr", "show", "dev", "tun0").stdout.split()[3::4])


class ClusterTests(TunnelTestCase):
    """
    A router and two agents spread over a three-node cluster.
    """

    def setUp(self):
        TunnelTestCase.setUp(self)
        self.cluster = Cluster(self.addCleanup)
        self.vhost = lab.VHost(self.addCleanup, self.cluster.nodes[0])
        self.ns1, self.ns2 = Namespace(self.addCleanup), Namespace(self.addCleanup)

    def start_all(self, *agent_args):
        name = self.vhost.name
        self.router_program = Program(self.addCleanup, "ioppy-router",
                                      *self.cluster.urls(name, ROUTER_ORDER))
        self.router_program.wait_for("router connected to", timeout=30)
        self.agent1 = self.agent("agent_1", self.ns1, *self.cluster.urls(name, AGENT1_ORDER),
                                 *agent_args)
        self.agent2 = self.agent("agent_2", self.ns2, *self.cluster.urls(name, AGENT2_ORDER),
                                 *agent_args)
        self.wait_direct()
        for ns, address in ((self.ns1, "10.2.0.2"), (self.ns2, "10.2.0.1"),
                            (self.ns1, "bbbb::2"), (self.ns2, "bbbb::1")):
            self.assertPings(ns, address, count=3)
        self.interfaces = [(ifindex(ns), addresses(ns)) for ns in (self.ns1, self.ns2)]

    def agent(self, name, namespace, *args, wait=r"agent \S+ connected to"):
        agent = Program(self.addCleanup, "ioppy-agent", "--name", name, "--netns",
                        namespace.name, *args)
        agent.wait_for(wait, timeout=30)
        return agent

    def wait_direct(self):
        for agent in (self.agent1, self.agent2):
            agent.wait_for(r"routes from the router: 1 destinations \(1 direct\)", timeout=30)

    def assertSameInterfaces(self):
        self.assertEqual([(ifindex(ns), addresses(ns)) for ns in (self.ns1, self.ns2)],
                         self.interfaces)

    def gap(self, what, since, namespace, address, within):
        """
        Ping C{address} until it answers; print and return the seconds since
        C{since}.
        """
        wait_until_pings(namespace, address, within=within)
        seconds = time.monotonic() - since
        print(f"\n  {what}: pings through again {seconds:.1f} s after", flush=True)
        self.assertLess(seconds, within)
        return seconds

    def test_nodes_die(self):
        """
        Packets cross nodes both ways; agent_1's node is killed hard: agent_1
        is back within 10 s with the same TUN, and agent_2, whose node lives,
        never loses its connection; then the router's node is killed: the
        router reconnects, and the session goes on on the last node.
        """
        self.start_all()
        nodes = self.cluster.nodes
        nodes[AGENT1_ORDER[0]].signal(signal.SIGKILL)
        killed = time.monotonic()
        self.gap("agent_1's node killed", killed, self.ns1, "10.2.0.2", within=10)
        self.assertPings(self.ns2, "bbbb::1", count=3)
        self.assertSameInterfaces()
        nodes[ROUTER_ORDER[0]].signal(signal.SIGKILL)
        killed = time.monotonic()
        self.router_program.wait_for(r"lost the connection", timeout=10)
        self.router_program.wait_for(r"router connected to", timeout=15)
        print(f"\n  router's node killed: router connected again "
              f"{time.monotonic() - killed:.1f} s after", flush=True)
        self.gap("router's node killed", killed, self.ns1, "10.2.0.2", within=10)
        self.assertPings(self.ns2, "10.2.0.1", count=3)
        self.assertPings(self.ns1, "bbbb::2", count=3)
        self.assertNotIn("lost the connection", self.agent2.text())
        self.assertSameInterfaces()
        self.assertStops(self.agent1, self.agent2, self.router_program)

    def test_node_restarted_gently(self):
        """
        stop_app on agent_1's node, and start_app later: agent_1 moves to the
        next node and carries packets again within 10 s, with the same TUN.
        """
        self.start_all()
        node = self.cluster.nodes[AGENT1_ORDER[0]]
        node.ctl("stop_app", timeout=120)
        stopped = time.monotonic()
        try:
            self.gap("agent_1's node stopped (stop_app)", stopped, self.ns1, "10.2.0.2",
                     within=10)
        finally:
            node.ctl("start_app", timeout=120)
            node.ctl("await_startup", timeout=120)
        self.assertPings(self.ns2, "bbbb::1", count=3)
        self.assertSameInterfaces()
        self.assertStops(self.agent1, self.agent2, self.router_program)

    def test_node_hangs(self):
        """
        agent_1's node hangs without dying (SIGSTOP): the cluster keeps the
        agent's exclusive queue locked, and the agent, which had a session,
        does not take its own old queue for a rival: it keeps its TUN and
        carries packets again within 15 s (heartbeat 3 s).
        """
        self.start_all("--heartbeat", "3")
        node = self.cluster.nodes[AGENT1_ORDER[0]]
        node.signal(signal.SIGSTOP)
        hung = time.monotonic()
        try:
            self.gap("agent_1's node hung (SIGSTOP)", hung, self.ns1, "10.2.0.2", within=15)
            self.assertPings(self.ns2, "bbbb::1", count=3)
            self.assertIsNone(self.agent1.process.poll(), self.agent1.text())
            self.assertSameInterfaces()
        finally:
            node.signal(signal.SIGCONT)
        self.assertStops(self.agent1, self.agent2, self.router_program)
