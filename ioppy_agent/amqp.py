"""
The AMQP side: a txamqp protocol that hands deliveries straight to a
consumer callable, a session with the few operations the agent and router
need, and a connector that keeps a session open with Twisted's
L{ClientService}.
"""

import importlib.resources
import socket
import struct
from functools import lru_cache

from twisted.application.internet import backoffPolicy
from twisted.internet import abstract, defer
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, wrapClientTLS
from twisted.internet.error import DNSLookupError
from twisted.internet.interfaces import IPushProducer, IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.names import cache, client, dns, hosts
from twisted.names.error import AuthoritativeDomainError, DNSQueryTimeoutError, DomainError
from twisted.names.resolve import ResolverChain
from txamqp import spec as txspec
from OpenSSL.SSL import Error as OpenSSLError
from service_identity import VerificationError
from twisted.python.failure import Failure
from txamqp.client import ChannelClosed, Closed, TwistedDelegate
from txamqp.connection import Frame
from txamqp.protocol import AMQClient
from zope.interface import implementer

from . import __version__
from .process import EXIT_REFUSED, EXIT_TLS
from .tls import TLSSettings
from .wire import as_bytes

TLSError = (OpenSSLError, VerificationError)

# AMQP 0-9-1 framing, for the fast paths.
_FRAME_HEAD = struct.Struct("!BHI")
_HEADER_FIELDS = struct.Struct("!QH")
_FRAME_END = 0xCE
_METHOD, _HEADER, _BODY, _HEARTBEAT = 1, 2, 3, 8
_DELIVER = struct.pack("!HH", 60, 60)
_PUBLISH = struct.pack("!HH", 60, 40)
_BASIC_HEAD = struct.pack("!HH", 60, 0)
_BODY_SIZE = struct.Struct("!Q")
_END = bytes([_FRAME_END])

DEFAULT_HEARTBEAT = 10
DEFAULT_QUEUE_LIMIT = 1000
# Bytes the connection may hold unsent before publishing pauses: about a
# hundred full-size packets as JSON, so bursts pass but a stalled broker
# cannot make the process hoard memory.
SEND_BUFFER = 512 * 1024
REPLY_SUCCESS = 200
ACCESS_REFUSED = 403
NOT_FOUND = 404
RESOURCE_LOCKED = 405
NOT_ALLOWED = 530


@lru_cache(maxsize=None)
def load_spec():
    """
    @return: The AMQP 0-9-1 spec shipped in this package (txamqp's wheel has
        none), loaded once.
    """
    ref = importlib.resources.files("ioppy_agent").joinpath("amqp0-9-1.xml")
    return txspec.load_string(ref.read_bytes(), specfilename="amqp0-9-1.xml")


class FatalBusError(Exception):
    """
    The broker refused something that retrying will not fix (a duplicate
    name, wrong credentials, an unknown vhost).

    @ivar exit_code: The process exit status this error should lead to.
    """

    def __init__(self, message, exit_code):
        Exception.__init__(self, message)
        self.exit_code = exit_code


def reply_of(error):
    """
    @return: C{(reply_code, reply_text)} carried by a txamqp L{Closed}, or
        C{(None, str(error))}.
    """
    reason = error.args[0] if error.args else None
    fields = getattr(reason, "fields", None)
    if fields is not None and getattr(reason, "method", None) is not None:
        try:
            return reason.reply_code, reason.reply_text
        except AttributeError:
            pass
    return None, str(reason if reason is not None else error)


def encode_table(table):
    """
    Encode an AMQP 0-9-1 field table as RabbitMQ reads it: C{bool} as C{t},
    C{int} as C{I} (or C{l} when it does not fit in 32 bits), C{str} and
    C{bytes} as C{S}, C{dict} as a nested table C{F}.

    txamqp's own encoder writes every non-string as a 32-bit integer, so it
    cannot announce the boolean capabilities RabbitMQ looks for.
    """
    out = []
    for key, value in table.items():
        name = key.encode("utf-8")
        out.append(struct.pack("!B", len(name)) + name)
        if isinstance(value, bool):
            out.append(b"t" + struct.pack("!B", value))
        elif isinstance(value, int):
            if -2 ** 31 <= value < 2 ** 31:
                out.append(b"I" + struct.pack("!i", value))
            else:
                out.append(b"l" + struct.pack("!q", value))
        elif isinstance(value, (str, bytes)):
            data = value.encode("utf-8") if isinstance(value, str) else value
            out.append(b"S" + struct.pack("!I", len(data)) + data)
        elif isinstance(value, dict):
            out.append(b"F" + encode_table(value))
        else:
            raise TypeError(f"cannot put {type(value).__name__} in an AMQP table")
    body = b"".join(out)
    return struct.pack("!I", len(body)) + body


def _shortstr(text):
    data = text.encode("utf-8") if isinstance(text, str) else text
    return struct.pack("!B", len(data)) + data


# What the client tells RabbitMQ it understands: a connection.close instead
# of a silent drop on a refused login, connection.blocked/unblocked, and a
# basic.cancel when the broker drops the consumer.
CAPABILITIES = {"authentication_failure_close": True, "connection.blocked": True,
                "consumer_cancel_notify": True}


class _Delegate(TwistedDelegate):
    """
    Answers the broker's connection-level methods; deliveries go to the
    protocol's consumers at once, without a queue in between.
    """

    _log = Logger()

    def connection_start(self, ch, msg):
        ch.connection_start_ok(client_properties=self.client.client_properties,
                               mechanism=self.client.mechanism,
                               response=self.client.response,
                               locale=self.client.locale)
        self.client.login_sent = True

    def connection_tune(self, ch, msg):
        self.client.tuned = True
        TwistedDelegate.connection_tune(self, ch, msg)

    def basic_deliver(self, ch, msg):
        self.client.deliver(msg)

    def connection_blocked(self, ch, msg):
        self.client.blocked = True
        self._log.warn("the broker blocked publishing ({reason}); packets are dropped "
                       "until it unblocks", reason=msg.reason)

    def connection_unblocked(self, ch, msg):
        self.client.blocked = False
        self._log.info("the broker unblocked publishing")

    def basic_cancel(self, ch, msg):
        # The broker dropped our consumer (its queue was deleted, say): start
        # over on a new connection, which declares and consumes again.
        self._log.warn("the broker cancelled consumer {tag}; reconnecting",
                       tag=msg.consumer_tag)
        self.client.transport.loseConnection()

    def connection_close(self, ch, msg):
        if msg.reply_code != REPLY_SUCCESS:
            self._log.warn("the broker closed the connection: {code} {text}",
                           code=msg.reply_code, text=msg.reply_text)
        TwistedDelegate.connection_close(self, ch, msg)


class BusProtocol(AMQClient):
    """
    A txamqp client whose C{basic.deliver} messages are passed straight to
    the callable registered for their consumer tag.

    @ivar consumers: Consumer tag to callable taking
        C{(routing_key, body, content_type)}, with C{body} always C{bytes}.
    @ivar login_sent: Whether C{connection.start-ok} (the credentials) went
        out.
    @ivar tuned: Whether the broker answered it with C{connection.tune},
        which it does only if it accepted the credentials.
    @ivar blocked: Whether the broker asked us to stop publishing
        (C{connection.blocked}, for example when it is short of memory).
    """

    _log = Logger()
    login_sent = False
    tuned = False
    blocked = False
    # A broker silent for two heartbeat intervals is taken for dead and the
    # connection dropped (txamqp's default waits three).
    MAX_UNSEEN_HEARTBEAT = 2

    def __init__(self, spec, vhost, heartbeat, clock, client_properties):
        AMQClient.__init__(self, _Delegate(), vhost, spec, heartbeat=heartbeat,
                           clock=clock)
        self.client_properties = dict(client_properties, capabilities=CAPABILITIES)
        self.consumers = {}
        self._start_ok = spec.classes.byname["connection"].methods.byname["start-ok"]

    def _pack_frame(self, frame):
        """
        Pack C{connection.start-ok} with L{encode_table}, everything else
        with txamqp.
        """
        payload = frame.payload
        if payload.type == Frame.METHOD and payload.method is self._start_ok:
            properties, mechanism, response, locale = payload.args
            method = self._start_ok
            body = (struct.pack("!HH", method.klass.id, method.id) + encode_table(properties)
                    + _shortstr(mechanism) + struct.pack("!I", len(response)) + response
                    + _shortstr(locale))
            return (struct.pack("!BHI", 1, frame.channel, len(body)) + body
                    + struct.pack("!B", self.FRAME_END))
        return AMQClient._pack_frame(self, frame)

    def connectionMade(self):
        # Packets are small writes that want an answer: with Nagle's algorithm
        # they wait for the ACK of the previous one (up to 40 ms with delayed
        # ACKs), so turn it off, as RabbitMQ does on its side.
        transport = self.transport
        handle = transport.getHandle() if hasattr(transport, "getHandle") else None
        if hasattr(transport, "setTcpNoDelay"):
            transport.setTcpNoDelay(True)
        elif hasattr(handle, "setsockopt"):
            handle.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        AMQClient.connectionMade(self)

    def deliver(self, msg):
        """
        Hand one delivery decoded by txamqp to its consumer (the path taken by
        deliveries that reach txamqp's dispatcher rather than L{_frame}).
        """
        content = msg.content
        self._consume(msg.consumer_tag, msg.routing_key, as_bytes(content.body),
                      content.properties.get("content-type"))

    def _consume(self, tag, routing_key, body, content_type):
        """
        Hand one message to its consumer.  Nothing a consumer raises reaches
        txamqp (which would close the connection); it is logged instead.
        """
        handler = self.consumers.get(tag)
        if handler is None:
            self._log.debug("delivery for unknown consumer {tag}", tag=tag)
            return
        try:
            handler(routing_key, body, content_type)
        except Exception:
            self._log.failure("consumer failed on a message with key {key}",
                              key=routing_key)

    # The fast path.  txamqp turns every frame into objects and passes it
    # through several Deferreds and generators; for the messages that make
    # up the traffic (basic.deliver, its header and body) that cost more
    # than everything else together.  Those are read here, from the bytes,
    # and handed straight to the consumer; every other frame goes to
    # txamqp as before.

    _buffer = b""
    _pending = None

    def dataReceived(self, data):
        if not self.frame_mode:
            return AMQClient.dataReceived(self, data)
        buf = self._buffer + data if self._buffer else data
        offset, end = 0, len(buf)
        while end - offset >= 8 and self.transport is not None:
            kind, channel, size = _FRAME_HEAD.unpack_from(buf, offset)
            last = offset + 7 + size
            if last >= end:
                break
            if buf[last] != _FRAME_END:
                self._log.error("the broker sent a malformed frame; dropping the "
                                "connection")
                self._buffer = b""
                self.transport.abortConnection()
                return None
            self._frame(kind, channel, buf, offset + 7, last)
            offset = last + 1
            if self.transport is not None and self.transport.disconnecting:
                break
        self._buffer = buf[offset:] if offset < end else b""
        self.flush()
        return None

    def _frame(self, kind, channel, buf, start, end):
        """
        Handle the frame whose payload is C{buf[start:end]}.
        """
        if self.heartbeatInterval > 0:
            self._heard = self.clock.seconds()
        if kind == _HEARTBEAT:
            return
        pending = self._pending
        if pending is not None and channel == pending[0]:
            if kind == _HEADER:
                size, flags = _HEADER_FIELDS.unpack_from(buf, start + 4)
                pending[4] = size
                if flags & 0x8000:
                    length = buf[start + 14]
                    pending[3] = buf[start + 15:start + 15 + length].decode("utf-8", "replace")
                if size == 0:
                    self._pending = None
                    self._consume(pending[1], pending[2], b"", pending[3])
                return
            if kind == _BODY:
                chunk = buf[start:end]
                if pending[5] is None and len(chunk) == pending[4]:
                    self._pending = None
                    self._consume(pending[1], pending[2], chunk, pending[3])
                    return
                pending[5] = (pending[5] or b"") + chunk
                if len(pending[5]) >= pending[4]:
                    self._pending = None
                    self._consume(pending[1], pending[2], pending[5], pending[3])
                return
        if kind == _METHOD and channel and buf[start:start + 4] == _DELIVER:
            at = start + 4
            length = buf[at]
            tag = buf[at + 1:at + 1 + length].decode("utf-8", "replace")
            at += 1 + length + 9  # delivery tag (8) and redelivered (1)
            at += 1 + buf[at]  # exchange
            length = buf[at]
            routing_key = buf[at + 1:at + 1 + length].decode("utf-8", "replace")
            # [channel, consumer tag, routing key, content type, size, body]
            self._pending = [channel, tag, routing_key, None, None, None]
            return
        self.frame_received(self._unpack_frame(buf[start - 7:end + 1]))

    # Heartbeats: txamqp cancels and re-arms a timer for every frame either
    # way; here each frame only notes the time, and the timers look at it.

    _heard = 0.0
    _said = 0.0

    def reschedule_check_heartbeat(self):
        self._heard = self.clock.seconds()
        if not self.checkHB.active():
            self.checkHB = self.clock.callLater(self._silence_limit(), self.check_heartbeat)

    def _silence_limit(self):
        return self.heartbeatInterval * self.MAX_UNSEEN_HEARTBEAT

    def check_heartbeat(self):
        silent = self.clock.seconds() - self._heard
        limit = self._silence_limit()
        if silent < limit:
            self.checkHB = self.clock.callLater(limit - silent, self.check_heartbeat)
            return
        self.transport.abortConnection()

    def reschedule_send_heartbeat(self):
        self._said = self.clock.seconds()
        if self.heartbeatInterval > 0 and self.tuned and not self.sendHB.running:
            self.sendHB.start(self.heartbeatInterval, now=False)

    def send_heartbeat(self):
        if self.clock.seconds() - self._said >= self.heartbeatInterval * 0.5:
            AMQClient.send_heartbeat(self)

    _unflushed = False

    def write_frames(self, data):
        """
        Write already packed frames, in one go.  They go out at the next
        L{flush}, or when the reactor next finds the socket writable.
        """
        self.transport.write(data)
        self._unflushed = True
        self._said = self.clock.seconds()

    def flush(self):
        """
        Send what L{write_frames} buffered now, instead of one reactor turn
        later: the end of a batch of deliveries or TUN reads calls this, so
        that a packet spends no extra turn (an C{epoll_wait}) in our buffer.

        Only a plain socket transport is flushed this way, and only while it
        is not closing: its C{doWrite} then sends and, once the buffer is
        empty, stops watching for writability.  Anything not sent (the socket
        is full) stays buffered for the reactor, as would an error, which the
        reactor then meets on its own C{doWrite}.
        """
        if not self._unflushed:
            return
        self._unflushed = False
        transport = self.transport
        if (isinstance(transport, abstract.FileDescriptor) and transport.connected
                and not transport.disconnecting):
            transport.doWrite()


class BusFactory(Factory):
    """
    Builds L{BusProtocol}s for one broker URL.
    """

    noisy = False

    def __init__(self, vhost, heartbeat, clock, client_properties):
        self.vhost = vhost
        self.heartbeat = heartbeat
        self.clock = clock
        self.client_properties = client_properties

    def buildProtocol(self, addr):
        return BusProtocol(load_spec(), self.vhost, self.heartbeat, self.clock,
                           self.client_properties)


@implementer(IPushProducer)
class BusSession:
    """
    One open AMQP connection with one channel, on one exchange.

    It is the push producer of its transport: when more than L{SEND_BUFFER}
    bytes wait to be sent, the transport pauses it and it refuses to publish
    until the transport drained.

    @ivar client: The connected L{BusProtocol}.
    @ivar channel: The txamqp channel everything goes through.
    @ivar paused: Whether the transport's send buffer is full.
    """

    _log = Logger()

    def __init__(self, client, channel, exchange):
        self.client = client
        self.channel = channel
        self.exchange = exchange
        self._tags = []
        self._method_frames = {}
        self._header_frames = {}
        self.closed = False
        self.paused = False
        transport = client.transport
        if hasattr(transport, "registerProducer"):
            if hasattr(transport, "bufferSize"):
                transport.bufferSize = SEND_BUFFER
            transport.registerProducer(self, True)

    def pauseProducing(self):
        self.paused = True
        self._log.debug("send buffer full: publishing paused")

    def resumeProducing(self):
        self.paused = False
        self._log.debug("send buffer drained: publishing resumed")

    def stopProducing(self):
        self.closed = True

    def refusal(self):
        """
        @return: Why a publish now would be refused (C{"not connected"},
            C{"broker blocked"}, C{"send buffer full"}), or C{None}.
        """
        if self.closed or self.channel.closed or self.client.closed:
            return "not connected"
        if self.client.blocked:
            return "broker blocked"
        if self.paused:
            return "send buffer full"
        return None

    @defer.inlineCallbacks
    def declare_queue(self, name, bindings, when_locked, max_length=DEFAULT_QUEUE_LIMIT):
        """
        Declare an exclusive, auto-delete queue that keeps at most
        C{max_length} messages (the oldest are dropped first), and bind it to
        each routing key in C{bindings}.

        @param when_locked: The L{FatalBusError} to fail with if another
            connection holds the queue (the broker answers 405).
        @raise ChannelClosed: if the broker refuses for another reason.
        """
        try:
            yield self.channel.queue_declare(
                queue=name, exclusive=True, auto_delete=True,
                arguments={"x-max-length": max_length, "x-overflow": "drop-head"})
        except ChannelClosed as e:
            if reply_of(e)[0] == RESOURCE_LOCKED:
                raise when_locked from None
            raise
        for key in bindings:
            yield self.channel.queue_bind(queue=name, exchange=self.exchange,
                                          routing_key=key)

    @defer.inlineCallbacks
    def consume(self, queue, handler):
        """
        Start consuming C{queue} without acknowledgements; C{handler} gets
        C{(routing_key, body, content_type)} for every message.

        @return: A L{Deferred} that fires with the consumer tag.
        """
        tag = f"ioppy-{len(self._tags) + 1}"
        self.client.consumers[tag] = handler
        try:
            reply = yield self.channel.basic_consume(queue=queue, consumer_tag=tag,
                                                     no_ack=True)
        except Exception:
            del self.client.consumers[tag]
            raise
        self._tags.append(reply.consumer_tag)
        return reply.consumer_tag

    def publish(self, routing_key, body, content_type):
        """
        Publish C{body} (C{bytes}) on the session's exchange.  The three
        frames (method, header, body) are packed here and written at once,
        with no L{Deferred} and no txamqp object per message; the method
        frame for each routing key is packed once.

        @return: C{False} if nothing was sent (see L{refusal}).
        """
        if self.refusal() is not None:
            return False
        method = self._method_frames.get(routing_key)
        if method is None:
            method = self._method_frame(routing_key)
        header = self._header_frames.get(content_type)
        if header is None:
            header = self._header_frame(content_type)
        size = len(body)
        chunk = self.client.MAX_LENGTH - 8
        if size <= chunk:
            frames = [method, header[0], _BODY_SIZE.pack(size), header[1],
                      _FRAME_HEAD.pack(_BODY, self.channel.id, size), body, _END]
        else:
            frames = [method, header[0], _BODY_SIZE.pack(size), header[1]]
            for start in range(0, size, chunk):
                part = body[start:start + chunk]
                frames += [_FRAME_HEAD.pack(_BODY, self.channel.id, len(part)), part, _END]
        self.client.write_frames(b"".join(frames))
        return True

    def _method_frame(self, routing_key):
        """
        @return: The packed basic.publish frame for C{routing_key}, cached.
        """
        exchange = self.exchange.encode("utf-8")
        key = routing_key.encode("utf-8")
        payload = (_PUBLISH + b"\0\0" + bytes([len(exchange)]) + exchange
                   + bytes([len(key)]) + key + b"\0")
        frame = _FRAME_HEAD.pack(_METHOD, self.channel.id, len(payload)) + payload + _END
        if len(self._method_frames) < 4096:
            self._method_frames[routing_key] = frame
        return frame

    def _header_frame(self, content_type):
        """
        @return: The packed content header for C{content_type}, in two parts
            around the body size, cached.
        """
        if content_type:
            kind = content_type.encode("utf-8")
            properties = b"\x80\x00" + bytes([len(kind)]) + kind
        else:
            properties = b"\0\0"
        head = _FRAME_HEAD.pack(_HEADER, self.channel.id, 12 + len(properties)) + _BASIC_HEAD
        frame = (head, properties + _END)
        self._header_frames[content_type] = frame
        return frame

    def flush(self):
        """
        Send the messages published so far now (see L{BusProtocol.flush}).
        """
        self.client.flush()

    def publish_message(self, message):
        """
        Publish a L{ioppy_agent.wire.Message}.
        """
        return self.publish(message.routing_key, message.body, message.content_type)

    @defer.inlineCallbacks
    def close(self, farewell=(), timeout=1.0):
        """
        Close in order: cancel the consumers, publish the C{farewell}
        messages, close the channel, then the connection, each with the AMQP
        handshake.  If the broker does not answer within C{timeout} seconds
        the connection is dropped instead.
        """
        if self.closed:
            return
        clock = self.client.clock
        try:
            for tag in self._tags:
                self.client.consumers.pop(tag, None)
                yield self.channel.basic_cancel(consumer_tag=tag).addTimeout(timeout, clock)
            for message in farewell:
                self.publish_message(message)
            self.closed = True
            yield self.channel.channel_close(reply_code=REPLY_SUCCESS,
                                             reply_text="goodbye").addTimeout(timeout, clock)
            self.channel.close(None)
            yield self.client.close(within=timeout)
        except (defer.TimeoutError, defer.CancelledError, Closed) as e:
            self._log.warn("the broker did not finish the close handshake ({error}); "
                           "dropping the connection", error=e.__class__.__name__)
        finally:
            self.closed = True
            if self.client.transport is not None:
                self.client.transport.loseConnection()


class HostsThenDNS:
    """
    A twisted.names resolver that reads C{/etc/hosts} first and asks the
    servers of C{/etc/resolv.conf} only for names not there (the DNS client
    is made on first use).  Unlike the reactor's default resolver
    (C{getaddrinfo} in a thread pool), it uses no threads.
    """

    def __init__(self, reactor, hosts_file=b"/etc/hosts", resolv="/etc/resolv.conf"):
        self._reactor = reactor
        self._hosts = hosts.Resolver(file=hosts_file)
        self._resolv = resolv
        self._dns = None

    def _chain(self):
        if self._dns is None:
            self._dns = ResolverChain([
                cache.CacheResolver(reactor=self._reactor),
                client.Resolver(resolv=self._resolv, reactor=self._reactor)])
        return self._dns

    def _lookup(self, method, name, timeout):
        d = getattr(self._hosts, method)(name, timeout)

        def not_in_hosts(reason):
            reason.trap(DomainError, DNSLookupError)
            return getattr(self._chain(), method)(name, timeout)

        return d.addErrback(not_in_hosts)

    def lookupAddress(self, name, timeout=None):
        return self._lookup("lookupAddress", name, timeout)

    def lookupIPV6Address(self, name, timeout=None):
        return self._lookup("lookupIPV6Address", name, timeout)


@defer.inlineCallbacks
def resolve(resolver, host):
    """
    Look up C{host}'s IPv4 address, else its IPv6 address.

    @return: A L{Deferred} firing with the address as text.
    @raise DNSLookupError: if there is neither.
    """
    for lookup, kind in ((resolver.lookupAddress, dns.A),
                         (resolver.lookupIPV6Address, dns.AAAA)):
        try:
            answers, _, _ = yield lookup(host, timeout=(1, 3, 5))
        except (DNSLookupError, DomainError, AuthoritativeDomainError,
                defer.TimeoutError, DNSQueryTimeoutError):
            continue
        for record in answers:
            if record.type == kind:
                if kind == dns.A:
                    return record.payload.dottedQuad()
                return socket.inet_ntop(socket.AF_INET6, record.payload.address)
    raise DNSLookupError(f"{host} has no IPv4 or IPv6 address")


@implementer(IStreamClientEndpoint)
class BrokerEndpoint:
    """
    TCP to the broker, with TLS if given client TLS options: an address is
    used as it is; a host name is looked up with L{resolve} at each
    connection attempt.
    """

    def __init__(self, reactor, host, port, timeout=10, resolver=None, tls=None):
        self._reactor = reactor
        self._host = host
        self._port = port
        self._timeout = timeout
        self._resolver = resolver
        self._tls = tls

    @defer.inlineCallbacks
    def connect(self, factory):
        address = self._host
        if not (isIPAddress(address) or isIPv6Address(address)):
            if self._resolver is None:
                self._resolver = HostsThenDNS(self._reactor)
            address = yield resolve(self._resolver, address)
        kind = TCP4ClientEndpoint if isIPAddress(address) else TCP6ClientEndpoint
        endpoint = kind(self._reactor, address, self._port, timeout=self._timeout)
        if self._tls is not None:
            endpoint = wrapClientTLS(self._tls, endpoint)
        return (yield endpoint.connect(factory))


def cause_of(error):
    """
    @return: What a txamqp L{Closed} wraps (the broker's close L{Message}, or
        the L{Failure} the connection was lost with), or C{error} itself.
    """
    if isinstance(error, Closed) and error.args:
        return error.args[0]
    return error


def describe(failure):
    """
    @return: One line saying why a connection attempt failed, for the log.
    """
    cause = cause_of(failure.value)
    if isinstance(cause, Failure):
        failure = cause
        cause = cause.value
    code, text = reply_of(failure.value)
    if code is not None:
        return f"the broker closed the connection: {code} {text}"
    if isinstance(cause, TLSError):
        return f"TLS failed: {tls_reason(cause)}"
    return failure.getErrorMessage() or failure.type.__name__


def tls_reason(error):
    """
    @return: A readable reason from a pyOpenSSL error or a service_identity
        verification error.
    """
    if isinstance(error, VerificationError):
        return f"the broker's certificate is not for this host ({error})"
    reasons = [part[2] for part in (error.args[0] if error.args else [])
               if isinstance(part, tuple) and len(part) == 3]
    return "; ".join(r for r in reasons if r) or str(error)


@defer.inlineCallbacks
def open_session(client, url, exchange):
    """
    Log in on a connected L{BusProtocol}, open channel 1 and check that the
    exchange exists.

    @return: A L{Deferred} firing with a L{BusSession}.
    @raise FatalBusError: if the broker refuses the login, the vhost or the
        exchange, or its TLS certificate does not verify: retrying would not
        help.
    """
    response = b"\0" + url.username.encode("utf-8") + b"\0" + url.password.encode("utf-8")
    try:
        yield client.start(response, mechanism="PLAIN")
        channel = yield client.channel(1)
        yield channel.channel_open()
        yield channel.exchange_declare(exchange=exchange, passive=True)
    except Closed as e:
        code, text = reply_of(e)
        who = f"user {url.username!r} on vhost {url.vhost!r}"
        if code == ACCESS_REFUSED and not client.tuned:
            raise FatalBusError(f"the broker refused the login of {who}: wrong user "
                                f"name or password ({text})", exit_code=EXIT_REFUSED) from None
        if code in (ACCESS_REFUSED, NOT_ALLOWED):
            raise FatalBusError(f"the broker refused {who}: {text}",
                                exit_code=EXIT_REFUSED) from None
        if code == NOT_FOUND:
            raise FatalBusError(f"exchange {exchange!r} does not exist on vhost "
                                f"{url.vhost!r}: {text}", exit_code=EXIT_REFUSED) from None
        cause = cause_of(e)
        if isinstance(cause, Failure) and cause.check(*TLSError):
            raise FatalBusError(f"TLS connection to {url.host}:{url.port} refused: "
                                f"{tls_reason(cause.value)}", exit_code=EXIT_TLS) from None
        if code is None and client.login_sent and not client.tuned:
            # RabbitMQ answers bad credentials by closing the connection
            # without a word (a client would have to announce the
            # authentication_failure_close capability, a boolean that
            # txamqp's table encoder cannot write).
            raise FatalBusError(f"the broker refused the login of {who}: wrong user "
                                "name or password", exit_code=EXIT_REFUSED) from None
        raise
    return BusSession(client, channel, exchange)


class BusConnector:
    """
    Keeps an AMQP session open: connects, logs in, then calls C{setup} with
    the new L{BusSession} to declare, bind and consume.  When the connection
    is lost, or connecting or set-up fails, it tries again after a jittered
    exponential back-off (Twisted's L{backoffPolicy}), which starts over only
    once a session is fully set up.

    Twisted's L{ClientService} is not used: its state machine has no
    transition for a connection that closes after C{prepareConnection}
    rejected it, or while it runs (it raises C{NoTransition}), and it resets
    the back-off as soon as TCP connects, before the broker accepted the
    login.

    @ivar session: The current L{BusSession}, or C{None} while there is none.
    @ivar state: C{"stopped"}, C{"connecting"}, C{"connected"} or
        C{"waiting to reconnect"}.
    @ivar failures: Failed attempts since the last good session.
    """

    _log = Logger()
    state = "stopped"

    def __init__(self, reactor, url, exchange, setup, on_fatal,
                 heartbeat=DEFAULT_HEARTBEAT, connection_name="ioppy",
                 endpoint=None, timeout=10, retry_policy=None, tls=None,
                 fallback_urls=()):
        """
        @param url: The broker's L{BrokerURL}.
        @param setup: Called with each new L{BusSession}; may return a
            L{Deferred}.  If it fails, the connection is dropped and retried,
            unless it fails with L{FatalBusError}.
        @param on_fatal: Called with a L{FatalBusError}; the connector has
            stopped trying by then.
        @param endpoint: Connect with this instead (tests).
        @param retry_policy: Failed attempts in a row to seconds to wait.
        @param tls: L{ioppy_agent.tls.TLSSettings} for C{amqps://} URLs (the
            system's CAs if C{None}).
        @param fallback_urls: More brokers (the other nodes of a cluster): each
            failure moves on to the next, round the list.
        """
        self.urls = (url, *fallback_urls)
        self._current = 0
        self.exchange = exchange
        self.session = None
        self._setup = setup
        self._on_fatal = on_fatal
        self._clock = reactor
        tls = tls if tls is not None else TLSSettings()
        self._endpoints = [
            endpoint if endpoint is not None else BrokerEndpoint(
                reactor, u.host, u.port, timeout, tls=tls.for_host(u.host) if u.tls else None)
            for u in self.urls]
        self._factories = [BusFactory(u.vhost, heartbeat, reactor, {
            "product": "ioppy-agent", "version": __version__,
            "connection_name": connection_name,
        }) for u in self.urls]
        self._policy = retry_policy or backoffPolicy(initialDelay=0.5, maxDelay=5.0)
        self._failures = 0
        self._attempt = None
        self._retry = None
        self._client = None
        self._stopping = False

    @property
    def url(self):
        """
        @return: The L{BrokerURL} in use (or tried next).
        """
        return self.urls[self._current]

    def _next_broker(self):
        self._current = (self._current + 1) % len(self.urls)

    def prepare(self):
        """
        Load what connecting needs from disk (the AMQP spec file), while the
        process still has the privileges it started with: after twistd's
        C{--uid} the package's directory may be unreadable.
        """
        load_spec()

    def start(self):
        """
        Start connecting.
        """
        self._stopping = False
        self._connect()

    @property
    def failures(self):
        return self._failures

    def _connect(self):
        self._retry = None
        self.state = "connecting"
        self._log.info("connecting to {url}", url=self.url.masked())
        self._attempt = d = self._endpoints[self._current].connect(
            self._factories[self._current])
        d.addCallback(self._prepare)
        d.addCallbacks(self._ready, self._failed)

    def _prepare(self, client):
        self._client = client
        d = open_session(client, self.url, self.exchange)

        def opened(session):
            self.session = session
            return defer.maybeDeferred(self._setup, session).addCallback(lambda _: client)

        def not_ready(reason):
            self.session = None
            if client.transport is not None:
                client.transport.loseConnection()
            return reason

        return d.addCallback(opened).addErrback(not_ready)

    def _ready(self, client):
        self._attempt = None
        self._failures = 0
        self.state = "connected"
        client.disconnected.wait().addCallback(self._lost, client)

    def _failed(self, reason):
        self._attempt = None
        self._client = None
        if self._stopping:
            return None
        if reason.check(FatalBusError):
            self._stopping = True
            self.state = "stopped"
            self._on_fatal(reason.value)
            return None
        self._failures += 1
        self.state = "waiting to reconnect"
        failed_url = self.url
        self._next_broker()
        delay = self._policy(self._failures)
        self._log.warn("connecting to {url} failed: {error}; trying {next} in {delay:.1f} s",
                       url=failed_url.masked(), error=describe(reason), delay=delay,
                       next="again" if self.url is failed_url else self.url.masked())
        self._retry = self._clock.callLater(delay, self._connect)
        return None

    def _lost(self, _, client):
        if self._client is not client:
            return
        self._client = None
        self.session = None
        if self._stopping:
            return
        self.state = "waiting to reconnect"
        lost_url = self.url
        self._next_broker()
        delay = self._policy(1)
        self._log.warn("lost the connection to {url}; connecting to {next} in {delay:.1f} s",
                       url=lost_url.masked(), delay=delay,
                       next="it again" if self.url is lost_url else self.url.masked())
        self._retry = self._clock.callLater(delay, self._connect)

    @defer.inlineCallbacks
    def stop(self, farewell=(), timeout=1.0):
        """
        Close the session in order (see L{BusSession.close}), and stop
        reconnecting.
        """
        self._stopping = True
        self.state = "stopped"
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        if self._attempt is not None:
            attempt, self._attempt = self._attempt, None
            attempt.cancel()
        session, self.session = self.session, None
        if session is not None:
            yield session.close(farewell, timeout)
        elif self._client is not None and self._client.transport is not None:
            self._client.transport.loseConnection()
