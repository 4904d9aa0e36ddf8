"""
The packet router: it tells each agent its routes, so that the broker
delivers packets straight to their owners, and forwards what cannot go
straight (for original ioppytest agents).

  - L{topology}: topology files (fixed links and observers);
  - L{policy}: routing policies, L{IRoutingPolicy} (fan-out, fixed topology);
  - L{steering}: L{Steering}, the agents known and the routes each gets;
  - L{core}: L{PacketRouter}, what to do with each message (no I/O);
  - L{service}: L{RouterService}, which carries out what the core decides.
"""

from .core import PacketRouter
from .policy import FanOut, FixedTopology, IRoutingPolicy
from .service import BINDINGS, ROUTER_QUEUE, RouterConfig, RouterService
from .topology import BadTopology, Topology, parse_topology, read_topology

__all__ = ["BINDINGS", "ROUTER_QUEUE", "BadTopology", "FanOut", "FixedTopology",
           "IRoutingPolicy", "PacketRouter", "RouterConfig", "RouterService", "Topology",
           "parse_topology", "read_topology"]
