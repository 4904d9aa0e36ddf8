"""
L{BusSession}: the few operations the agent and the router need on one
channel of one exchange, once logged in (L{ioppy_agent.bus.login}); those
on streams are in L{ioppy_agent.bus.streams}.

Declaring, binding, consuming and closing go through txamqp (they happen a
few times per connection); publishing writes frames packed by
L{framing.Publisher} at once, with no txamqp object or Deferred per
message.
"""

from twisted.internet import defer
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from txamqp.client import ChannelClosed, Closed
from zope.interface import implementer

from ..model.actions import DropReason
from . import framing
from .errors import (ACCESS_REFUSED, NOT_FOUND, PRECONDITION_FAILED, REPLY_SUCCESS,
                     RESOURCE_LOCKED, NotFound, QueueLocked, QueueMismatch)
from .replies import reply_of
from .streams import StreamOperations

DEFAULT_QUEUE_LIMIT = 1000
# And at most this many bytes: a thousand full-size packets as JSON pass, a
# participant's few giant messages do not pile up for a stalled receiver.
DEFAULT_QUEUE_BYTES = 64 << 20
# Bytes the connection may hold unsent before publishing pauses: about a
# hundred full-size packets as JSON, so bursts pass but a stalled broker
# cannot make the process hoard memory.
SEND_BUFFER = 512 * 1024
# Seconds the orderly close waits for the connection to be gone, after the
# broker's close-ok, before it aborts it.
CLOSED_WAIT = 0.25


def _bounded(max_length):
    """
    @return: The arguments of a queue that keeps at most C{max_length}
        messages and L{DEFAULT_QUEUE_BYTES}, dropping the oldest first.
    """
    return {"x-max-length": max_length, "x-max-length-bytes": DEFAULT_QUEUE_BYTES,
            "x-overflow": "drop-head"}


@implementer(IPushProducer)
class BusSession(StreamOperations):
    """
    One open AMQP connection with one channel, on one exchange.

    It is the push producer of its transport: when more than L{SEND_BUFFER}
    bytes wait to be sent, the transport pauses it and it refuses to publish
    until the transport drained.

    @ivar client: The connected L{BusProtocol}.
    @ivar channel: The txamqp channel everything goes through.
    @ivar paused: Whether the transport's send buffer is full.
    @ivar user_id: The user it logged in as, which its control messages
        carry (L{publish_message}).
    """

    _log = Logger()

    def __init__(self, client, channel, exchange, user_id=None):
        self.client = client
        self.user_id = user_id
        self.channel = channel
        self.exchange = exchange
        self._tags = []
        self._consumers = 0  # made so far: each consumer tag is new
        self._publisher = framing.Publisher(channel.id, exchange)
        self._to_queues = None
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
        @return: Why a publish now would be refused, a L{DropReason}
            (C{NOT_CONNECTED}, C{BROKER_BLOCKED}, C{SEND_BUFFER_FULL}), or
            C{None}.
        """
        client = self.client
        if self.closed or self.channel.closed or client.closed or client.lost_reason:
            return DropReason.NOT_CONNECTED
        if client.blocked:
            return DropReason.BROKER_BLOCKED
        if self.paused:
            return DropReason.SEND_BUFFER_FULL
        return None

    def declare_queue(self, name, bindings, max_length=DEFAULT_QUEUE_LIMIT):
        """
        Declare an exclusive, auto-delete queue that keeps at most
        C{max_length} messages (the oldest are dropped first), and bind it to
        each routing key in C{bindings}.

        @raise QueueLocked: if another connection holds the queue (the broker
            answers 405).
        @raise ChannelClosed: if the broker refuses for another reason.
        """
        return self._declare(
            name, bindings,
            {RESOURCE_LOCKED: lambda text: QueueLocked(f"queue {name!r} is held by another "
                                                       f"connection: {text}")},
            exclusive=True, auto_delete=True, arguments=_bounded(max_length))

    def declare_shared_queue(self, name, bindings, max_length=DEFAULT_QUEUE_LIMIT):
        """
        Declare a durable queue for another program to consume (in a
        session made by C{ioppy-session}, the router declares each
        participant's, which may not declare anything), keeping at most
        C{max_length} messages, and bind it to each key in C{bindings}.

        @raise QueueMismatch: if it exists with other settings.
        """
        return self._declare(
            name, bindings,
            {PRECONDITION_FAILED: lambda text: QueueMismatch(
                f"the queue {name!r} exists with other settings: {text}")},
            durable=True, arguments=_bounded(max_length))

    @defer.inlineCallbacks
    def queue_exists(self, name):
        """
        Check that queue C{name} exists (a passive declare, which needs no
        permission).

        @raise NotFound: if it does not (the broker closed the channel).
        @raise QueueLocked: if another connection holds it exclusively.
        """
        try:
            yield self.channel.queue_declare(queue=name, passive=True)
        except ChannelClosed as e:
            code, text = reply_of(e)
            if code == NOT_FOUND:
                raise NotFound(f"no queue {name!r}: {text}") from None
            if code == RESOURCE_LOCKED:
                raise QueueLocked(f"queue {name!r} is held by another connection: "
                                  f"{text}") from None
            raise

    @defer.inlineCallbacks
    def _declare(self, name, bindings, refusals, **fields):
        """
        Declare queue C{name} with C{fields} and bind it to each key in
        C{bindings}.  If the broker refuses with a reply code of
        C{refusals}, its error (made from the broker's text) is raised.
        """
        try:
            yield self.channel.queue_declare(queue=name, **fields)
        except ChannelClosed as e:
            code, text = reply_of(e)
            if code in refusals:
                raise refusals[code](text) from None
            raise
        for binding in bindings:
            yield self.bind(name, binding)

    def _new_tag(self):
        self._consumers += 1
        return f"ioppy-{self._consumers}"

    def cancel(self, tag):
        """
        Stop the consumer C{tag}: its handler gets what the broker sends it
        until the broker confirms, then nothing.
        """
        self.client.acking.pop(tag, None)
        if tag in self._tags:
            self._tags.remove(tag)
        d = self.channel.basic_cancel(consumer_tag=tag)
        return d.addBoth(lambda result: (self.client.consumers.pop(tag, None), result)[1])

    def _binding(self, binding):
        if isinstance(binding, str):
            return self.exchange, binding
        return binding

    def bind(self, queue, binding):
        """
        Bind C{queue}, while consuming, to C{binding}: a routing key on the
        session's exchange, or C{(exchange, key)}.
        """
        exchange, key = self._binding(binding)
        return self.channel.queue_bind(queue=queue, exchange=exchange, routing_key=key)

    def declare_exchange(self, name, kind, arguments=None):
        """
        Declare a durable exchange C{name} of type C{kind} (it and its
        bindings outlive this session, and a broker restart).
        """
        return self.channel.exchange_declare(exchange=name, type=kind, durable=True,
                                             arguments=arguments or {})

    def bind_exchange(self, destination, source, key="", arguments=None):
        """Bind exchange C{destination} to exchange C{source}."""
        return self.channel.exchange_bind(destination=destination, source=source,
                                          routing_key=key, arguments=arguments or {})

    def consume(self, queue, handler, oversize=None, exclusive=False, prefetch=0):
        """
        Start consuming C{queue}; C{handler} gets
        C{(routing_key, body, content_type, user_id)} for every message
        (C{user_id} the property the broker checked, or C{None}), and
        C{oversize} C{(routing_key, size)} for one too large to keep.

        @param exclusive: Whether to be the queue's only consumer.
        @param prefetch: Deliveries the broker may send unacknowledged; they
            are acknowledged (one C{basic.ack}, multiple) each time a
            quarter of them has been handled.  0: no acknowledgements.
        @raise QueueLocked: if C{exclusive} and another connection consumes
            it.
        @return: A L{Deferred} that fires with the consumer tag.
        """
        def refusal(code, text):
            if exclusive and code == ACCESS_REFUSED and "exclusive" in text:
                # Not a permission: another consumer holds the queue.
                self.client.refused = None
                return QueueLocked(f"queue {queue!r} is consumed by another connection: "
                                   f"{text}")
            return None

        tag = self._new_tag()
        if prefetch:
            self.client.acking[tag] = [max(1, prefetch // 4), 0]
        return self._start_consumer(tag, (handler, oversize), prefetch, refusal, queue=queue,
                                    no_ack=not prefetch, exclusive=exclusive)

    @defer.inlineCallbacks
    def _start_consumer(self, tag, consumer, prefetch, refusal, **fields):
        """
        Register C{consumer} under C{tag}, set the prefetch (if any) and
        C{basic.consume} with C{fields}; if that fails the consumer is
        forgotten, and a broker's refusal C{(code, text)} for which
        C{refusal} returns an error raises that error instead.

        @return: A L{Deferred} that fires with the consumer tag.
        """
        self.client.consumers[tag] = consumer
        try:
            if prefetch:
                yield self.channel.basic_qos(prefetch_count=prefetch)
            reply = yield self.channel.basic_consume(consumer_tag=tag, **fields)
        except Exception as e:
            self.client.consumers.pop(tag, None)
            self.client.acking.pop(tag, None)
            error = refusal(*reply_of(e)) if isinstance(e, ChannelClosed) else None
            if error is not None:
                raise error from None
            raise
        self._tags.append(reply.consumer_tag)
        return reply.consumer_tag

    def publish(self, routing_key, body, content_type, timestamp=None, headers=None):
        """
        Publish C{body} (C{bytes}) on the session's exchange: the method,
        header and body frames are written at once.

        @param timestamp: When the message entered the bus, sent in its
            C{timestamp} header (see L{framing.Publisher.frames}), or C{None}.
        @param headers: More of its headers (see L{framing.Publisher.frames}).
        @return: C{False} if nothing was sent (see L{refusal}).
        """
        if self.refusal() is not None:
            return False
        self.client.write_frames(self._publisher.frames(
            routing_key, body, content_type, self.client.MAX_LENGTH, timestamp, headers))
        return True

    def ack(self, delivery_tag, multiple=True):
        """
        Acknowledge the delivery C{delivery_tag} (and, with C{multiple},
        every one before it), as a stream consumer must for more to come.
        """
        if self.refusal() is DropReason.NOT_CONNECTED:
            return
        self.client.write_frames(framing.pack_basic_ack(self.channel.id, delivery_tag,
                                                        multiple))

    def publish_message(self, message):
        """
        Publish a control message, a L{ioppy_agent.model.wire.Message}: unlike a
        packet it is sent also while the send buffer is full or the broker
        blocks publishers (it is small, and losing it would lose state: an
        agent's routes, its acknowledgement, its announcement).  It carries
        the session's user as its C{user_id}, which the broker checks, so
        that its receivers know who sent it.

        @return: C{False} if nothing was sent, because the session is not
            connected.
        """
        if self.refusal() is DropReason.NOT_CONNECTED:
            return False
        self.client.write_frames(self._publisher.frames(
            message.routing_key, message.body, message.content_type, self.client.MAX_LENGTH,
            user_id=self.user_id))
        return True

    def flush(self):
        """
        Send the messages published so far now (see L{BusProtocol.flush}).
        """
        self.client.flush()

    @defer.inlineCallbacks
    def close(self, farewell=(), timeout=1.0):
        """
        Close in order: cancel the consumers, publish the C{farewell}
        messages, close the channel, then the connection, each with the AMQP
        handshake.  If the broker does not answer within C{timeout} seconds
        the connection is dropped instead.  It finishes once the connection
        is gone, never inside the transport's read callback that brought the
        broker's last answer: over TLS, a shutdown that goes on from there
        would tear the TLS connection down under its own feet.
        """
        if self.closed:
            return
        client = self.client
        clock = client.clock
        try:
            for tag in self._tags:
                self.client.consumers.pop(tag, None)
                yield self.channel.basic_cancel(consumer_tag=tag).addTimeout(timeout, clock)
            for message in farewell:
                self.publish_message(message)
            self.closed = True
            yield self.channel.channel_close(reply_code=REPLY_SUCCESS, reply_text="goodbye",
                                             class_id=0, method_id=0
                                             ).addTimeout(timeout, clock)
            self.channel.close(None)
            yield self.client.close_connection(timeout)
        except (defer.TimeoutError, defer.CancelledError, Closed) as e:
            self._log.warn("the broker did not finish the close handshake ({error}); "
                           "dropping the connection", error=e.__class__.__name__)
        finally:
            self.closed = True
            if client.transport is not None:
                client.transport.loseConnection()
        try:
            yield client.disconnected.wait().addTimeout(min(timeout, CLOSED_WAIT), clock)
        except defer.TimeoutError:
            # Over TLS, RabbitMQ does not answer our close_notify: after the
            # AMQP close there is nothing left to lose.
            if client.transport is not None:
                client.transport.abortConnection()
