"""
Tests for L{ioppy_agent.tap}: options and service construction.
"""

import os

from twisted.application.service import IServiceCollection
from twisted.internet.testing import MemoryReactorClock
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from ioppy_agent.agent import AgentService
from ioppy_agent.process import ProcessControl
from ioppy_agent.router import RouterService, Topology
from ioppy_agent.tap import (AgentOptions, RouterOptions, make_agent_service,
                             make_router_service)
from ioppy_agent.url import BrokerURL


class EnvTestCase(SynchronousTestCase):
    """
    Keeps C{AMQP_URL} out of the way unless a test sets it.
    """

    def setUp(self):
        old = os.environ.pop("AMQP_URL", None)
        if old is not None:
            self.addCleanup(os.environ.__setitem__, "AMQP_URL", old)
        self.addCleanup(os.environ.pop, "AMQP_URL", None)


def agent(*args):
    options = AgentOptions()
    options.parseOptions(list(args))
    return options


class AgentOptionTests(EnvTestCase):
    """
    C{twistd ioppy-agent} options.
    """

    def test_minimal(self):
        """
        C{--name agent_1} alone gives the documented defaults.
        """
        o = agent("--name", "agent_1")
        self.assertEqual(o["url"], BrokerURL("localhost", 5672, "guest", "guest", "/"))
        self.assertEqual((o["exchange"], o["mtu"], o["tun-name"], o["netns"]),
                         ("amq.topic", 1500, "tun0", None))
        self.assertEqual([str(a) for a in o["addresses"].all()],
                         ["10.2.0.1/24", "bbbb::1/64", "fe80::1/64"])

    def test_everything(self):
        """
        Every option is read and converted.
        """
        o = agent("--url", "amqp://a:b@broker:5673/v", "--name", "agent_7",
                  "--exchange", "ioppy.x", "--ipv4", "192.0.2.7/28", "--ipv6-prefix",
                  "cccc", "--ipv6-host", "77", "--mtu", "1280", "--tun-name", "tun9",
                  "--netns", "ioppy-n1")
        self.assertEqual(o["url"], BrokerURL("broker", 5673, "a", "b", "v"))
        self.assertEqual([str(a) for a in o["addresses"].all()],
                         ["192.0.2.7/28", "cccc::77/64", "fe80::77/64"])
        self.assertEqual((o["exchange"], o["mtu"], o["tun-name"], o["netns"]),
                         ("ioppy.x", 1280, "tun9", "ioppy-n1"))

    def test_url_from_environment(self):
        """
        Without C{--url}, C{AMQP_URL} is used.
        """
        os.environ["AMQP_URL"] = "amqp://e:f@envhost/ev"
        self.assertEqual(agent("--name", "agent_1")["url"].host, "envhost")

    def test_url_option_beats_environment(self):
        """
        C{--url} wins over C{AMQP_URL}.
        """
        os.environ["AMQP_URL"] = "amqp://e:f@envhost/ev"
        self.assertEqual(agent("--name", "agent_1", "--url", "amqp://x:y@opt/")["url"].host,
                         "opt")

    def assertUsage(self, *args, says):
        e = self.assertRaises(usage.UsageError, agent, *args)
        self.assertIn(says, str(e))
        return e

    def test_name_required(self):
        """
        C{--name} is required.
        """
        self.assertUsage(says="--name is required")

    def test_bad_names(self):
        """
        Names with wildcards, dots, nothing or too much are refused.
        """
        for name in ("#", "*", "a.b", "", "x" * 65, "agent 1"):
            self.assertUsage("--name", name, says="letters, digits")

    def test_name_without_number(self):
        """
        A name without a number needs addresses.
        """
        self.assertUsage("--name", "agent_TT", says="--ipv4")

    def test_bad_url(self):
        """
        A bad URL is refused without showing its password.
        """
        e = self.assertUsage("--name", "agent_1", "--url", "ftp://u:hunter2@h/",
                             says="--url")
        self.assertNotIn("hunter2", str(e))

    def test_bad_addresses(self):
        """
        Bad IPv4 and IPv6 values are refused.
        """
        self.assertUsage("--name", "agent_1", "--ipv4", "10.2.0.300", says="--ipv4")
        self.assertUsage("--name", "agent_1", "--ipv6-prefix", "zzzz", says="IPv6")

    def test_bad_mtu(self):
        """
        MTUs that are not numbers or out of range are refused.
        """
        self.assertUsage("--name", "agent_1", "--mtu", "big", says="whole number")
        self.assertUsage("--name", "agent_1", "--mtu", "100", says="576..65535")
        self.assertUsage("--name", "agent_1", "--mtu", "70000", says="576..65535")

    def test_bad_tun_name(self):
        """
        Interface names the kernel cannot take are refused.
        """
        for name in ("x" * 16, "a/b", ""):
            self.assertUsage("--name", "agent_1", "--tun-name", name, says="--tun-name")

    def test_bad_netns(self):
        """
        Namespace names with a slash are refused.
        """
        self.assertUsage("--name", "agent_1", "--netns", "../etc", says="--netns")

    def test_bad_exchange(self):
        """
        Exchange names with spaces or nothing are refused.
        """
        self.assertUsage("--name", "agent_1", "--exchange", "a b", says="--exchange")
        self.assertUsage("--name", "agent_1", "--exchange", "", says="--exchange")


class RouterOptionTests(EnvTestCase):
    """
    C{twistd ioppy-router} options.
    """

    def test_defaults(self):
        """
        No options: the default URL, amq.topic and no topology.
        """
        o = RouterOptions()
        o.parseOptions([])
        self.assertEqual((o["url"].host, o["exchange"], o["topology"]),
                         ("localhost", "amq.topic", None))

    def test_topology(self):
        """
        C{--topology} reads and parses the file.
        """
        path = self.mktemp()
        with open(path, "w") as f:
            f.write('{"links": [["agent_1", "agent_2"]]}')
        o = RouterOptions()
        o.parseOptions(["--topology", path])
        self.assertEqual(o["topology"], Topology(frozenset({("agent_1", "agent_2")})))

    def test_topology_errors(self):
        """
        A missing or malformed topology file is a usage error naming it.
        """
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("{")
        for p in (path, path + ".missing"):
            e = self.assertRaises(usage.UsageError, RouterOptions().parseOptions,
                                  ["--topology", p])
            self.assertIn(p, str(e))


class MakeServiceTests(EnvTestCase):
    """
    C{make_*_service} build services without doing I/O.
    """

    def test_agent(self):
        """
        The agent service comes with a process controller started first.
        """
        reactor = MemoryReactorClock()
        top = make_agent_service(agent("--name", "agent_2"), reactor=reactor)
        children = list(IServiceCollection(top))
        self.assertIsInstance(children[0], ProcessControl)
        self.assertIsInstance(children[1], AgentService)
        self.assertEqual(children[1].config.addresses.ipv4.ip.packed[-1], 2)
        self.assertEqual(reactor.tcpClients, [])

    def test_router(self):
        """
        The router service likewise.
        """
        options = RouterOptions()
        options.parseOptions([])
        top = make_router_service(options, reactor=MemoryReactorClock())
        self.assertIsInstance(list(IServiceCollection(top))[1], RouterService)
