"""
A misbehaving broker: an AMQP 0-9-1 server on loopback that lets a client
log in, declare, bind and consume as RabbitMQ would, and then, on the first
connection only, does one thing a broker must not do (the attack).  Later
connections behave, so a test sees the client come back.

Run as C{python -m tests.lab.tools hostile-broker PORT ATTACK}; it prints
one JSON object per line for the test to read: C{listening}, C{connected},
C{ready} (the client consumes), C{attack}, C{published} (one per message
the client publishes, with whether it holds an ICMP echo reply) and
C{closed} (the client's C{connection.close}, with its reply code).

The attacks are the keys of L{ATTACKS}.
"""

import json
import struct
import sys

from twisted.internet import defer, endpoints, protocol, task

from ioppy_agent.bus.framing import encode_table, pack_frame, shortstr

from .packets import echo_request

HEAD = struct.Struct("!BHI")
QUEUE = "ioppy.agent.agent_1"
KEY_IN = "toAgent.agent_1.ip.tun.packet.raw"


def say(event, **fields):
    print(json.dumps(dict(fields, event=event)), flush=True)


def method(channel, class_id, method_id, args=b""):
    return pack_frame(1, channel, struct.pack("!HH", class_id, method_id) + args)


def longstr(data):
    return struct.pack("!I", len(data)) + data


def deliver(body, content_type="application/octet-stream", key=KEY_IN, tag="ioppy-1",
            delivery_tag=1):
    """
    @return: A whole delivery on channel 1: method, header and body.
    """
    frames = [method(1, 60, 60, shortstr(tag) + struct.pack("!QB", delivery_tag, 0)
                     + shortstr("amq.topic") + shortstr(key)),
              header(len(body), content_type)]
    if body:
        frames.append(pack_frame(3, 1, body))
    return b"".join(frames)


def header(size, content_type="application/octet-stream", channel=1):
    return pack_frame(2, channel, struct.pack("!HHQH", 60, 0, size, 0x8000)
                      + shortstr(content_type))


def agent_echo_request(seq):
    """
    @return: An echo request from agent_2's address to agent_1's.
    """
    return echo_request((10, 2, 0, 2), (10, 2, 0, 1), seq=seq, payload=b"hostile broker")


def is_echo_reply(body, content_type):
    if content_type == "application/json":
        try:
            body = bytes(json.loads(body)["data"])
        except (ValueError, KeyError, TypeError):
            return False
    return len(body) > 21 and body[0] >> 4 == 4 and body[9] == 1 and \
        body[(body[0] & 15) * 4] == 0


class Broker(protocol.Protocol):
    """
    One connection: the server's side of the handshake, then the attack.
    """

    def __init__(self, factory, number):
        self.factory = factory
        self.number = number
        self.buffer = b""
        self.greeted = False
        self.content = None
        self.trickle = None

    @property
    def hostile(self):
        return self.number == 1

    def connectionMade(self):
        say("connected", n=self.number)

    def send(self, data):
        if self.transport is not None and self.transport.connected:
            self.transport.write(data)

    def dataReceived(self, data):
        self.buffer += data
        if not self.greeted:
            if len(self.buffer) < 8:
                return
            self.buffer = self.buffer[8:]
            self.greeted = True
            self.send(method(0, 10, 10, b"\x00\x09" + encode_table({"product": "hostile"})
                             + longstr(b"PLAIN") + longstr(b"en_US")))
        while len(self.buffer) >= 8:
            kind, channel, size = HEAD.unpack_from(self.buffer)
            if len(self.buffer) < size + 8:
                return
            payload, self.buffer = self.buffer[7:7 + size], self.buffer[8 + size:]
            self.frame(kind, channel, payload)

    def frame(self, kind, channel, payload):
        if kind == 1:
            ids = struct.unpack("!HH", payload[:4])
            handler = HANDSHAKE.get(ids)
            if handler is not None:
                handler(self, channel, payload[4:])
        elif kind == 2 and self.content is not None:
            self.content["size"] = struct.unpack("!Q", payload[4:12])[0]
            flags = struct.unpack("!H", payload[12:14])[0]
            if flags & 0x8000:
                self.content["type"] = payload[15:15 + payload[14]].decode()
            self.content_done()
        elif kind == 3 and self.content is not None:
            self.content["body"] += payload
            self.content_done()

    def content_done(self):
        content = self.content
        if content.get("size") is not None and len(content["body"]) >= content["size"]:
            self.content = None
            say("published", n=self.number, key=content["key"],
                echo_reply=is_echo_reply(content["body"], content.get("type")))

    # The client's methods.

    def start_ok(self, channel, args):
        self.send(method(0, 10, 30, struct.pack("!HIH", 2047, 131072, 0)))

    def open(self, channel, args):
        self.send(method(0, 10, 41, shortstr("")))

    def channel_open(self, channel, args):
        self.send(method(channel, 20, 11, longstr(b"")))

    def exchange_declare(self, channel, args):
        self.send(method(channel, 40, 11))

    def queue_declare(self, channel, args):
        name = args[3:3 + args[2]].decode()
        self.send(method(channel, 50, 11, shortstr(name) + struct.pack("!II", 0, 0)))

    def queue_bind(self, channel, args):
        self.send(method(channel, 50, 21))

    def qos(self, channel, args):
        self.send(method(channel, 60, 11))

    def consume(self, channel, args):
        at = 2 + 1 + args[2]
        tag = args[at + 1:at + 1 + args[at]].decode()
        self.send(method(channel, 60, 21, shortstr(tag)))
        say("ready", n=self.number)
        if self.hostile:
            self.factory.reactor.callLater(0.5, self.attack)
        else:
            self.send(deliver(agent_echo_request(9999)))

    def cancel(self, channel, args):
        tag = args[1:1 + args[0]].decode()
        if self.hostile and self.factory.attack == "stray-reply-at-stop":
            say("attack", name=self.factory.attack)
            self.send(header(4) + method(1, 50, 11, shortstr(QUEUE) + b"\0" * 8))
            return
        self.send(method(channel, 60, 31, shortstr(tag)))

    def publish(self, channel, args):
        key = args[3 + args[2]:][1:1 + args[3 + args[2]]].decode()
        self.content = {"key": key, "body": b""}

    def channel_close(self, channel, args):
        self.send(method(channel, 20, 41))

    def connection_close(self, channel, args):
        code = struct.unpack("!H", args[:2])[0]
        say("closed", n=self.number, code=code, text=args[3:3 + args[2]].decode())
        self.send(method(0, 10, 51))
        self.transport.loseConnection()

    # The attacks.

    def attack(self):
        say("attack", name=self.factory.attack)
        ATTACKS[self.factory.attack](self)

    def huge_frame(self):
        """
        A body frame announcing 4 GiB, then bytes trickling after it.
        """
        self.send(HEAD.pack(3, 1, 0xFFFFFFF0))
        self.trickle = task.LoopingCall(self.send, b"x" * 65536)
        self.trickle.clock = self.factory.reactor
        self.trickle.start(0.01)
        self.factory.reactor.callLater(4, self.stop_trickle)

    def stop_trickle(self):
        if self.trickle is not None and self.trickle.running:
            self.trickle.stop()

    def huge_body(self):
        """
        A header announcing 50 MiB (more than any packet), sent in 16 KiB
        body frames; then a good packet.
        """
        size, chunk = 50 << 20, 16 << 10
        frames = [method(1, 60, 60, shortstr("ioppy-1") + struct.pack("!QB", 1, 0)
                         + shortstr("amq.topic") + shortstr(KEY_IN)), header(size)]
        piece = pack_frame(3, 1, b"y" * chunk)
        self.send(b"".join(frames))
        for _ in range(size // chunk):
            self.send(piece)
        self.send(deliver(agent_echo_request(1)))

    def absurd_body(self):
        """
        A header announcing 1 TiB, more than any broker sends.
        """
        self.send(method(1, 60, 60, shortstr("ioppy-1") + struct.pack("!QB", 1, 0)
                         + shortstr("amq.topic") + shortstr(KEY_IN)) + header(1 << 40))

    def channel_close_attack(self):
        """
        Close the client's channel, as RabbitMQ does after a publish to a
        deleted exchange.
        """
        self.send(method(1, 20, 40, struct.pack("!H", 404) + shortstr("NOT_FOUND - no "
                  "exchange 'gone' in vhost 'v'") + struct.pack("!HH", 60, 40)))

    def stray_header(self):
        self.send(header(4))

    def unknown_frame_type(self):
        self.send(pack_frame(9, 0, b""))

    def unknown_method(self):
        self.send(method(1, 60, 99))

    def unopened_channel(self):
        self.send(method(7, 20, 11, longstr(b"")))

    def silence(self):
        """
        Say nothing more: the client's heartbeat must notice.
        """

    def flood(self):
        """
        2000 echo requests for the client's TUN, written at once.
        """
        self.send(b"".join(deliver(agent_echo_request(seq), delivery_tag=seq + 1)
                           for seq in range(2000)))

    def connectionLost(self, reason):
        self.stop_trickle()
        say("lost", n=self.number)


HANDSHAKE = {(10, 11): Broker.start_ok, (10, 40): Broker.open, (20, 10): Broker.channel_open,
             (40, 10): Broker.exchange_declare, (50, 10): Broker.queue_declare,
             (50, 20): Broker.queue_bind, (60, 10): Broker.qos, (60, 20): Broker.consume,
             (60, 30): Broker.cancel,
             (60, 40): Broker.publish, (20, 40): Broker.channel_close,
             (10, 50): Broker.connection_close}

ATTACKS = {"huge-frame": Broker.huge_frame, "huge-body": Broker.huge_body,
           "absurd-body": Broker.absurd_body, "channel-close": Broker.channel_close_attack,
           "stray-header": Broker.stray_header, "unknown-frame-type": Broker.unknown_frame_type,
           "unknown-method": Broker.unknown_method, "unopened-channel": Broker.unopened_channel,
           "silence": Broker.silence, "flood": Broker.flood,
           "stray-reply-at-stop": Broker.silence}


class BrokerFactory(protocol.Factory):
    def __init__(self, reactor, attack):
        self.reactor = reactor
        self.attack = attack
        self.connections = 0

    def buildProtocol(self, addr):
        self.connections += 1
        return Broker(self, self.connections)


def main(reactor, port, attack):
    """
    Listen on 127.0.0.1:C{port} until killed.
    """
    if attack not in ATTACKS:
        sys.exit(f"unknown attack {attack!r}; one of {', '.join(ATTACKS)}")
    endpoint = endpoints.TCP4ServerEndpoint(reactor, int(port), interface="127.0.0.1")
    d = endpoint.listen(BrokerFactory(reactor, attack))
    d.addCallback(lambda _: say("listening", port=int(port)))
    return d.addCallback(lambda _: defer.Deferred())
