"""
The module twistd's C{ioppy-agent} plugin loads.
"""

from .tap import AgentOptions as Options, make_agent_service as makeService

__all__ = ["Options", "makeService"]
