"""
Property-based tests: malformed messages pushed through the agent's inbound
path and the router.  Nothing raises, every bad message is counted as a
drop, warnings stay rate-limited, and the good packets sent between the bad
ones all arrive.
"""

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from ioppy_agent.model import keys, wire
from ioppy_agent.model.actions import Drop
from ioppy_agent.router import PacketRouter

from .ip import ipv4
from .test_agent import QUEUE, AgentTestCase
from .test_router import started

EXAMPLES = 10000
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                suppress_health_check=list(HealthCheck))

GOOD = wire.encode_packet(ipv4("10.2.0.1", "10.2.0.2"), 1764242400.5)
# The answer, which the router forwards to agent_1.
GOOD_IN = wire.encode_packet(ipv4("10.2.0.2", "10.2.0.1"), 1764242400.5)

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                      st.text(max_size=20))
json_value = st.recursive(json_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=8), inner, max_size=5)),
    max_leaves=20)
bad_byte = st.one_of(st.integers(max_value=-1), st.integers(min_value=256),
                     st.floats(allow_nan=False), st.text(max_size=3), st.booleans(),
                     st.none(), st.lists(st.integers(0, 255), max_size=2))


def dumps(obj):
    return json.dumps(obj).encode("utf-8")


# Bodies that are not a valid ioppytest packet message.
malformed = st.one_of(
    st.binary(max_size=300).filter(lambda b: not _is_packet(b)),
    json_value.map(dumps).filter(lambda b: not _is_packet(b)),
    st.dictionaries(st.text(max_size=8).filter(lambda k: k != "data"), json_value,
                    max_size=4).map(dumps),
    json_value.filter(lambda v: not isinstance(v, list)).map(lambda v: dumps({"data": v})),
    st.lists(st.integers(0, 255), max_size=40).flatmap(
        lambda good: st.tuples(st.just(good), bad_byte, st.integers(0, len(good)))).map(
        lambda t: dumps({"data": t[0][:t[2]] + [t[1]] + t[0][t[2]:]})),
    st.just(b'{"data": []}'),
)


def _is_packet(body):
    try:
        wire.decode_packet(body)
    except wire.BadMessage:
        return False
    return True


class AgentFuzzTests(AgentTestCase):
    """
    The agent's inbound path.
    """

    @FUZZ
    @given(body=st.one_of(
        malformed.map(lambda b: (b, wire.JSON)),
        st.binary(min_size=1400, max_size=3000).map(
            lambda d: (dumps({"data": [0x45, *d]}), wire.JSON)),
        st.binary(min_size=1, max_size=60).filter(
            lambda d: d[0] >> 4 not in (4, 6)).map(lambda d: (dumps({"data": list(d)}), None)),
        st.tuples(st.just(GOOD_IN), st.text(max_size=30).filter(
            lambda t: t not in (wire.JSON, wire.RAW, ""))),
        st.tuples(st.just(b""), st.just(wire.RAW)),
        st.binary(min_size=1, max_size=60).filter(lambda d: d[0] >> 4 not in (4, 6)).map(
            lambda d: (d, wire.RAW))))
    def test_bad_messages(self, body):
        """
        Malformed bodies, packets larger than the MTU, bytes that are not IP
        and unknown content types are each dropped and counted; the good
        packet sent after each one arrives.
        """
        if not hasattr(self, "device"):
            self.device, self.session = self.connect()
            self.logs = capturedLogs().__enter__()
        body, content_type = body
        drops = sum(self.agent.counters.drops.values())
        written = len(self.device.written)
        self.session.deliver(QUEUE, "toAgent.agent_1.ip.tun.packet.raw", body, content_type)
        self.session.deliver(QUEUE, "toAgent.agent_1.ip.tun.packet.raw", GOOD_IN)
        self.assertEqual(sum(self.agent.counters.drops.values()), drops + 1)
        self.assertEqual(self.device.written[written:], [wire.decode_packet(GOOD_IN)])

    def tearDown(self):
        if hasattr(self, "logs"):
            warnings = [e for e in self.logs if "dropped" in formatEvent(e)]
            # The clock does not move: one warning for the whole run.
            self.assertEqual(len(warnings), 1)
            self.assertGreaterEqual(sum(self.agent.counters.drops.values()), EXAMPLES)


class RouterFuzzTests(SynchronousTestCase):
    """
    The router, which decodes every packet it carries.
    """

    def setUp(self):
        self.router = PacketRouter()
        self.announce()

    def announce(self):
        with capturedLogs():
            for name in ("agent_1", "agent_2"):
                self.router.route(*started(name, direct=False), None)

    @FUZZ
    @given(body=malformed, control=st.sampled_from(
        [keys.COMPONENT_READY, keys.COMPONENT_SHUTDOWN, keys.LOSSY_LINK_START,
         keys.tun_started("agent_1")]))
    def test_bad_messages(self, body, control):
        """
        Malformed packets and control messages are counted and dropped; the
        good packet after each is forwarded; the loss count is not disturbed.
        """
        dropped = self.router.route(keys.packet_from("agent_1"), body, wire.JSON)
        self.assertIsInstance(dropped, Drop)
        self.assertEqual(dropped.reason, "bad message")
        with capturedLogs():
            control_action = self.router.route(control, body, None)
        self.assertIn(type(control_action), (Drop, type(None)))
        self.announce()
        out = self.router.route(keys.packet_from("agent_1"), GOOD, wire.JSON)
        self.assertEqual([(m.routing_key, m.body) for m in out.messages],
                         [(keys.packet_to("agent_2"), GOOD)])
        self.assertEqual(self.router.to_drop, 0)
