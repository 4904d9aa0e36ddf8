"""
Prometheus metrics of either program, in Prometheus' text format, served
by twisted.web on C{--metrics-port} (on loopback unless
C{--metrics-address} says otherwise), at C{/metrics}.

The figures are read when Prometheus scrapes, from what the program keeps
anyway (L{BusService.counters}, the connector's state, the router's
agents): a scrape costs the data path nothing.  prometheus_client does the
registry, the process figures (RSS, CPU, open files) and the exposition.

Metrics (every name starts with C{ioppy_}):

  - C{ioppy_info{program, name, version}}: 1;
  - C{ioppy_packets_total{direction}}, C{ioppy_bytes_total{direction}}:
    moved in and out (the router counts message bodies);
  - C{ioppy_drops_total{reason}}: dropped, by reason;
  - C{ioppy_broker_state{state}}: 1 for the connector's state, 0 for the
    others; C{ioppy_broker_connections_total}: sessions set up since start;
  - the router's C{ioppy_router_standby}, C{ioppy_router_agents}, and per
    agent C{ioppy_router_agent_direct{agent}} (1 when it takes packets
    straight from the broker), C{ioppy_router_agent_addresses{agent}}, and
    the agent's own counters from its last C{tun.stats} report
    (C{ioppy_router_agent_packets_total}, C{_bytes_total}, C{_drops_total},
    C{_report_time_seconds}, C{_connected_since_seconds});
  - C{process_resident_memory_bytes}, C{process_cpu_seconds_total} and the
    other C{process_*} figures of prometheus_client.
"""

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.twisted import MetricsResource
from twisted.web.resource import Resource
from twisted.web.server import Site

from .. import __version__
from ..bus import State
from .listening import CannotServe, ListenConfig, listen_tcp

# Where to serve the metrics (port None: nowhere), and the error when it
# cannot be listened on.
MetricsConfig = ListenConfig
MetricsUnavailable = CannotServe


class BusCollector:
    """
    A prometheus_client collector of one L{BusService}'s figures.
    """

    def __init__(self, program, name, service):
        """
        @param program: C{"agent"} or C{"router"}.
        @param name: The agent's name, or C{"router"}.
        @param service: The L{ioppy_agent.program.service.BusService}; its
            C{extra_metrics()} yields more metric families.
        """
        self._program = program
        self._name = name
        self._service = service

    def collect(self):
        service = self._service
        counters = service.counters
        info = GaugeMetricFamily("ioppy_info", "The program, its name and version.",
                                 labels=["program", "name", "version"])
        info.add_metric([self._program, self._name, __version__], 1)
        yield info
        for metric, what, table in (("packets", "Packets", counters.packets),
                                    ("bytes", "Bytes", counters.bytes)):
            family = CounterMetricFamily(f"ioppy_{metric}", f"{what} moved, by direction.",
                                         labels=["direction"])
            for direction in ("in", "out"):
                family.add_metric([direction], table[direction])
            yield family
        drops = CounterMetricFamily("ioppy_drops", "Packets dropped, by reason.",
                                    labels=["reason"])
        for reason, count in sorted(counters.drops.items()):
            drops.add_metric([reason], count)
        yield drops
        connector = service.connector
        state = GaugeMetricFamily("ioppy_broker_state", "1 for the connection's state.",
                                  labels=["state"])
        for member in State:
            state.add_metric([member.value], 1 if connector.state is member else 0)
        yield state
        yield CounterMetricFamily("ioppy_broker_connections",
                                  "Sessions set up with the broker since start.",
                                  value=connector.sessions)
        yield from service.extra_metrics()


def registry_for(program, name, service):
    """
    @return: A L{CollectorRegistry} with the service's figures and the
        process's.
    """
    registry = CollectorRegistry()
    registry.register(BusCollector(program, name, service))
    registry.register(ProcessCollector(registry=None))
    return registry


def listen(reactor, config, registry):
    """
    Serve C{registry} at C{/metrics} on C{config}'s address and port.

    @return: The listening port.
    @raise MetricsUnavailable: if the port cannot be listened on.
    """
    root = Resource()
    root.putChild(b"metrics", MetricsResource(registry=registry))
    return listen_tcp(reactor, config, Site(root), "metrics")
