"""
The tunnel end to end: the router and agents run as C{twistd -n} processes
against the real broker, with real TUN interfaces in real namespaces.
"""

from twisted.trial.unittest import SynchronousTestCase

from .harness import Namespace, Program, Uplink, VHost, require

CONNECTED = r"agent \S+ connected to"


class TunnelTestCase(SynchronousTestCase):
    """
    A vhost of the test's own, and helpers to start the programs in it.
    """

    def setUp(self):
        require(self)
        self.vhost = VHost(self.addCleanup)

    def router(self, *args):
        router = Program(self.addCleanup, "ioppy-router", "--url", self.vhost.url, *args)
        router.wait_for("router connected to")
        return router

    def agent(self, name, namespace, *args, wait=CONNECTED):
        agent = Program(self.addCleanup, "ioppy-agent", "--url", self.vhost.url, "--name", name,
                        "--netns", namespace.name, *args)
        if wait:
            agent.wait_for(wait)
        return agent

    def assertPings(self, namespace, address, **kwargs):
        sent, received, output = namespace.ping(address, **kwargs)
        self.assertEqual((sent, received), (sent, sent), output)
        self.assertTrue(sent > 0)

    def assertStops(self, *programs):
        """
        SIGTERM makes each program exit 0 within 5 s.
        """
        for program in programs:
            code, seconds = program.terminate(timeout=5.0)
            self.assertEqual(code, 0, program.text())
            self.assertLess(seconds, 5.0)


class TwoAgentsTests(TunnelTestCase):
    """
    A router and two agents whose TUNs are placed in two namespaces.
    """

    def setUp(self):
        TunnelTestCase.setUp(self)
        self.ns1, self.ns2 = Namespace(self.addCleanup), Namespace(self.addCleanup)
        self.router_program = self.router()
        self.agent1 = self.agent("agent_1", self.ns1)
        self.agent2 = self.agent("agent_2", self.ns2)

    def test_ping_both_ways(self):
        """
        IPv4 and IPv6 pings cross the tunnel both ways with no loss, also at
        1400 bytes; then SIGTERM stops every program with status 0 within 5 s,
        leaving no interface and no queue.
        """
        self.assertPings(self.ns1, "10.2.0.2")
        self.assertPings(self.ns2, "10.2.0.1")
        self.assertPings(self.ns1, "bbbb::2")
        self.assertPings(self.ns2, "bbbb::1")
        # 1372 bytes of ICMP data + 8 (ICMP) + 20 (IPv4) = a 1400-byte packet.
        self.assertPings(self.ns1, "10.2.0.2", size=1372, count=3)
        self.assertEqual(sorted(self.vhost.queues()),
                         ["ioppy.agent.agent_1", "ioppy.agent.agent_2", "ioppy.router"])
        self.assertIn("tun0", self.ns1.links())

        self.assertStops(self.agent1, self.agent2, self.router_program)
        self.assertNotIn("tun0", self.ns1.links())
        self.assertNotIn("tun0", self.ns2.links())
        self.assertEqual(self.vhost.queues(), [])
        self.assertIn("interface tun0 removed", self.agent1.text())
        self.assertIn("final: agent agent_1: out", self.agent1.text())

    def test_duplicate_name_refused(self):
        """
        A second agent_1 is refused with a clear message and exit status 2;
        the first keeps tunnelling.
        """
        ns3 = Namespace(self.addCleanup)
        duplicate = self.agent("agent_1", ns3, wait=None)
        self.assertEqual(duplicate.wait(timeout=15), 2, duplicate.text())
        self.assertIn("an agent named 'agent_1' is already connected", duplicate.text())
        self.assertNotIn("tun0", ns3.links())
        self.assertPings(self.ns1, "10.2.0.2")
        self.assertPings(self.ns2, "bbbb::1")


class AgentInNamespaceTests(TunnelTestCase):
    """
    An agent process running inside its own namespace, reaching the broker
    over a veth pair as a broker user the test creates.
    """

    def test_ping_across(self):
        """
        The agent inside the namespace and one outside ping each other over
        IPv4 and IPv6; its log never shows the password.
        """
        ns1, inside = Namespace(self.addCleanup), Namespace(self.addCleanup)
        uplink = Uplink(self.addCleanup, inside)
        user, password = self.vhost.add_user(self.addCleanup)
        router = self.router()
        agent1 = self.agent("agent_1", ns1)
        agent3 = Program(self.addCleanup, "ioppy-agent", "--name", "agent_3", netns=inside.name,
                         env={"AMQP_URL": f"amqp://{user}:{password}@{uplink.broker}:5672/"
                                          f"{self.vhost.name}"})
        agent3.wait_for(CONNECTED)
        self.assertPings(ns1, "10.2.0.3")
        self.assertPings(inside, "10.2.0.1")
        self.assertPings(ns1, "bbbb::3")
        self.assertPings(inside, "bbbb::1")
        self.assertStops(agent3, agent1, router)
        self.assertIn(f"amqp://{user}:****@", agent3.text())
        self.assertNotIn(password, agent3.text())
        self.assertNotIn("tun0", inside.links())


class WireFormatTests(TunnelTestCase):
    """
    The raw wire format, alone and mixed with JSON.
    """

    def test_raw_and_json_agents(self):
        """
        An agent publishing raw packets and one publishing ioppytest's JSON
        ping each other both ways over IPv4 and IPv6, also at 1400 bytes.
        """
        ns1, ns2 = Namespace(self.addCleanup), Namespace(self.addCleanup)
        router = self.router()
        agent1 = self.agent("agent_1", ns1, "--wire", "raw")
        agent2 = self.agent("agent_2", ns2)
        self.assertPings(ns1, "10.2.0.2")
        self.assertPings(ns2, "bbbb::1")
        self.assertPings(ns1, "10.2.0.2", size=1372, count=3)
        self.assertStops(agent1, agent2, router)
        # The kernel's own first packets (IPv6 router solicitations) may be
        # dropped as 'not connected'; no packet may be refused for its format.
        final = agent2.text().split("final: ")[-1]
        self.assertNotIn("bad message", final)
        self.assertNotIn("unknown content type", final)
