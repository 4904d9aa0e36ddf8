"""
twistd plugins: C{twistd ioppy-agent ...} and C{twistd ioppy-router ...}.
"""

from twisted.application.service import ServiceMaker

ioppy_agent = ServiceMaker(
    "ioppy-agent", "ioppy_agent.agent.plugin",
    "VPN client: a TUN interface carried over AMQP (ioppytest format).",
    "ioppy-agent")

ioppy_router = ServiceMaker(
    "ioppy-router", "ioppy_agent.router.plugin",
    "Packet router for ioppy-agent: forwards packets between agents over AMQP.",
    "ioppy-router")
