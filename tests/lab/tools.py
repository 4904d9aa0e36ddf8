"""
The lab's helper commands, each run as a process of its own
(C{python -m tests.lab.tools COMMAND ...}, see L{tests.lab.programs.tool}):

  - C{publish URL KEY BODY [EXCHANGE]}: publish one message and close;
  - C{try-as URL publish KEY} or C{try-as URL bind QUEUE KEY}: whether the
    broker lets those credentials publish or bind that key;
  - C{broker-rate URL SIZE WIRE SECONDS}: the broker's own message rate,
    one publisher to one consumer, with bodies shaped like packets;
  - C{broker-latency URL COUNT INTERVAL}: the time one small message takes
    from a publisher to a consumer through the broker, sent INTERVAL
    seconds apart;
  - C{hold-proxy PORT FLAG}: forward to the broker, swallowing every byte
    while the file FLAG exists (a dead network path);
  - C{hostile-broker ...}: see L{tests.lab.hostile};
  - C{connections URL COUNT HOLD}: how many connections those credentials
    may open at once;
  - C{flood URL KEY SIZE MEGABYTES [SECONDS]}: publish SIZE-byte messages
    (or, with SIZE C{echo}, agent_1's echo requests to agent_2 as JSON;
    with C{ready}, component announcements, each with a name of its own) on
    KEY as fast as the broker takes them, until MEGABYTES were sent or
    SECONDS (at most 60) passed, and print the megabytes, seconds and
    messages sent;
  - C{delivery URL METHOD AGENTS SECONDS BROKER_PID}: one way of direct
    delivery measured at the broker, see L{tests.lab.delivery};
  - C{sniff}, C{original-agent}, C{ioppytest-router}: stand-ins for
    ioppytest's components, and C{listen URL PATTERN}, which prints every
    message on PATTERN: see L{tests.lab.peers}.

The functions L{publish}, L{broker_rate} and L{broker_latency} run the first
three and wait.
"""

import json
import os
import subprocess
import sys

from .programs import tool

# The broker every helper forwards to or talks to.
BROKER = ("127.0.0.1", 5672)


def _tool(*args, timeout):
    argv, env = tool(*args)
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                            env=dict(os.environ, **env))
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({result.returncode}): "
                             f"{result.stdout}{result.stderr}")
    return result.stdout


def publish(url, routing_key, body, exchange="amq.topic", copy_to=""):
    """
    Publish one message from a separate process, and wait until it is sent;
    with C{copy_to} (keys, comma-separated), sent straight to those keys, as
    an agent sends a packet to inboxes (C{CC} and the mark of a packet sent
    straight).
    """
    _tool("publish", url, routing_key, body, exchange, copy_to, timeout=30)


def broker_rate(url, size, wire_format, seconds=5.0):
    """
    @return: Messages per second the broker moves from one publisher to one
        consumer, with bodies shaped like packets of C{size} bytes in
        C{wire_format} (measured in a separate process).
    """
    out = _tool("broker-rate", url, str(size), wire_format, str(seconds),
                timeout=seconds + 60)
    return float(out.split()[-1])


def broker_latency(url, count=200, interval=0.02):
    """
    @return: The sorted times in ms that C{count} small messages, sent
        C{interval} seconds apart, took from one connection through the
        broker to another (measured in a separate process).
    """
    out = _tool("broker-latency", url, str(count), str(interval),
                timeout=count * interval + 60)
    return sorted(float(x) for x in out.split())


def _connect(reactor, url, exchange, name):
    from ioppy_agent.bus.endpoint import BrokerEndpoint
    from ioppy_agent.bus.connector import BusFactory
    from ioppy_agent.bus.login import open_session

    factory = BusFactory(url.vhost, 0, reactor, name)
    d = BrokerEndpoint(reactor, url.host, url.port).connect(factory)
    return d.addCallback(open_session, url, exchange)


def _publish_main(reactor, url, routing_key, body, exchange="amq.topic", copy_to=""):
    from twisted.internet import defer

    from ioppy_agent.model import keys
    from ioppy_agent.bus.url import parse_amqp_url

    @defer.inlineCallbacks
    def go():
        session = yield _connect(reactor, parse_amqp_url(url), exchange, "ioppy-lab")
        session.publish(routing_key, body.encode("utf-8"), "application/json",
                        headers=((("CC", tuple(copy_to.split(","))),
                                  (keys.DIRECT, keys.DIRECT_VALUE)) if copy_to else None))
        yield session.close()

    return go()


def try_as(url, action, *args):
    """
    Try, with the credentials in C{url}, to publish on a key
    (C{"publish", KEY[, EXCHANGE]}), to declare a queue and bind it
    (C{"bind", QUEUE, KEY[, EXCHANGE]}), to declare a fanout exchange and
    bind it from another (C{"bind-exchange", EXCHANGE, SOURCE}), to bind
    two exchanges (C{"bind-exchanges", DESTINATION, SOURCE, KEY}), to
    declare an exchange or a queue with arguments (C{"declare-exchange"} or
    C{"declare-queue", NAME, JSON}), to publish to a queue through the
    default exchange (C{"publish-to-queue", QUEUE}), or to publish with another C{user_id}
    (C{"publish-as", KEY, USER_ID}), in a separate process; the exchange is
    amq.topic unless named.

    @return: C{"accepted"}, or C{"refused: <the broker's reason>"}.
    """
    return _tool("try-as", url, action, *args, timeout=30).strip()


def _try_as_main(reactor, url, action, *args):
    from twisted.internet import defer
    from txamqp.client import Closed

    from ioppy_agent.bus.replies import reply_of
    from ioppy_agent.bus.url import parse_amqp_url

    @defer.inlineCallbacks
    def go():
        exchange = args[1] if action == "publish" and len(args) > 1 else "amq.topic"
        session = yield _connect(reactor, parse_amqp_url(url), exchange, "ioppy-lab")
        try:
            if action == "publish":
                session.publish(args[0], b"{}", "application/json")
                # A round trip after it: a refused publish closes the channel
                # before the answer comes.
                yield session.channel.exchange_declare(exchange="amq.topic", passive=True)
            elif action == "bind-exchange":
                yield session.channel.exchange_declare(exchange=args[0], type="fanout",
                                                       auto_delete=True)
                yield session.bind_exchange(args[0], args[1])
            elif action == "bind-exchanges":
                # DESTINATION SOURCE KEY: bind existing exchanges.
                yield session.bind_exchange(args[0], args[1], args[2])
            elif action == "declare-exchange":
                # NAME ARGUMENTS (JSON): an exchange of its own, say with an
                # alternate exchange.
                yield session.channel.exchange_declare(exchange=args[0], type="fanout",
                                                       auto_delete=True,
                                                       arguments=json.loads(args[1]))
            elif action == "declare-queue":
                # NAME ARGUMENTS (JSON): a queue of its own, say with a
                # dead-letter exchange.
                yield session.channel.queue_declare(queue=args[0], auto_delete=True,
                                                    arguments=json.loads(args[1]))
            elif action == "publish-to-queue":
                # QUEUE: straight to a queue, through the default exchange.
                session.publish_to_queue(args[0], b"{}", "application/json")
                yield session.channel.exchange_declare(exchange="amq.topic", passive=True)
            elif action == "publish-as":
                # KEY USER_ID [BODY]: a message claiming a user.
                body = args[2].encode("utf-8") if len(args) > 2 else b"{}"
                session.client.write_frames(session._publisher.frames(
                    args[0], body, "application/json", session.client.MAX_LENGTH,
                    user_id=args[1]))
                yield session.channel.exchange_declare(exchange="amq.topic", passive=True)
            else:
                yield session.declare_queue(args[0], [(args[2] if len(args) > 2
                                                       else "amq.topic", args[1])])
        except Closed as e:
            print(f"refused: {reply_of(e)[1]}", flush=True)
        else:
            print("accepted", flush=True)
            yield session.close()
        if session.client.transport is not None:
            session.client.transport.loseConnection()

    return go()


def _broker_rate_main(reactor, url, size, wire_format, seconds):
    """
    Publish as fast as the connection takes it to a queue of our own for
    C{seconds} and count what a second connection consumes meanwhile.
    """
    from twisted.internet import defer

    from ioppy_agent.model import wire
    from ioppy_agent.bus.url import parse_amqp_url

    broker = parse_amqp_url(url)
    packet = bytes([0x45]) + bytes(int(size) - 1)
    if wire_format == "raw":
        body, content_type = packet, wire.RAW
    else:
        body, content_type = wire.encode_packet(packet, 1764242400.5), wire.JSON
    queue = f"ioppy.lab.rate.{os.getpid()}"
    received = [0]

    @defer.inlineCallbacks
    def go():
        consumer = yield _connect(reactor, broker, "amq.topic", "ioppy-lab consumer")
        yield consumer.declare_queue(queue, [queue], max_length=100000)
        yield consumer.consume(queue, lambda *_: received.__setitem__(0, received[0] + 1))
        publisher = yield _connect(reactor, broker, "amq.topic", "ioppy-lab publisher")
        start = reactor.seconds()
        end = start + float(seconds)
        done = defer.Deferred()

        def pump():
            if reactor.seconds() >= end:
                done.callback(None)
                return
            for _ in range(200):
                if not publisher.publish(queue, body, content_type):
                    reactor.callLater(0.001, pump)
                    return
            reactor.callLater(0, pump)

        pump()
        yield done
        counted = received[0]
        elapsed = reactor.seconds() - start
        yield publisher.close()
        yield consumer.close()
        print(f"{counted / elapsed:.1f}", flush=True)

    return go()


def _flood_main(reactor, url, routing_key, size, megabytes, seconds="60"):
    from twisted.internet import defer

    from ioppy_agent.model import wire
    from ioppy_agent.bus.url import parse_amqp_url

    invented = size == "ready"
    if size == "echo":
        # An echo request from agent_1 to agent_2, as agent_1 would send it.
        from .packets import echo_request
        packet = echo_request(bytes([10, 2, 0, 1]), bytes([10, 2, 0, 2]), payload=bytes(36))
        body, content_type = wire.encode_packet(packet, reactor.seconds()), wire.JSON
    elif invented:
        body, content_type = b'{"component": "invented_000000"}', wire.JSON
    else:
        body, content_type = bytes(int(size)), "application/octet-stream"
    count = int(float(megabytes) * 1e6 / len(body))
    limit = min(float(seconds), 60.0)

    @defer.inlineCallbacks
    def go():
        session = yield _connect(reactor, parse_amqp_url(url), "amq.topic", "ioppy-lab flood")
        start = reactor.seconds()
        sent = [0]
        done = defer.Deferred()

        def pump():
            if sent[0] >= count or reactor.seconds() - start > limit:
                done.callback(None)
                return
            for _ in range(min(64, count - sent[0])):
                out = b'{"component": "invented_%06d"}' % sent[0] if invented else body
                if not session.publish(routing_key, out, content_type):
                    reactor.callLater(0.005, pump)
                    return
                sent[0] += 1
            reactor.callLater(0, pump)

        pump()
        yield done
        session.flush()
        took = reactor.seconds() - start
        yield session.close(timeout=30)
        print(f"{sent[0] * len(body) / 1e6:.1f} {took:.2f} {sent[0]}", flush=True)

    return go()


def flood(url, routing_key, size, megabytes, seconds=60):
    """
    Run C{flood} and wait.

    @return: C{(megabytes sent, seconds, messages)}.
    """
    sent, took, count = _tool("flood", url, routing_key, str(size), str(megabytes),
                              str(seconds), timeout=120).split()
    return float(sent), float(took), int(count)


def _broker_latency_main(reactor, url, count, interval):
    """
    Publish one message every C{interval} seconds to a queue of our own,
    and print how long each took to arrive on a second connection.
    """
    from twisted.internet import defer, task

    from ioppy_agent.model import wire
    from ioppy_agent.bus.url import parse_amqp_url

    broker = parse_amqp_url(url)
    queue = f"ioppy.lab.latency.{os.getpid()}"
    count, interval = int(count), float(interval)
    sent_at, times = {}, []
    done = defer.Deferred()

    def arrived(key, body, *_):
        times.append(1000 * (reactor.seconds() - sent_at.pop(bytes(body))))
        if len(times) == count and not done.called:
            done.callback(None)

    @defer.inlineCallbacks
    def go():
        consumer = yield _connect(reactor, broker, "amq.topic", "ioppy-lab consumer")
        yield consumer.declare_queue(queue, [queue], max_length=1000)
        yield consumer.consume(queue, arrived)
        publisher = yield _connect(reactor, broker, "amq.topic", "ioppy-lab publisher")
        for i in range(count):
            yield task.deferLater(reactor, interval, lambda: None)
            body = b"%d" % i
            sent_at[body] = reactor.seconds()
            publisher.publish(queue, body, wire.RAW)
        timeout = reactor.callLater(10, lambda: done.called or done.callback(None))
        yield done
        if timeout.active():
            timeout.cancel()
        yield publisher.close()
        yield consumer.close()
        print(" ".join(f"{t:.4f}" for t in times), flush=True)

    return go()


def _hold_proxy_main(reactor, port, flag):
    """
    Forward 127.0.0.1:C{port} to the broker, except that while the file
    C{flag} exists every byte either way is swallowed: the connections stay
    open but carry nothing, like a dead network path.
    """
    from twisted.internet import defer, endpoints
    from twisted.protocols import portforward

    def relay(protocol, data):
        if not os.path.exists(flag):
            protocol.peer.transport.write(data)

    class Client(portforward.ProxyClient):
        dataReceived = relay

    class ClientFactory(portforward.ProxyClientFactory):
        protocol = Client

    class Server(portforward.ProxyServer):
        clientProtocolFactory = ClientFactory
        dataReceived = relay

    class Factory(portforward.ProxyFactory):
        protocol = Server

    endpoint = endpoints.TCP4ServerEndpoint(reactor, int(port), interface="127.0.0.1")
    d = endpoint.listen(Factory(*BROKER))
    d.addCallback(lambda _: print("listening", flush=True))
    return d.addCallback(lambda _: defer.Deferred())


def _hostile_main(reactor, *args):
    from .hostile import main
    return main(reactor, *args)


def connections(url, count, hold=2.0):
    """
    Open up to C{count} connections with the credentials in C{url}, one
    after another, in a separate process, and hold them C{hold} seconds.

    @return: C{(opened, refusal)}: how many opened, and the first failure
        (C{""} if none).
    """
    out = json.loads(_tool("connections", url, str(count), str(hold),
                           timeout=count * 5 + hold + 60).strip().splitlines()[-1])
    return out["opened"], out["refusal"]


def _connections_main(reactor, url, count, hold):
    from twisted.internet import defer, task

    from ioppy_agent.bus.url import parse_amqp_url

    @defer.inlineCallbacks
    def go():
        broker, sessions, refusal = parse_amqp_url(url), [], ""
        for n in range(int(count)):
            try:
                session = yield _connect(reactor, broker, "amq.topic", f"ioppy-lab {n}")
            except Exception as e:
                refusal = f"{e.__class__.__name__}: {e}"
                break
            sessions.append(session)
        yield task.deferLater(reactor, float(hold), lambda: None)
        print(json.dumps({"opened": len(sessions), "refusal": refusal}), flush=True)
        for session in sessions:
            try:
                yield session.close(timeout=2.0)
            except Exception:
                pass

    return go()


def _delivery_main(reactor, *args):
    from .delivery import main
    return main(reactor, *args)


def _peer(name):
    def main(reactor, *args):
        from . import peers
        return getattr(peers, name)(reactor, *args)
    return main


COMMANDS = {"publish": _publish_main, "try-as": _try_as_main, "broker-rate": _broker_rate_main,
            "broker-latency": _broker_latency_main,
            "hold-proxy": _hold_proxy_main,
            "hostile-broker": _hostile_main, "sniff": _peer("sniff"), "listen": _peer("listen"),
            "original-agent": _peer("original_agent"),
            "ioppytest-router": _peer("ioppytest_router"), "delivery": _delivery_main,
            "connections": _connections_main, "flood": _flood_main}


if __name__ == "__main__":
    from twisted.internet.task import react

    command, *arguments = sys.argv[1:]
    react(COMMANDS[command], arguments)
