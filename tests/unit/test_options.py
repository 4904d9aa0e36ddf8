"""
Tests for L{ioppy_agent.program.tap}: options and service construction.
"""

import os

from twisted.application.service import IServiceCollection
from twisted.internet.testing import MemoryReactorClock
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from ioppy_agent.agent import AgentService
from ioppy_agent.program.process import ProcessControl
from ioppy_agent.router import RouterService, Topology
from ioppy_agent.agent.tap import AgentOptions, make_agent_service
from ioppy_agent.router.tap import RouterOptions, make_router_service
from ioppy_agent.bus.url import BrokerURL


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


    def test_roll_call(self):
        """
        C{--roll-call} names agents, once per option; the topology's agents
        are called too; a name that cannot be an agent's is a usage error.
        """
        path = self.mktemp()
        with open(path, "w") as f:
            f.write('{"links": [["agent_1", "agent_2"]], "observers": ["agent_TT"]}')
        o = RouterOptions()
        o.parseOptions(["--roll-call", "agent_3", "--roll-call", "agent_4"])
        self.assertEqual(o.config().roll_call, ("agent_3", "agent_4"))
        o = RouterOptions()
        o.parseOptions(["--roll-call", "agent_3", "--topology", path])
        self.assertEqual(o.config().roll_call_names,
                         {"agent_1", "agent_2", "agent_3", "agent_TT"})
        e = self.assertRaises(usage.UsageError, RouterOptions().parseOptions,
                              ["--roll-call", "a.b"])
        self.assertIn("--roll-call", str(e))

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


class OperatingOptionTests(EnvTestCase):
    """
    Options for running the programs as daemons: credentials, TLS, stats,
    status and capture.
    """

    def write(self, text):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_url_file(self):
        """
        C{--url-file} reads one URL per line that is not empty or a comment.
        """
        path = self.write("# broker\n\n  amqp://u:s3cret@filehost/v  \n"
                          "amqp://u:s3cret@second/v\n")
        o = agent("--name", "agent_1", "--url-file", path)
        self.assertEqual(o["url"], BrokerURL("filehost", 5672, "u", "s3cret", "v"))
        self.assertEqual([u.host for u in o["urls"]], ["filehost", "second"])

    def test_several_urls(self):
        """
        C{--url} may be given once per broker; the others become fallbacks.
        """
        o = agent("--name", "agent_1", "--url", "amqp://a:b@n1/v", "-u", "amqp://a:b@n2/v")
        self.assertEqual([u.host for u in o["urls"]], ["n1", "n2"])
        self.assertEqual([u.host for u in o["bus"].urls], ["n1", "n2"])
        self.assertEqual(o["bus"].url.host, "n1")

    def test_url_file_beats_environment(self):
        """
        C{--url-file} wins over C{AMQP_URL}.
        """
        os.environ["AMQP_URL"] = "amqp://e:f@envhost/"
        path = self.write("amqp://u:p@filehost/\n")
        self.assertEqual(agent("--name", "agent_1", "--url-file", path)["url"].host,
                         "filehost")

    def test_url_file_errors(self):
        """
        A missing or empty URL file, or both --url and --url-file, are refused.
        """
        for args, says in ((["--url-file", self.mktemp()], "--url-file"),
                           (["--url-file", self.write("# nothing\n")], "holds no URL"),
                           (["--url", "amqp://h/", "--url-file", self.write("amqp://h/")],
                            "not both")):
            e = self.assertRaises(usage.UsageError, agent, "--name", "agent_1", *args)
            self.assertIn(says, str(e))

    def test_url_file_password_not_shown(self):
        """
        A bad URL read from a file is refused without its password.
        """
        path = self.write("amqp://u:hunter2@h:port/\n")
        e = self.assertRaises(usage.UsageError, agent, "--name", "agent_1", "--url-file", path)
        self.assertNotIn("hunter2", str(e))

    def test_tls_needs_amqps(self):
        """
        TLS options with a plain amqp:// URL are refused.
        """
        e = self.assertRaises(usage.UsageError, agent, "--name", "agent_1",
                              "--tls-ca", "/etc/hosts")
        self.assertIn("needs an amqps:// URL", str(e))

    def test_tls_defaults_to_system_cas(self):
        """
        An amqps:// URL without --tls-ca gets TLS options that verify against
        the system's CAs.
        """
        o = agent("--name", "agent_1", "--url", "amqps://u:p@broker.example/")
        self.assertIsNotNone(o["tls"])
        self.assertEqual(o["url"].port, 5671)

    def test_tls_bad_files(self):
        """
        Missing or non-PEM CA and certificate files are refused, naming them.
        """
        junk = self.write("not a certificate\n")
        for args in (["--tls-ca", junk], ["--tls-ca", junk + ".missing"],
                     ["--tls-cert", junk], ["--tls-key", junk]):
            e = self.assertRaises(usage.UsageError, agent, "--name", "agent_1", "--url",
                                  "amqps://u:p@h/", *args)
            self.assertTrue(junk in str(e) or "--tls-cert" in str(e), str(e))

    def test_intervals(self):
        """
        The intervals are numbers of seconds; 0 turns the summary off, and the
        status interval must be positive.
        """
        o = agent("--name", "agent_1", "--stats-interval", "0", "--status-interval", "2.5")
        self.assertEqual((o["stats-interval"], o["status-interval"]), (0.0, 2.5))
        for args in (["--stats-interval", "-1"], ["--stats-interval", "x"],
                     ["--stats-interval", "inf"], ["--status-interval", "0"]):
            self.assertRaises(usage.UsageError, agent, "--name", "agent_1", *args)

    def test_wire(self):
        """
        --wire is json (the default) or raw.
        """
        self.assertEqual(agent("--name", "agent_1")["wire"], "json")
        self.assertEqual(agent("--name", "agent_1", "--wire", "raw")["wire"], "raw")
        e = self.assertRaises(usage.UsageError, agent, "--name", "agent_1", "--wire", "xml")
        self.assertIn("json or raw", str(e))

    def test_heartbeat(self):
        """
        --heartbeat is whole seconds, 0 to 3600, default 10.
        """
        self.assertEqual(agent("--name", "agent_1")["heartbeat"], 10)
        self.assertEqual(agent("--name", "agent_1", "--heartbeat", "0")["heartbeat"], 0)
        for bad in ("x", "-1", "3601", "1.5"):
            self.assertRaises(usage.UsageError, agent, "--name", "agent_1", "--heartbeat", bad)

    def test_paths(self):
        """
        --status-file and --pcap need an existing directory; --pcap-dir must
        be one.
        """
        missing = os.path.join(self.mktemp(), "x")
        for option in ("--status-file", "--pcap"):
            e = self.assertRaises(usage.UsageError, agent, "--name", "agent_1", option,
                                  missing)
            self.assertIn("does not exist", str(e))
        e = self.assertRaises(usage.UsageError, RouterOptions().parseOptions,
                              ["--pcap-dir", missing])
        self.assertIn("not a directory", str(e))

    def test_settings_reach_configs(self):
        """
        The options end up in the services' configurations.
        """
        directory = os.path.dirname(os.path.abspath(self.mktemp()))
        top = make_agent_service(agent("--name", "agent_1", "--pcap",
                                       os.path.join(directory, "a.pcap"),
                                       "--status-file", os.path.join(directory, "s.json"),
                                       "--stats-interval", "7"),
                                 reactor=MemoryReactorClock())
        config = list(IServiceCollection(top))[1].config
        self.assertEqual((config.report.stats_interval, config.pcap[-6:],
                          config.report.status_file[-6:]), (7.0, "a.pcap", "s.json"))
        options = RouterOptions()
        options.parseOptions(["--url", "amqp://u:p@h/my%2Fvhost", "--pcap-dir", directory])
        top = make_router_service(options, reactor=MemoryReactorClock())
        config = list(IServiceCollection(top))[1].config
        self.assertEqual(config.pcap_path, os.path.join(directory, "my%2Fvhost.pcap"))
