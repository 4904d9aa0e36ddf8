"""
The packet router: it tells each agent its routes, so that the broker
delivers packets straight to their owners, and forwards what cannot go
straight (for original ioppytest agents).

  - L{topology}: topologies (fixed links and observers), parsed (no I/O);
  - L{policy}: routing policies, L{IRoutingPolicy} (fan-out, fixed topology);
  - L{steering}: L{Steering}, the agents known and the routes each gets;
  - L{core}: L{PacketRouter}, what to do with each message (no I/O);
  - L{service}: L{RouterService}, which carries out what the core decides;
  - L{tap}: C{twistd ioppy-router}'s options (which read the topology
    file) and service, L{plugin} the twistd plugin;
  - L{recording}, L{reports}: the record's reach and the agents' reports,
    as the router's log lines and metrics.
"""

from .core import PacketRouter
from .policy import FanOut, FixedTopology, IRoutingPolicy
from .service import BINDINGS, ROUTER_QUEUE, RouterConfig, RouterService
from .tap import read_topology
from .topology import BadTopology, Topology, parse_topology

__all__ = ["BINDINGS", "ROUTER_QUEUE", "BadTopology", "FanOut", "FixedTopology",
           "IRoutingPolicy", "PacketRouter", "RouterConfig", "RouterService", "Topology",
           "parse_topology", "read_topology"]
