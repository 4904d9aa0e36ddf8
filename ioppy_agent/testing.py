"""
In-memory stand-ins for the TUN device, netlink and the bus, so that the
agent and router can be tested without root, a kernel or a broker: a TUN
device, netlink, a recording session and connector, and L{BusPump}, a
broker's end of the AMQP connection driven by the test.
"""

import errno
import struct
from collections import deque

from twisted.internet import defer
from txamqp.connection import Frame
from txamqp.testing import AMQPump
from zope.interface import implementer

from .bus import FatalBusError, NotFound, QueueLocked, State
from .host.tun import ITunDevice
from .model.actions import DropReason


@implementer(ITunDevice)
class MemoryTunDevice:
    """
    A TUN device in memory.

    @ivar inbound: Packets waiting to be read (as if the host sent them).
    @ivar written: Packets written (as if delivered to the host).
    @ivar write_errors: errno values to raise on the next writes, in order.
    @ivar closed: Whether L{close} was called.
    """

    def __init__(self, name="tun0", fd=1000):
        self.name = name
        self._fd = fd
        self.inbound = deque()
        self.written = []
        self.write_errors = deque()
        self.closed = False

    def fileno(self):
        return self._fd

    def read(self, size):
        if not self.inbound:
            raise BlockingIOError(errno.EAGAIN, "no packet")
        return self.inbound.popleft()[:size]

    def write(self, packet):
        if self.write_errors:
            code = self.write_errors.popleft()
            raise OSError(code, errno.errorcode.get(code, "error"))
        self.written.append(bytes(packet))
        return len(packet)

    def close(self):
        self.closed = True


class MemoryLinks:
    """
    Stands in for L{ioppy_agent.host.netlink}: records what would be configured.

    @ivar namespaces: The network namespaces that "exist".
    @ivar configured: C{(ifname, addresses, mtu, netns)} per configure call.
    @ivar moved: C{(ifname, netns, new_name)} per move.
    @ivar routes: The networks routed into each interface, by name.
    @ivar fail_with: An exception to raise from the next configure call.
    """

    def __init__(self, namespaces=()):
        self.namespaces = set(namespaces)
        self.configured = []
        self.moved = []
        self.routes = {}
        self.fail_with = None

    def netns_exists(self, name):
        return name in self.namespaces

    def move_to_netns(self, ifname, netns, new_name):
        self.moved.append((ifname, netns, new_name))

    def configure(self, ifname, addresses, mtu, netns=None):
        if self.fail_with is not None:
            error, self.fail_with = self.fail_with, None
            raise error
        self.configured.append((ifname, list(addresses), mtu, netns))

    def route(self, ifname, networks, remove=False, netns=None):
        routed = self.routes.setdefault(ifname, set())
        for net in networks:
            if remove:
                routed.discard(net)
            else:
                routed.add(net)


class RecordingSession:
    """
    Stands in for L{ioppy_agent.bus.BusSession}.

    @ivar published: C{(routing_key, body, content_type)} per publish.
    @ivar queues: C{name: bindings} per declared queue.
    @ivar consumers: C{queue: handler}.
    @ivar oversize: C{queue: oversize callable}.
    @ivar declare_error: An exception C{declare_queue} fails with.
    @ivar refused: Set to a reason to make publishing refuse, as a paused or
        blocked session does.
    @ivar locked: Whether queues are held by another connection, so that
        C{declare_queue} fails with L{QueueLocked}; or a set of the names
        of the queues held.
    @ivar flushes: The number of messages published before each C{flush}.
    @ivar streams: C{name: (bindings, arguments)} per declared stream;
        C{stream_error} an exception C{declare_stream} fails with.
    @ivar stream_reads: C{(queue, offset, prefetch)} per C{consume_stream},
        whose handler is in C{consumers}; C{cancelled} the consumer tags
        cancelled; C{acks} the delivery tags acked;
        C{to_queues} C{(queue, body, content_type)} published to queues.
    @ivar headers: The extra headers of each packet published (C{None}
        for one without).
    @ivar exchanges: C{name: (kind, arguments)} per declared exchange;
        C{exchange_bindings} the set of C{(destination, source, key,
        arguments)} bound, arguments as sorted item tuples.
    """

    def __init__(self):
        self.published = []
        self.queues = {}
        self.shared = {}
        self.missing = set()
        self.exclusive = {}
        self.prefetch = {}
        self.consumers = {}
        self.oversize = {}
        self.declare_error = None
        self.locked = False
        self.closed = False
        self.refused = None
        self.close_calls = []
        self.flushes = []
        # The timestamp header of each packet published (None for JSON).
        self.stamps = []
        self.streams = {}
        self.stream_error = None
        self.stream_reads = []
        self.cancelled = []
        self.acks = []
        self.to_queues = []
        self.headers = []
        self.exchanges = {}
        self.exchange_bindings = set()

    def declare_stream(self, name, bindings, arguments):
        if self.stream_error is not None:
            return defer.fail(self.stream_error)
        self.streams[name] = (list(bindings), dict(arguments))
        return defer.succeed(None)

    def consume_stream(self, queue, handler, offset, prefetch):
        if self.stream_error is not None:
            return defer.fail(self.stream_error)
        self.consumers[queue] = handler
        self.stream_reads.append((queue, offset, prefetch))
        return defer.succeed(f"ioppy-{len(self.stream_reads)}")

    def cancel(self, tag):
        self.cancelled.append(tag)
        return defer.succeed(None)

    def ack(self, delivery_tag, multiple=True):
        self.acks.append(delivery_tag)

    def publish_to_queue(self, queue, body, content_type):
        if self.closed:
            return False
        self.to_queues.append((queue, body, content_type))
        return True

    def declare_queue(self, name, bindings, max_length=1000):
        if self.locked is True or (self.locked and name in self.locked):
            return defer.fail(QueueLocked(f"queue {name!r} is held by another connection"))
        if self.declare_error is not None:
            return defer.fail(self.declare_error)
        self.queues[name] = list(bindings)
        return defer.succeed(None)

    def declare_shared_queue(self, name, bindings, max_length=1000):
        self.shared[name] = list(bindings)
        return defer.succeed(None)

    def queue_exists(self, name):
        if name in self.missing:
            return defer.fail(NotFound(f"no queue {name!r}"))
        return defer.succeed(None)

    def consume(self, queue, handler, oversize=None, exclusive=False, prefetch=0):
        if exclusive and self.locked is True:
            return defer.fail(QueueLocked(f"queue {queue!r} is consumed by another "
                                          "connection"))
        self.consumers[queue] = handler
        self.oversize[queue] = oversize
        self.exclusive[queue] = exclusive
        self.prefetch[queue] = prefetch
        return defer.succeed("ioppy-1")

    def bind(self, queue, binding):
        self.queues[queue].append(binding)
        return defer.succeed(None)

    def declare_exchange(self, name, kind, arguments=None):
        self.exchanges[name] = (kind, dict(arguments or {}))
        return defer.succeed(None)

    def bind_exchange(self, destination, source, key="", arguments=None):
        self.exchange_bindings.add(
            (destination, source, key, tuple(sorted((arguments or {}).items()))))
        return defer.succeed(None)

    def refusal(self):
        """
        @return: L{refused}, or L{DropReason.NOT_CONNECTED} once closed.
        """
        return DropReason.NOT_CONNECTED if self.closed else self.refused

    def publish(self, routing_key, body, content_type, timestamp=None, headers=None):
        if self.refusal() is not None:
            return False
        self.published.append((routing_key, body, content_type))
        self.stamps.append(timestamp)
        self.headers.append(headers)
        return True

    def publish_message(self, message):
        """
        Record a control message: sent unless the session is closed (see
        L{ioppy_agent.bus.session.BusSession.publish_message}).
        """
        if self.closed:
            return False
        self.published.append((message.routing_key, message.body, message.content_type))
        return True

    def flush(self):
        self.flushes.append(len(self.published))

    def deliver(self, queue, routing_key, body, content_type="application/json",
                user_id=None):
        """
        Hand a message to the consumer of C{queue}, as the broker would.
        """
        self.consumers[queue](routing_key, body, content_type, user_id)


class RecordingConnector:
    """
    Stands in for L{ioppy_agent.bus.BusConnector}: C{connect} runs the
    set-up callable on a L{RecordingSession}, as a new connection would.
    """

    def __init__(self, reactor, config, setup, on_fatal, **kwargs):
        self.config = config
        self.url = config.url
        self.exchange = config.exchange
        self.setup = setup
        self.on_fatal = on_fatal
        self.options = kwargs
        self.session = None
        self.started = False
        self.stopped_with = None
        self.state = State.STOPPED
        self.prepared = False
        self.sessions = 0

    def prepare(self):
        self.prepared = True

    def start(self):
        self.started = True
        self.state = State.CONNECTING

    def connect(self, session=None):
        """
        Simulate a connection: run set-up on C{session}.

        @return: The L{Deferred} set-up returned.
        """
        session = session if session is not None else RecordingSession()
        self.session = session
        self.state = State.CONNECTED
        self.sessions += 1

        def failed(reason):
            self.session = None
            if reason.check(FatalBusError):
                self.state = State.FAILED
                self.on_fatal(reason.value)
                return None
            self.state = State.WAITING
            return reason

        return defer.maybeDeferred(self.setup, session).addErrback(failed)

    def stop(self, farewell=(), timeout=1.0):
        self.state = State.STOPPED
        self.stopped_with = list(farewell)
        if self.session is not None:
            for message in farewell:
                self.session.publish_message(message)
            self.session.closed = True
        self.session = None
        return defer.succeed(None)


class BusPump(AMQPump):
    """
    txamqp's L{AMQPump} for L{ioppy_agent.bus.protocol.BusProtocol}: the
    broker's frames go in as bytes, through the protocol's C{dataReceived},
    so that its frame reader and its conversation check them as they would
    a real broker's; the client's writes, which may hold several frames, are
    read back frame by frame into L{outgoing}.

    It also has what the protocol uses of a real transport: C{disconnecting},
    C{bufferSize}, producer registration, C{pauseProducing} and
    C{resumeProducing}.

    @ivar producer: The producer registered, if any.
    @ivar paused: Whether the protocol paused reading.
    @ivar written: Every byte the client wrote after the protocol header.
    @ivar undecoded: The frames txamqp's decoder could not read back.
    """

    disconnecting = False
    bufferSize = 65536
    producer = None
    paused = False

    def __init__(self):
        AMQPump.__init__(self)
        self.written = b""
        self.undecoded = []

    def registerProducer(self, producer, streaming):
        self.producer = producer

    def pauseProducing(self):
        self.paused = True

    def resumeProducing(self):
        self.paused = False

    def write(self, data):
        if not self.initialized:
            self.initialized = True
            return
        self.written += data
        while data:
            size = struct.unpack("!I", data[3:7])[0]
            try:
                AMQPump.write(self, data[:size + 8])
            except ValueError:
                # A field table txamqp's decoder cannot read (a timestamp, a
                # 64-bit size): the frame is in written only.
                self.undecoded.append(data[:size + 8])
            data = data[size + 8:]

    def pump(self, channel, payload):
        frame = Frame(channel, payload)
        self.incoming.setdefault(channel, []).append(frame)
        self.send(self.client._pack_frame(frame))

    def send(self, data):
        """
        Hand C{data} to the client as one read from the socket.
        """
        self.client.dataReceived(data)
