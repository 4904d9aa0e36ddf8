"""
Tests for L{ioppy_agent.program.metrics}: what the collector reports of a service,
and listening for scrapes.
"""

import socket

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.error import CannotListenError
from twisted.internet.testing import MemoryReactor
from twisted.internet.task import Clock
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from ioppy_agent.model import keys
from ioppy_agent.program import metrics
from ioppy_agent.program.metrics import MetricsConfig, MetricsUnavailable, registry_for
from ioppy_agent.router import ROUTER_QUEUE, RouterConfig, RouterService
from ioppy_agent.router.tap import RouterOptions
from ioppy_agent.testing import RecordingConnector, RecordingSession

from .test_agent import FakeProcess
from .test_router import BUS, started


def samples(registry):
    """
    @return: C{{(name, labels): value}} of a scrape of C{registry}, as
        Prometheus would read it.
    """
    text = generate_latest(registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


class CollectorTests(SynchronousTestCase):
    """
    The figures of a router, read when scraped.
    """

    def setUp(self):
        self.service = RouterService(Clock(), RouterConfig(bus=BUS), FakeProcess(),
                                     make_connector=RecordingConnector)
        self.service.startService()
        self.session = RecordingSession()
        self.registry = registry_for("router", "router", self.service)

    def test_counters_and_state(self):
        """
        Packets, bytes and drops come from the service's counters, with the
        connection's state and the process's figures.
        """
        self.service.counters.moved("in", 100)
        self.service.counters.moved("out", 100)
        self.service.counters.moved("out", 50)
        self.service.counters.dropped("no route")
        self.service.connector.state = metrics.State.CONNECTED
        got = samples(self.registry)
        self.assertEqual(got[("ioppy_packets_total", (("direction", "out"),))], 2)
        self.assertEqual(got[("ioppy_bytes_total", (("direction", "out"),))], 150)
        self.assertEqual(got[("ioppy_drops_total", (("reason", "no route"),))], 1)
        self.assertEqual(got[("ioppy_broker_state", (("state", "connected"),))], 1)
        self.assertEqual(got[("ioppy_broker_state", (("state", "stopped"),))], 0)
        self.assertEqual(got[("ioppy_info", (("name", "router"), ("program", "router"),
                                             ("version", metrics.__version__)))], 1)
        self.assertGreater(got[("process_resident_memory_bytes", ())], 1e6)

    def test_router_agents(self):
        """
        The router reports the agents it knows, whether each takes direct
        delivery, and whether it stands by.
        """
        self.service.connector.connect(self.session)
        self.session.deliver(ROUTER_QUEUE, *started("agent_1"))
        self.session.deliver(ROUTER_QUEUE, *started("agent_2", direct=False))
        got = samples(self.registry)
        self.assertEqual(got[("ioppy_router_agents", ())], 2)
        self.assertEqual(got[("ioppy_router_agent_direct", (("agent", "agent_1"),))], 1)
        self.assertEqual(got[("ioppy_router_agent_direct", (("agent", "agent_2"),))], 0)
        self.assertEqual(got[("ioppy_router_agent_addresses", (("agent", "agent_1"),))], 3)
        self.assertEqual(got[("ioppy_router_standby", ())], 0)

    def test_agent_reports(self):
        """
        The router shows each known agent's own counters, from its last
        tun.stats report; a report from an agent it does not know is not
        kept, and an agent that leaves is forgotten.
        """
        from ioppy_agent.model import control
        from ioppy_agent.program.stats import Counters
        self.service.connector.connect(self.session)
        self.session.deliver(ROUTER_QUEUE, *started("agent_1"))
        counters = Counters()
        for _ in range(3):
            counters.moved("out", 100)
        counters.dropped("source not ours")
        for name in ("agent_1", "agent_9"):
            message = control.stats(name, counters, 200.0, 150.0, "n1:5672")
            self.session.deliver(ROUTER_QUEUE, message.routing_key, message.body)
        got = samples(self.registry)
        self.assertEqual(got[("ioppy_router_agent_packets_total",
                              (("agent", "agent_1"), ("direction", "out")))], 3)
        self.assertEqual(got[("ioppy_router_agent_bytes_total",
                              (("agent", "agent_1"), ("direction", "out")))], 300)
        self.assertEqual(got[("ioppy_router_agent_drops_total",
                              (("agent", "agent_1"), ("reason", "source not ours")))], 1)
        self.assertEqual(got[("ioppy_router_agent_connected_since_seconds",
                              (("agent", "agent_1"),))], 150.0)
        self.assertNotIn(("ioppy_router_agent_packets_total",
                          (("agent", "agent_9"), ("direction", "out"))), got)
        self.session.deliver(ROUTER_QUEUE, keys.COMPONENT_SHUTDOWN,
                             b'{"component": "agent_1"}')
        self.assertEqual(self.service.router.reports, {})


class RefusingReactor(MemoryReactor):
    def listenTCP(self, port, factory, backlog=50, interface=""):
        raise CannotListenError(interface, port, socket.error(98, "Address already in use"))


class ListenTests(SynchronousTestCase):
    """
    L{metrics.listen} and the services' use of it.
    """

    def test_listens_on_loopback(self):
        """
        By default the metrics are served on 127.0.0.1 only.
        """
        reactor = MemoryReactor()
        metrics.listen(reactor, MetricsConfig(9100), CollectorRegistry())
        ((port, _, _, interface),) = reactor.tcpServers
        self.assertEqual((port, interface), (9100, "127.0.0.1"))

    def test_port_taken(self):
        """
        A port that cannot be listened on stops the program with exit
        status 1 and the reason.
        """
        process = FakeProcess()
        service = RouterService(RefusingReactor(), RouterConfig(bus=BUS,
                                                                metrics=MetricsConfig(9100)),
                                process, make_connector=RecordingConnector)
        service.privilegedStartService()
        service.startService()
        ((code, message),) = process.failures
        self.assertEqual(code, 1)
        self.assertIn("--metrics-port 9100 on 127.0.0.1", message)
        self.assertIn("Address already in use", message)
        self.assertRaises(MetricsUnavailable, metrics.listen, RefusingReactor(),
                          MetricsConfig(9100), None)

    def test_options(self):
        """
        --metrics-port takes a port number, --metrics-address an IP address.
        """
        options = RouterOptions()
        options.parseOptions(["--metrics-port", "9101", "--metrics-address", "::1"])
        self.assertEqual(options["metrics"], MetricsConfig(9101, "::1"))
        options = RouterOptions()
        options.parseOptions([])
        self.assertEqual(options["metrics"], MetricsConfig())
        for args in (["--metrics-port", "x"], ["--metrics-port", "70000"],
                     ["--metrics-port", "9100", "--metrics-address", "localhost"]):
            self.assertRaises(usage.UsageError, RouterOptions().parseOptions, args)
