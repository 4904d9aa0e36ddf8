"""
twistd plugins: C{twistd ioppy-agent ...} and C{twistd ioppy-router ...}.
"""

from twisted.application.service import ServiceMaker

ioppy_agent = ServiceMaker(
    "ioppy-agent", "ioppy_agent.plugin_agent",
    "VPN client: a TUN interface carried over AMQP (ioppytest format).",
    "ioppy-agent")

ioppy_router = ServiceMaker(
    "ioppy-router", "ioppy_agent.plugin_router",
    "Packet router for ioppy-agent: forwards packets between agents over AMQP.",
    "ioppy-router")
