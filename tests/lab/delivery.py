"""
The lab's broker-level measure of the ways one publish can reach both a
C{fromAgent.#} consumer (ioppytest's sniffer) and the owner's queue, for
C{scripts/delivery.py}: C{python -m tests.lab.tools delivery URL METHOD
AGENTS SECONDS BROKER_PID}.

It declares, on a vhost of the bench's own, a queue per agent (C{AGENTS}
of them), a sniffer queue bound to C{fromAgent.#} and a router queue, all
bound as C{METHOD} needs, publishes agent_1's 1400-byte packets (JSON) for
agent_2 as fast as the connection takes them for C{SECONDS}, and prints one
JSON line: what each queue got, the rate agent_2 got them at, and the
broker's CPU time per 1000 packets.

  - C{keys}: the one-hop keys of before (C{fromAgent.<s>.ip.tun.packet.to.<r>},
    each receiver bound to C{fromAgent.*.ip.tun.packet.to.<itself>}), which
    ioppytest's sniffer takes for no packet;
  - C{headers}: C{.packet.raw} with an C{ioppy-to} header, a headers
    exchange bound from amq.topic into each agent's own fanout exchange
    (one binding per receiver, and one per receiver and sender for
    multicast), an alternate exchange for the router;
  - C{headers-lean}: the same with one multicast binding per sender;
  - C{cc}: C{.packet.raw} with the C{CC} header naming C{ioppy.to.<r>},
    each receiver bound to that key on amq.topic; the router binds
    C{fromAgent.*.ip.tun.packet.raw}, so it gets every packet;
  - C{cc-marked}, the way chosen (L{ioppy_agent.model.keys}): C{cc}, and the
    C{ioppy-direct} mark, which the router's headers exchange (one
    binding) drops, so that only unmarked packets reach the router;
  - C{peer-keys}: C{.packet.raw}, each agent bound to each peer's key, so
    every peer gets every packet.
"""

import json
import os
import struct

from twisted.internet import defer

from ioppy_agent.model import keys, wire
from ioppy_agent.bus import framing

from .system import cpu_seconds

METHODS = ("keys", "headers", "headers-lean", "cc", "cc-marked", "peer-keys")
CHOSEN = "cc-marked"
TOPIC = "amq.topic"


def _cc_frames(channel, routing_key, cc, body, content_type, frame_max, steered=False):
    """
    @return: The frames of one publish with the C{CC} header (an array of
        long strings), which the project's publisher does not make.
    """
    method = framing.pack_frame(framing.FRAME_METHOD, channel, (
        framing.METHOD_IDS.pack(60, 40) + b"\0\0" + framing.shortstr(TOPIC)
        + framing.shortstr(routing_key) + b"\0"))
    items = b"".join(b"S" + struct.pack("!I", len(k)) + k.encode() for k in cc)
    table = framing.shortstr("CC") + b"A" + struct.pack("!I", len(items)) + items
    if steered:
        mark = keys.DIRECT_VALUE.encode()
        table += (framing.shortstr(keys.DIRECT) + b"S" + struct.pack("!I", len(mark)) + mark)
    properties = (struct.pack("!H", 0x8000 | 0x2000) + framing.shortstr(content_type)
                  + struct.pack("!I", len(table)) + table)
    header = framing.pack_frame(framing.FRAME_HEADER, channel, framing.METHOD_IDS.pack(60, 0)
                                + struct.pack("!Q", len(body)) + properties)
    assert len(body) <= frame_max - framing.OVERHEAD
    return method + header + framing.pack_frame(framing.FRAME_BODY, channel, body)


@defer.inlineCallbacks
def _declare(session, method, agents):
    """
    Declare and bind the queues C{method} needs.

    @return: The queue names, by role.
    """
    names = [f"agent_{n}" for n in range(1, agents + 1)]
    queues = {name: keys.agent_queue(name) for name in names}
    queues["sniffer"], queues["router"] = "ioppy.lab.sniffer", keys.ROUTER_QUEUE
    yield session.declare_queue(queues["sniffer"], ["fromAgent.#"], max_length=1_000_000)
    if method.startswith("headers") or method == "cc-marked":
        yield session.declare_exchange(keys.UNSTEERED, "fanout")
        yield session.declare_exchange(keys.STEER, "headers",
                                       {"alternate-exchange": keys.UNSTEERED})
        yield session.bind_exchange(keys.STEER, TOPIC, keys.any_of(keys.PACKET_FROM))
        yield session.declare_queue(queues["router"], [(keys.UNSTEERED, "")])
        if method == "cc-marked":
            yield session.declare_exchange(keys.SENT_STRAIGHT, "fanout")
            yield session.bind_exchange(keys.SENT_STRAIGHT, keys.STEER, "",
                                        {"x-match": "all", keys.DIRECT: keys.DIRECT_VALUE})
    elif method == "keys":
        yield session.declare_queue(queues["router"], [keys.any_of(keys.PACKET_FROM)])
    else:
        yield session.declare_queue(queues["router"], [keys.any_of(keys.PACKET_FROM)])
    for name in names:
        if method == "keys":
            bindings = [f"fromAgent.*.ip.tun.packet.to.{name}", "fromAgent.*.ip.tun.packet.all"]
        elif method == "headers":
            exchange = f"ioppy.lab.to.{name}"
            yield session.declare_exchange(exchange, "fanout")
            yield session.bind_exchange(exchange, keys.STEER, "",
                                        {"x-match": "all", "ioppy-to": name})
            for sender in names:
                if sender != name:
                    yield session.bind_exchange(exchange, keys.STEER, "",
                                                {"x-match": "all", "ioppy-group": sender})
            bindings = [(exchange, "")]
        elif method == "headers-lean":
            exchange, group = f"ioppy.lab.to.{name}", f"ioppy.lab.group.{name}"
            yield session.declare_exchange(exchange, "fanout")
            yield session.declare_exchange(group, "fanout")
            yield session.bind_exchange(exchange, keys.STEER, "",
                                        {"x-match": "all", "ioppy-to": name})
            yield session.bind_exchange(group, keys.STEER, "",
                                        {"x-match": "all", "ioppy-group": name})
            bindings = [(exchange, "")]
        elif method in ("cc", "cc-marked"):
            bindings = [keys.inbox(name)]
        else:
            bindings = [keys.packet_from(peer) for peer in names if peer != name]
        yield session.declare_queue(queues[name], bindings, max_length=1_000_000)
    return queues


def main(reactor, url, method, agents, seconds, broker_pid):
    from ioppy_agent.bus.url import parse_amqp_url

    from .tools import _connect

    broker, agents, seconds = parse_amqp_url(url), int(agents), float(seconds)
    packet = bytes([0x45]) + bytes(1399)
    body = wire.encode_packet(packet, 1764242400.5)
    got = {}

    @defer.inlineCallbacks
    def go():
        consumer = yield _connect(reactor, broker, TOPIC, "ioppy-lab delivery consumer")
        queues = yield _declare(consumer, method, agents)
        for role, queue in queues.items():
            got[role] = 0
            yield consumer.consume(queue, lambda *_, role=role: got.__setitem__(
                role, got[role] + 1))
        publisher = yield _connect(reactor, broker, TOPIC, "ioppy-lab delivery publisher")
        client = publisher.client
        if method == "keys":
            key, steer = "fromAgent.agent_1.ip.tun.packet.to.agent_2", None
        else:
            key, steer = keys.packet_from("agent_1"), None
        if method.startswith("headers"):
            steer = (("ioppy-to", "agent_2"),)
        cc = (_cc_frames(publisher.channel.id, key, [keys.inbox("agent_2")], body,
                         wire.JSON, client.MAX_LENGTH, method == "cc-marked")
              if method.startswith("cc") else None)
        sent = [0]
        cpu_before = cpu_seconds(int(broker_pid))
        start = reactor.seconds()
        end = start + seconds
        done = defer.Deferred()

        def pump():
            if reactor.seconds() >= end:
                done.callback(None)
                return
            for _ in range(100):
                if publisher.refusal() is not None:
                    reactor.callLater(0.001, pump)
                    return
                if cc is not None:
                    client.write_frames(cc)
                else:
                    publisher.publish(key, body, wire.JSON, headers=steer)
                sent[0] += 1
            reactor.callLater(0, pump)

        pump()
        yield done
        elapsed = reactor.seconds() - start
        # What is still on its way arrives within a second or two.
        for _ in range(50):
            before = dict(got)
            d = defer.Deferred()
            reactor.callLater(0.1, d.callback, None)
            yield d
            if got == before and got["agent_2"] >= sent[0] * 0.99:
                break
        cpu = cpu_seconds(int(broker_pid)) - cpu_before
        yield publisher.close()
        yield consumer.close()
        others = sum(n for role, n in got.items()
                     if role.startswith("agent_") and role != "agent_2")
        print(json.dumps({
            "method": method, "agents": agents, "sent": sent[0], "agent_2": got["agent_2"],
            "other agents": others, "sniffer": got["sniffer"], "router": got["router"],
            "rate": got["agent_2"] / elapsed,
            "broker cpu per 1000": 1000 * cpu / max(got["agent_2"], 1),
            "pid": os.getpid()}), flush=True)

    return go()
