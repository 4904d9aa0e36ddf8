"""
Operating the programs as daemons and services: daemon mode, privilege
drop, TLS, credentials, errors and exit statuses, stats, status file, pcap,
the original command line and the systemd units.  Each test runs the real
programs.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families
from twisted.trial.unittest import SkipTest

from ioppy_agent import __version__
from ioppy_agent.model import keys

from .. import lab
from ..lab.broker import PrivateNode, TLSListener

from .certs import Authority
from .harness import Namespace, Program, VHost, require
from .test_tunnel import CONNECTED, TunnelTestCase

BIN = os.path.dirname(sys.executable)


class DaemonTests(TunnelTestCase):
    """
    twistd without C{-n}.
    """

    def test_daemons(self):
        """
        Router and two agents run as daemons with their own pidfiles and
        logfiles; C{kill $(cat pidfile)} stops each in order, and the pidfile
        and interface are gone afterwards.
        """
        directory = os.path.abspath(self.mktemp())
        os.mkdir(directory)
        ns1, ns2 = Namespace(self.addCleanup), Namespace(self.addCleanup)
        router = lab.Daemon(self.addCleanup, "ioppy-router", "--url", self.vhost.url,
                            directory=directory)
        self.assertEqual(router.status, 0, router.output)
        lab.wait_for_log(router, "router connected to")
        agents = [lab.Daemon(self.addCleanup, "ioppy-agent", "--url", self.vhost.url,
                             "--name", name, "--netns", ns.name, directory=directory)
                  for name, ns in (("agent_1", ns1), ("agent_2", ns2))]
        for agent in agents:
            self.assertEqual(agent.status, 0, agent.output)
            lab.wait_for_log(agent, CONNECTED)
        self.assertEqual(len({d.pidfile for d in agents + [router]}), 3)
        self.assertPings(ns1, "10.2.0.2")
        for daemon in agents + [router]:
            with open(daemon.pidfile) as f:
                os.kill(int(f.read()), signal.SIGTERM)
            self.assertTrue(daemon.wait_gone(5.0), daemon.text())
            self.assertFalse(os.path.exists(daemon.pidfile))
            self.assertIn("final: ", daemon.text())
        self.assertNotIn("tun0", ns1.links() + ns2.links())
        self.assertEqual(self.vhost.queues(), [])


class PrivilegeDropTests(TunnelTestCase):
    """
    twistd C{--uid=nobody --gid=nogroup}.
    """

    def test_runs_unprivileged(self):
        """
        The TUN is opened as root, then the agent runs as nobody and keeps
        tunnelling; a tun.start it can no longer apply is answered with an
        error, not a crash; SIGTERM still removes the interface.
        """
        ns1, ns2 = Namespace(self.addCleanup), Namespace(self.addCleanup)
        router = self.router()
        agent1 = Program(self.addCleanup, "ioppy-agent", "--url", self.vhost.url, "--name",
                         "agent_1", "--netns", ns1.name,
                         twistd_args=["--uid=nobody", "--gid=nogroup"])
        agent1.wait_for(CONNECTED)
        agent2 = self.agent("agent_2", ns2)
        self.assertEqual(lab.uid_of(agent1.process.pid), 65534)
        self.assertPings(ns1, "10.2.0.2")
        self.assertPings(ns2, "bbbb::1")
        lab.publish(self.vhost.url, keys.tun_start("agent_1"), json.dumps({
            "ipv4_host": "10.2.0.9", "ipv4_netmask": "255.255.255.0",
            "ipv6_prefix": "bbbb", "ipv6_host": "9"}))
        agent1.wait_for("changing addresses needs root")
        self.assertPings(ns2, "10.2.0.1")
        self.assertStops(agent1, agent2, router)
        self.assertNotIn("tun0", ns1.links())


class TLSTests(TunnelTestCase):
    """
    amqps:// against a private RabbitMQ node with a real TLS listener (TLS
    1.3 and 1.2), with certificates the test makes.
    """

    def setUp(self):
        require(self)
        self.dir = os.path.abspath(self.mktemp())
        os.mkdir(self.dir)
        self.ca = Authority(self.dir, "test")
        self.cert, self.key = self.ca.issue("broker", dns_names=["localhost"])

    def start_node(self, client_ca=None):
        self.node = PrivateNode(self.addCleanup,
                                tls=TLSListener(self.cert, self.key, client_ca))
        self.vhost = VHost(self.addCleanup, node=self.node)

    def url(self, host="localhost"):
        return self.node.tls_url(self.vhost.name, host=host)

    def router_exits(self, *args, code=4):
        router = Program(self.addCleanup, "ioppy-router", *args)
        self.assertEqual(router.wait(timeout=20), code, router.text())
        self.assertEqual(router.text().count("connecting to"), 1, "retried")
        return router.text()

    def assertCleanStop(self, *programs):
        """
        SIGTERM makes each program exit 0, and its log holds no traceback.
        """
        self.assertStops(*programs)
        for program in programs:
            self.assertNotIn("Unhandled Error", program.text())
            self.assertNotIn("Traceback", program.text())

    def test_verified(self):
        """
        An agent and the router connect with TLS 1.3, checking the broker
        against --tls-ca, and tunnel with a plain agent; SIGTERM stops each
        with status 0 and no traceback.
        """
        self.start_node()
        ns1, ns2 = Namespace(self.addCleanup), Namespace(self.addCleanup)
        tls = ("--tls-ca", self.ca.cert_path)
        router = Program(self.addCleanup, "ioppy-router", "--url", self.url(), *tls)
        router.wait_for(r"router connected to amqps://guest:\*\*\*\*@localhost")
        agent1 = Program(self.addCleanup, "ioppy-agent", "--url", self.url(), *tls,
                         "--name", "agent_1", "--netns", ns1.name)
        agent1.wait_for(r"agent agent_1 connected to amqps://guest:\*\*\*\*@localhost")
        agent2 = self.agent("agent_2", ns2)
        self.assertPings(ns1, "10.2.0.2")
        self.assertPings(ns2, "bbbb::1")
        listed = self.node.ctl("list_connections", "-p", self.vhost.name, "ssl",
                               "ssl_protocol").stdout.splitlines()
        rows = sorted(tuple(line.split()) for line in listed if line.split()[0] != "ssl")
        self.assertEqual(rows, [("false",), ("true", "tlsv1.3"), ("true", "tlsv1.3")], listed)
        self.assertCleanStop(agent1, agent2, router)

    def test_refused(self):
        """
        A certificate from a CA that is not trusted, from the system's CAs
        only (without --tls-ca), or for another host name stops the program
        with exit status 4 and the reason; nothing falls back to plain TCP.
        """
        self.start_node()
        other = Authority(self.dir, "other")
        self.assertIn("certificate verify failed",
                      self.router_exits("--url", self.url(), "--tls-ca", other.cert_path))
        self.assertIn("certificate verify failed", self.router_exits("--url", self.url()))
        self.assertIn("not for this host",
                      self.router_exits("--url", self.url(host="127.0.0.1"), "--tls-ca",
                                        self.ca.cert_path))

    def test_client_certificate(self):
        """
        A broker that demands a client certificate accepts --tls-cert and
        --tls-key, and refuses a client without one with exit status 4.
        """
        clients = Authority(self.dir, "clients")
        self.start_node(client_ca=clients.cert_path)
        cert, key = clients.issue("router", client=True)
        router = Program(self.addCleanup, "ioppy-router", "--url", self.url(),
                         "--tls-ca", self.ca.cert_path, "--tls-cert", cert, "--tls-key", key)
        router.wait_for("router connected to amqps://")
        self.assertCleanStop(router)
        self.router_exits("--url", self.url(), "--tls-ca", self.ca.cert_path)


class CredentialTests(TunnelTestCase):
    """
    Passwords stay out of ps and logs; refused logins stop at once.
    """

    def setUp(self):
        TunnelTestCase.setUp(self)
        self.user, self.password = self.vhost.add_user(self.addCleanup)
        self.secret_url = (f"amqp://{self.user}:{self.password}@127.0.0.1:5672/"
                           f"{self.vhost.name}")

    def assertHidden(self, program):
        self.assertNotIn(self.password, lab.command_line(program.process.pid))
        self.assertNotIn(self.password, program.text())
        self.assertIn(f"amqp://{self.user}:****@", program.text())

    def test_url_file(self):
        """
        With --url-file the password is in neither ps nor the log.
        """
        path = os.path.abspath(self.mktemp())
        with open(path, "w") as f:
            f.write(self.secret_url + "\n")
        router = Program(self.addCleanup, "ioppy-router", "--url-file", path)
        router.wait_for("router connected to")
        self.assertHidden(router)
        self.assertStops(router)

    def test_environment(self):
        """
        With AMQP_URL the password is in neither ps nor the log.
        """
        router = Program(self.addCleanup, "ioppy-router",
                         env={"AMQP_URL": self.secret_url})
        router.wait_for("router connected to")
        self.assertHidden(router)
        self.assertStops(router)

    def test_wrong_password(self):
        """
        A wrong password stops the program with exit status 3, naming user and
        vhost, after one attempt, and the password is never logged.
        """
        wrong = "Wr0ng-" + self.password
        router = Program(self.addCleanup, "ioppy-router", "--url",
                         f"amqp://{self.user}:{wrong}@127.0.0.1/{self.vhost.name}")
        self.assertEqual(router.wait(timeout=20), 3, router.text())
        log = router.text()
        self.assertIn("wrong user name or password", log)
        self.assertIn(repr(self.user), log)
        self.assertIn(repr(self.vhost.name), log)
        self.assertNotIn(wrong, log)
        self.assertEqual(log.count("connecting to"), 1)

    def test_unknown_vhost(self):
        """
        A vhost that does not exist stops the program with exit status 3.
        """
        router = Program(self.addCleanup, "ioppy-router", "--url",
                         f"amqp://guest:guest@127.0.0.1/{self.vhost.name}-missing")
        self.assertEqual(router.wait(timeout=20), 3, router.text())
        self.assertIn("the broker refused user 'guest'", router.text())

    def test_unreachable_broker(self):
        """
        A broker that cannot be reached is retried with back-off, one line per
        attempt and no traceback; SIGTERM still exits 0.
        """
        router = Program(self.addCleanup, "ioppy-router", "--url",
                         f"amqp://{self.user}:{self.password}@127.0.0.1:{lab.free_port()}/")
        router.wait_for(r"trying again in .*\n(.*\n)*.*trying again in", timeout=15)
        self.assertNotIn("Traceback", router.text())
        self.assertNotIn(self.password, router.text())
        self.assertIn("Connection was refused", router.text())
        self.assertStops(router)


class StartErrorTests(TunnelTestCase):
    """
    Clear errors and exit status 1 when the interface cannot be set up.
    """

    def assertFails(self, *args, says, prefix=(), namespace=None):
        namespace = namespace or Namespace(self.addCleanup)
        agent = Program(self.addCleanup, "ioppy-agent", "--url", self.vhost.url, "--name",
                        "agent_1", "--netns", namespace.name, *args, prefix=prefix)
        self.assertEqual(agent.wait(timeout=20), 1, agent.text())
        self.assertIn(says, agent.text())
        self.assertNotIn("Traceback", agent.text())
        self.assertNotIn("tun0", namespace.links())
        self.assertEqual(self.vhost.queues(), [])

    def test_not_root(self):
        """
        Run as an ordinary user: the message says to use root or
        CAP_NET_ADMIN.
        """
        self.assertFails(says="run as root (sudo) or give the program CAP_NET_ADMIN",
                         prefix=["setpriv", "--reuid=65534", "--regid=65534",
                                 "--clear-groups"])

    def test_no_cap_net_admin(self):
        """
        Root without CAP_NET_ADMIN gets the same advice.
        """
        self.assertFails(says="CAP_NET_ADMIN",
                         prefix=["setpriv", "--bounding-set=-net_admin",
                                 "--inh-caps=-net_admin"])

    def test_no_tun_device(self):
        """
        Without /dev/net/tun (hidden in a mount namespace of the test's own)
        the message gives the mknod command.
        """
        self.assertFails(says="mknod /dev/net/tun c 10 200", prefix=[
            "unshare", "--mount", "--propagation", "private", "sh", "-c",
            'mount -t tmpfs ioppy-test /dev/net && exec "$@"', "sh"])

    def test_missing_namespace(self):
        """
        A namespace that does not exist is named, with the command that makes
        it.
        """
        agent = Program(self.addCleanup, "ioppy-agent", "--url", self.vhost.url, "--name",
                        "agent_1", "--netns", "ioppy-t-missing")
        self.assertEqual(agent.wait(timeout=20), 1, agent.text())
        self.assertIn("ip netns add ioppy-t-missing", agent.text())

    def test_address_in_use(self):
        """
        An address another interface in the namespace already has is refused.
        """
        namespace = Namespace(self.addCleanup)
        namespace.run("ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1")
        namespace.run("ip", "addr", "add", "10.2.0.1/24", "dev", "v0")
        self.assertFails(says="address 10.2.0.1 is already in use on v0",
                         namespace=namespace)


def scrape(port):
    """
    @return: C{{(name, labels): value}} of the metrics served on loopback
        C{port}.
    """
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


class ObservabilityTests(TunnelTestCase):
    """
    Summaries, status files, pcap captures and metrics.
    """

    def test_metrics_scraped(self):
        """
        With --metrics-port, the router and the agents serve Prometheus
        metrics on loopback: what a ping moved, the connection's state, the
        router's agents and the process figures; a port already taken stops
        the program with status 1.
        """
        ns1, ns2 = Namespace(self.addCleanup), Namespace(self.addCleanup)
        ports = {name: lab.free_port() for name in ("router", "agent_1", "agent_2")}
        router = self.router("--metrics-port", str(ports["router"]))
        agent1 = self.agent("agent_1", ns1, "--metrics-port", str(ports["agent_1"]),
                            "--report-interval", "0.5")
        agent2 = self.agent("agent_2", ns2, "--metrics-port", str(ports["agent_2"]),
                            "--report-interval", "0.5")
        agent1.wait_for(r"routes from the router: 1 destinations \(1 direct\)")
        self.assertPings(ns1, "10.2.0.2", count=5)
        one, two, steering = scrape(ports["agent_1"]), scrape(ports["agent_2"]), \
            scrape(ports["router"])
        for name, figures in (("agent_1", one), ("agent_2", two)):
            print(f"\n  {name}: " + ", ".join(
                f"{n}{dict(labels) or ''} {v:g}" for (n, labels), v in sorted(figures.items())
                if n.startswith("ioppy_") or n == "process_resident_memory_bytes"), flush=True)
            self.assertEqual(figures[("ioppy_broker_state", (("state", "connected"),))], 1)
            self.assertGreater(figures[("process_resident_memory_bytes", ())], 10e6)
        self.assertGreaterEqual(one[("ioppy_packets_total", (("direction", "out"),))], 5)
        self.assertGreaterEqual(two[("ioppy_packets_total", (("direction", "in"),))], 5)
        self.assertGreaterEqual(two[("ioppy_packets_total", (("direction", "out"),))], 5)
        # The agents report every 0.5 s: wait (at most 5 s) for a report
        # that counts the pings.
        key = ("ioppy_router_agent_packets_total", (("agent", "agent_1"), ("direction", "out")))
        deadline = time.monotonic() + 5
        while steering.get(key, 0) < 5 and time.monotonic() < deadline:
            time.sleep(0.2)
            steering = scrape(ports["router"])
        print("\n  router: " + ", ".join(
            f"{n}{dict(labels) or ''} {v:g}" for (n, labels), v in sorted(steering.items())
            if n.startswith("ioppy_router")), flush=True)
        self.assertGreaterEqual(steering.get(key, 0), 5)
        self.assertEqual(steering[("ioppy_router_agents", ())], 2)
        self.assertEqual(steering[("ioppy_router_agent_direct", (("agent", "agent_1"),))], 1)
        self.assertEqual(steering[("ioppy_info", (("name", "router"), ("program", "router"),
                                                  ("version", __version__)))], 1)
        taken = Program(self.addCleanup, "ioppy-router", "--url", self.vhost.url,
                        "--metrics-port", str(ports["router"]))
        self.assertEqual(taken.wait(timeout=20), 1, taken.text())
        self.assertIn(f"--metrics-port {ports['router']} on 127.0.0.1", taken.text())
        self.assertStops(agent1, agent2, router)

    def test_stats_status_and_pcap(self):
        """
        The agent logs a summary every --stats-interval, keeps its status file
        and writes every packet both ways to --pcap, which tshark reads while
        the agent runs; the router captures to --pcap-dir.
        """
        tshark = shutil.which("tshark")
        if tshark is None:
            self.fail("tshark is missing: make test installs it")
        directory = os.path.abspath(self.mktemp())
        os.mkdir(directory)
        status = os.path.join(directory, "agent_1.json")
        capture = os.path.join(directory, "agent_1.pcap")
        ns1, ns2 = Namespace(self.addCleanup), Namespace(self.addCleanup)
        router = self.router("--pcap-dir", directory)
        agent1 = self.agent("agent_1", ns1, "--stats-interval", "1", "--status-file", status,
                            "--status-interval", "0.5", "--pcap", capture)
        agent2 = self.agent("agent_2", ns2)
        self.assertPings(ns1, "10.2.0.2", count=3)
        agent1.wait_for(r"agent agent_1: out \d+ packets.*broker connected")
        # The file is rewritten every 0.5 s: wait (at most 5 s) for the
        # rewrite that counts the pings.
        deadline = time.monotonic() + 5
        while True:
            with open(status) as f:
                state = json.load(f)
            if state["packets"]["in"] >= 3 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        self.assertEqual(state["state"], "connected")
        self.assertEqual(state["name"], "agent_1")
        self.assertGreaterEqual(state["packets"]["out"], 3)
        self.assertGreaterEqual(state["packets"]["in"], 3)
        read = subprocess.run([tshark, "-r", capture, "-Y", "icmp"], capture_output=True,
                              text=True, timeout=60)
        self.assertEqual(read.returncode, 0, read.stderr)
        self.assertEqual(read.stdout.count("Echo (ping) request"), 3, read.stdout)
        self.assertEqual(read.stdout.count("Echo (ping) reply"), 3, read.stdout)
        self.assertStops(agent1, agent2, router)
        with open(status) as f:
            self.assertEqual(json.load(f)["state"], "stopped")
        self.assertIn("final: agent agent_1: out", agent1.text())
        routed = subprocess.run(
            [tshark, "-r", os.path.join(directory, self.vhost.name + ".pcap"), "-Y", "icmp"],
            capture_output=True, text=True, timeout=60)
        self.assertEqual(routed.stdout.count("Echo (ping) request"), 3, routed.stdout)


class CompatibilityTests(TunnelTestCase):
    """
    The original agent's command line.
    """

    def test_connect(self):
        """
        C{ioppy-agent connect} with the original options runs the same agent in
        the foreground.
        """
        ns1, ns5 = Namespace(self.addCleanup), Namespace(self.addCleanup)
        router = self.router()
        agent1 = self.agent("agent_1", ns1)
        agent5 = Program(self.addCleanup, None, argv=[
            os.path.join(BIN, "ioppy-agent"), "connect", "--url", self.vhost.url,
            "--name", "agent_x", "--ipv4-address", "10.2.0.5", "--ipv6-prefix", "bbbb",
            "--ipv6-host", "5", "--exchange", "amq.topic", "--force-bootstrap",
            "--netns", ns5.name])
        agent5.wait_for(CONNECTED)
        self.assertPings(ns1, "10.2.0.5")
        self.assertPings(ns5, "bbbb::1")
        self.assertStops(agent5, agent1, router)

    def test_python_m(self):
        """
        C{python -m ioppy_agent connect} is the same command; a bad option is
        reported with exit status 1.
        """
        result = subprocess.run([sys.executable, "-m", "ioppy_agent", "connect", "--name",
                                 "a.b"], capture_output=True, text=True, timeout=60)
        self.assertEqual(result.returncode, 1)
        self.assertIn("agent name 'a.b' is not allowed", result.stderr)


class SystemdTests(TunnelTestCase):
    """
    The systemd units in the repository.
    """

    def setUp(self):
        require(self)

    def test_units_verify(self):
        """
        systemd-analyze verify accepts both units (with ExecStart pointed at
        this installation).
        """
        analyze = shutil.which("systemd-analyze")
        if analyze is None:
            raise SkipTest("systemd-analyze is not installed")
        source = os.path.join(os.path.dirname(__file__), "..", "..", "systemd")
        directory = os.path.abspath(self.mktemp())
        os.mkdir(directory)
        for unit, copy in (("ioppy-agent@.service", "ioppy-agent@agent_1.service"),
                           ("ioppy-router.service", "ioppy-router.service")):
            with open(os.path.join(source, unit)) as f:
                text = f.read().replace("/opt/ioppy-agent/bin/twistd",
                                        os.path.join(BIN, "twistd"))
            with open(os.path.join(directory, copy), "w") as f:
                f.write(text)
            result = subprocess.run([analyze, "verify", os.path.join(directory, copy)],
                                    capture_output=True, text=True, timeout=60)
            self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
