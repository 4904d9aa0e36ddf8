"""
ioppy-agent: a VPN client and packet router that carry IP packets over an
AMQP message bus, speaking the ioppytest framework's message format.
"""

__version__ = "0.1.0"
