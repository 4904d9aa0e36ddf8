"""
Helpers for the tests of L{ioppy_agent.bus}: the broker's side of the login
on a L{BusPump}, and deliveries as bytes.
"""

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from txamqp.connection import Body, Frame, Header, Method

from ioppy_agent.bus.protocol import BusProtocol
from ioppy_agent.bus.spec import load_spec
from ioppy_agent.bus.login import open_session
from ioppy_agent.testing import BusPump
from ioppy_agent.bus.url import parse_amqp_url

URL = parse_amqp_url("amqp://alice:hunter2@broker/interop")


def broker_login(pump, open_ok=True, frame_max=131072):
    """
    Answer the client's login on C{pump} as the broker would.

    @param open_ok: Also accept the vhost.
    @return: The broker's end of channel 0.
    """
    zero = pump.channel(0)
    zero.connection_start(version_major=0, version_minor=9, server_properties={},
                          mechanisms="PLAIN AMQPLAIN", locales="en_US")
    zero.connection_tune(channel_max=2047, frame_max=frame_max, heartbeat=0)
    if open_ok:
        zero.connection_open_ok(known_hosts="")
    return zero


def broker_handshake(pump):
    """
    Answer login, channel open and exchange check on C{pump}.
    """
    broker_login(pump)
    pump.channel(1).channel_open_ok(channel_id="")
    pump.channel(1).exchange_declare_ok()


def method_names(pump, channel):
    """
    @return: The C{class.method} names sent on C{channel}, in order.
    """
    return [f"{f.payload.method.klass.name}.{f.payload.method.name}"
            for f in pump.outgoing.get(channel, []) if f.payload.type == Frame.METHOD]


def delivery_bytes(client, body, content_type="application/json", tag="ioppy-1",
                   key="toAgent.a.x", body_frames=1, channel=1, delivery_tag=1, **more):
    """
    @param more: More properties of the content header, by txamqp's names
        (C{user_id}, C{delivery_mode}, ...).
    @return: A C{basic.deliver} with its header and C{body} in
        C{body_frames} body frames, as the broker would send them.
    """
    basic = client.spec.classes.byname["basic"]
    deliver = basic.methods.byname["deliver"]
    properties = {"content-type": content_type} if content_type else {}
    properties.update({name.replace("_", "-"): value for name, value in more.items()})
    payloads = [Method(deliver, tag, delivery_tag, False, "amq.topic", key),
                Header(basic, 0, len(body), **properties)]
    step = max(1, -(-len(body) // body_frames))
    payloads += [Body(body[i:i + step]) for i in range(0, len(body), step)]
    return b"".join(client._pack_frame(Frame(channel, p)) for p in payloads)


class ProtocolTestCase(SynchronousTestCase):
    """
    A L{BusProtocol} on a L{BusPump}, with a L{Clock}.
    """

    heartbeat = 0

    def setUp(self):
        self.clock = Clock()
        self.client = BusProtocol(load_spec(), URL.vhost, self.heartbeat, self.clock,
                                  {"connection_name": "ioppy-agent agent_1"})
        self.pump = BusPump()
        self.pump.connect(self.client)

    def handshake(self):
        """
        Run the broker's side of login, channel open and exchange check.

        @return: The L{BusSession}.
        """
        d = open_session(self.client, URL, "amq.topic")
        broker_handshake(self.pump)
        return self.successResultOf(d)
