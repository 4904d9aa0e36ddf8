"""
The module twistd's C{ioppy-router} plugin loads.
"""

from .tap import RouterOptions as Options, make_router_service as makeService

__all__ = ["Options", "makeService"]
