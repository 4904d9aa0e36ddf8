"""
What the protocol takes from txamqp: the AMQP 0-9-1 spec, loaded from the
file this package ships (txamqp's wheel has none), and the list of txamqp
internals the adapter overrides or calls, which the unit tests check
against the txamqp installed.
"""

import importlib.resources
from functools import lru_cache

from txamqp import spec as txspec

# The txamqp names the adapter (protocol, delegate, testing) overrides or calls.
TXAMQP_INTERNALS = {
    "txamqp.protocol.AMQClient": (
        "dataReceived", "_pack_frame", "_unpack_frame", "frame_received", "send_frame",
        "connectionMade", "connectionLost", "send_init_string", "set_frame_mode",
        "check_heartbeat", "send_heartbeat", "reschedule_check_heartbeat",
        "reschedule_send_heartbeat", "channel", "channelClass", "do_close", "start",
        "MAX_LENGTH", "MAX_UNSEEN_HEARTBEAT"),
    "txamqp.protocol.AMQChannel": ("invoke", "close", "do_close"),
    "txamqp.client.TwistedDelegate": (
        "connection_start", "connection_tune", "connection_close", "channel_close",
        "channel_flow", "close"),
    "txamqp.testing.AMQPump": ("connect", "write", "pump", "channel", "loseConnection",
                               "abortConnection"),
}
# And the attributes each AMQClient sets on itself.
TXAMQP_CLIENT_ATTRIBUTES = ("checkHB", "sendHB", "started", "disconnected", "closed",
                            "heartbeatInterval", "clock", "spec", "delegate")


@lru_cache(maxsize=None)
def load_spec():
    """
    @return: The AMQP 0-9-1 spec shipped in this package (txamqp's wheel has
        none), loaded once.
    """
    ref = importlib.resources.files("ioppy_agent.bus").joinpath("amqp0-9-1.xml")
    return txspec.load_string(ref.read_bytes(), specfilename="amqp0-9-1.xml")
