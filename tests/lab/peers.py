"""
Stand-ins for ioppytest's own components, for the compatibility tests, each
run as a process (see L{tests.lab.tools}):

  - C{sniff URL PATTERN}: what ioppytest's sniffer does, binding a pattern
    (C{fromAgent.#}) and printing one JSON line per packet message it would
    keep (a JSON body whose C{interface_name} holds C{tun});
  - C{original-agent URL NAME IPV4}: an agent that behaves as the original
    ioppytest agent does on the bus: it consumes only
    C{toAgent.<name>.ip.tun.packet.raw}, publishes JSON only on
    C{fromAgent.<name>.ip.tun.packet.raw}, announces C{tun.started} without
    this project's fields, and answers the pings sent to its address; it
    also pings an address when its standard input asks (a line
    C{ping ADDRESS COUNT});
  - C{ioppytest-router URL A:B ...}: a router with a fixed table, as
    ioppytest's: for each pair, C{fromAgent.A.ip.tun.packet.raw} to
    C{toAgent.B.ip.tun.packet.raw} and back.
"""

import ipaddress
import json
import os
import struct
import sys

from twisted.internet import defer, stdio
from twisted.protocols.basic import LineReceiver

from .packets import checksum


def say(event, **fields):
    print(json.dumps(dict(fields, event=event)), flush=True)


def _connect(reactor, url, name):
    from ioppy_agent.bus.url import parse_amqp_url

    from .tools import _connect as connect
    return connect(reactor, parse_amqp_url(url), "amq.topic", name)


def _packet(body, content_type):
    from ioppy_agent.model import wire
    try:
        return wire.packet_of(body, content_type)
    except wire.BadMessage:
        return None


def describe(packet):
    """
    @return: The version, addresses and, for ICMP echo, type and sequence
        of C{packet}, as a dict.
    """
    version = packet[0] >> 4
    if version == 4:
        start = (packet[0] & 15) * 4
        found = dict(src=str(ipaddress.ip_address(packet[12:16])),
                     dst=str(ipaddress.ip_address(packet[16:20])))
        if packet[9] == 1 and len(packet) >= start + 8:
            found.update(icmp=packet[start], seq=struct.unpack("!H", packet[start + 6:start + 8])[0])
        return found
    return dict(src=str(ipaddress.ip_address(packet[8:24])),
                dst=str(ipaddress.ip_address(packet[24:40])))


def sniff(reactor, url, pattern):
    """
    Print each message on C{pattern} that ioppytest's sniffer would keep.
    """
    @defer.inlineCallbacks
    def go():
        session = yield _connect(reactor, url, "ioppy-lab sniffer")
        queue = f"ioppy.lab.sniff.{os.getpid()}"

        def got(key, body, content_type, user_id=None):
            try:
                obj = json.loads(body)
            except ValueError:
                return
            if not isinstance(obj, dict) or "tun" not in str(obj.get("interface_name", "")):
                return
            packet = _packet(body, content_type)
            if packet is not None:
                say("packet", key=key, **describe(packet))

        yield session.declare_queue(queue, [pattern], max_length=100000)
        yield session.consume(queue, got)
        say("listening")
        yield defer.Deferred()

    return go()


def listen(reactor, url, pattern):
    """
    Print the key, time and start of the body of every message on C{pattern}.
    """
    @defer.inlineCallbacks
    def go():
        session = yield _connect(reactor, url, "ioppy-lab listener")
        queue = f"ioppy.lab.listen.{os.getpid()}"

        def got(key, body, content_type, user_id=None):
            say("message", key=key, time=reactor.seconds(),
                body=(body if isinstance(body, bytes) else str(body).encode())[:400]
                .decode("utf-8", "replace"))

        yield session.declare_queue(queue, [pattern], max_length=100000)
        yield session.consume(queue, got)
        say("listening")
        yield defer.Deferred()

    return go()


def echo(request, source, destination, kind):
    """
    @return: An IPv4 ICMP echo (C{kind} 8) or echo reply (0) from C{source}
        to C{destination} with the identifier, sequence and data of
        C{request}'s ICMP part.
    """
    icmp = bytes([kind, 0, 0, 0]) + request[4:]
    icmp = icmp[:2] + struct.pack("!H", checksum(icmp)) + icmp[4:]
    head = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), 0, 0, 64, 1, 0,
                       ipaddress.IPv4Address(source).packed,
                       ipaddress.IPv4Address(destination).packed)
    return head[:10] + struct.pack("!H", checksum(head)) + head[12:] + icmp


class _Commands(LineReceiver):
    delimiter = b"\n"

    def __init__(self, handler):
        self.handler = handler

    def lineReceived(self, line):
        self.handler(line.decode("utf-8", "replace").split())


def original_agent(reactor, url, name, address):
    """
    Behave as the original ioppytest agent does on the bus.
    """
    from ioppy_agent.model import control, keys, wire

    @defer.inlineCallbacks
    def go():
        session = yield _connect(reactor, url, f"ioppy-lab original {name}")
        queue = f"ioppy.lab.original.{name}"
        out_key = keys.packet_from(name)

        def publish(packet):
            session.publish(out_key, wire.encode_packet(packet, reactor.seconds()), wire.JSON)
            session.flush()

        def got(key, body, content_type, user_id=None):
            packet = _packet(body, content_type)
            if packet is None or len(packet) < 28 or packet[0] != 0x45 or packet[9] != 1:
                return
            seen = describe(packet)
            say("received", key=key, **seen)
            if seen["dst"] == address and seen.get("icmp") == 8:
                publish(echo(packet[20:], address, seen["src"], 0))

        def command(words):
            if words[:1] == ["ping"] and len(words) == 3:
                for seq in range(int(words[2])):
                    request = struct.pack("!BBHHH", 8, 0, 0, 0x3E, seq + 1) + b"original"
                    reactor.callLater(0.1 * seq, publish, echo(request, address, words[1], 8))

        yield session.declare_queue(queue, [keys.packet_to(name)])
        yield session.consume(queue, got)
        fields = dict(ipv4_host=address, ipv4_netmask="255.255.255.0",
                      ipv4_network=str(ipaddress.IPv4Interface(f"{address}/24").network
                                       .network_address),
                      ipv6_prefix="bbbb", ipv6_host=":" + address.rsplit(".", 1)[1],
                      ipv6_no_forwarding=False, name=name, re_route_packets_host=None,
                      re_route_packets_if=None, re_route_packets_prefix=None)
        session.publish_message(control.control(keys.tun_started(name), **fields))
        stdio.StandardIO(_Commands(command), reactor=reactor)
        say("ready")
        yield defer.Deferred()

    return go()


def ioppytest_router(reactor, url, *pairs):
    """
    Forward with a fixed table, as ioppytest's router does.
    """
    from ioppy_agent.model import keys, wire

    table = {}
    for pair in pairs:
        a, b = pair.split(":")
        table.setdefault(a, []).append(b)
        table.setdefault(b, []).append(a)

    @defer.inlineCallbacks
    def go():
        session = yield _connect(reactor, url, "ioppy-lab ioppytest router")
        queue = f"ioppy.lab.fixed.{os.getpid()}"

        def got(key, body, content_type, user_id=None):
            for peer in table.get(keys.parse(key).name, ()):
                session.publish(keys.packet_to(peer), body, content_type or wire.JSON)
            session.flush()

        yield session.declare_queue(queue, [keys.packet_from(a) for a in table])
        yield session.consume(queue, got)
        say("ready")
        yield defer.Deferred()

    return go()


if __name__ == "__main__":
    sys.exit("run through tests.lab.tools")
