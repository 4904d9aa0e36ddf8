"""
The agent: a TUN interface carried over the bus.

  - L{core}: L{AgentCore}, what to do with each packet and message (no I/O);
  - L{interface}: opening and addressing the TUN interface;
  - L{service}: L{AgentService}, which carries out what the core decides.
"""

from .core import AgentCore
from .interface import TunInterface
from .service import AgentConfig, AgentService

__all__ = ["AgentConfig", "AgentCore", "AgentService", "TunInterface"]
