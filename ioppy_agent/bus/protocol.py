"""
The AMQP protocol: a txamqp L{AMQClient} whose bytes are read by
L{reader.FrameReader} instead of txamqp's own reader.

Deliveries (C{basic.deliver} with its header and body) never reach txamqp:
the reader assembles them from the bytes and they go straight to the
consumer registered for their tag, as C{bytes}.  Every other method is
checked (a reply must answer the request txamqp is waiting for; a request
must be one this client handles), then decoded and dispatched by txamqp.
Whatever breaks the protocol closes the connection with the AMQP reply
code for it, logged; the connector then connects again.  The txamqp
internals relied on are in L{ioppy_agent.bus.spec.TXAMQP_INTERNALS}.
"""

import socket

from twisted.internet import abstract, defer
from twisted.logger import Logger
from txamqp.connection import Frame
from txamqp.protocol import AMQClient

from . import framing
from .conversation import Conversation
from .delegate import BusChannel, Delegate
from .errors import REPLY_SUCCESS, SYNTAX_ERROR, ProtocolViolation
from .reader import Delivery, FrameReader

# What the client tells RabbitMQ it understands: a connection.close instead
# of a silent drop on a refused login, connection.blocked/unblocked, and a
# basic.cancel when the broker drops the consumer.
CAPABILITIES = {"authentication_failure_close": True, "connection.blocked": True,
                "consumer_cancel_notify": True}

HANG_UP_WAIT = 1.0  # seconds to wait for close-ok after closing for a violation
WHOLE = object()  # marks a consumer of whole deliveries in the registry


class BusProtocol(AMQClient):
    """
    A txamqp client with the frame reader of L{reader}.

    @ivar consumers: Consumer tag to C{(handler, oversize)}: C{handler} takes
        C{(routing_key, body, content_type, user_id)}, C{body} C{bytes};
        C{oversize} takes C{(routing_key, size)} for a message too large to
        keep, or is C{None}; or C{(handler, WHOLE)}: C{handler} takes the
        L{Delivery} itself (a stream's consumer, which acknowledges).
    @ivar acking: Consumer tag to C{[every, count]}: each C{every}-th
        delivery is acknowledged, with every one before it.
    @ivar login_sent: Whether C{connection.start-ok} (the credentials) went out.
    @ivar tuned: Whether the broker answered it with C{connection.tune},
        which it does only if it accepted the credentials.
    @ivar blocked: Whether the broker asked us to stop publishing.
    @ivar ready: Set by the connector once the session is set up.
    @ivar lost_reason: Why the connection is going away, when this side
        knows (a violation, a heartbeat timeout, the broker's close).
    @ivar refused: The broker's text, when it closed a channel for want of
        a permission (403): retrying will not help.
    @ivar max_deliveries_per_read: Deliveries handled before the protocol
        lets the reactor run again: for an agent, as many as its TUN port
        reads per turn, so that the TUN is read in between.
    """

    _log = Logger()
    channelClass = BusChannel
    login_sent = False
    tuned = False
    blocked = False
    ready = False
    lost_reason = None
    refused = None
    max_deliveries_per_read = 64
    # A broker silent for two heartbeat intervals is taken for dead and the
    # connection dropped (txamqp's default waits three).
    MAX_UNSEEN_HEARTBEAT = 2
    MAX_LENGTH = framing.FRAME_MAX

    def __init__(self, spec, vhost, heartbeat, clock, client_properties,
                 max_body=framing.MAX_BODY):
        AMQClient.__init__(self, Delegate(), vhost, spec, heartbeat=heartbeat,
                           clock=clock)
        self.client_properties = dict(client_properties, capabilities=CAPABILITIES)
        self.consumers = {}
        self.acking = {}
        self.reader = FrameReader(framing.FRAME_MAX, max_body)
        self.conversation = Conversation()
        self._hanging_up = None
        self._resuming = None
        self._first = True

    # Writing.

    def _pack_frame(self, frame):
        """Pack the methods of L{framing.PACKED_HERE} here, the rest with txamqp."""
        payload = frame.payload
        if payload.type == Frame.METHOD:
            pack = framing.PACKED_HERE.get((payload.method.klass.id, payload.method.id))
            if pack is not None:
                return pack(frame.channel, *payload.args)
        return AMQClient._pack_frame(self, frame)

    def connectionMade(self):
        # Packets are small writes that want an answer: Nagle's algorithm would
        # hold each until the last is ACKed (40 ms), so off, as on RabbitMQ's side.
        transport = self.transport
        handle = transport.getHandle() if hasattr(transport, "getHandle") else None
        if hasattr(transport, "setTcpNoDelay"):
            transport.setTcpNoDelay(True)
        elif hasattr(handle, "setsockopt"):
            handle.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        AMQClient.connectionMade(self)

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
        Send what L{write_frames} buffered now, not one reactor turn later:
        the end of each batch of deliveries or TUN reads calls this.  Only a
        plain socket transport that is not closing is flushed (by its
        C{doWrite}); what the socket does not take, or an error, is left to
        the reactor's own C{doWrite}.
        """
        if not self._unflushed:
            return
        self._unflushed = False
        transport = self.transport
        if (isinstance(transport, abstract.FileDescriptor) and transport.connected
                and not transport.disconnecting):
            transport.doWrite()

    # Requests and replies.

    def sending(self, channel, method, args):
        """
        Note a request txamqp is about to send: the replies it allows, and
        what it does to the channel.
        """
        key = (method.klass.id, method.id)
        nowait = False
        if "nowait" in method.fields.byname:
            nowait = args[method.fields.index(method.fields.byname["nowait"])]
        if not nowait:
            self.conversation.sent(channel, {(r.klass.id, r.id) for r in method.responses})
        if key == (20, 10):
            self.reader.open_channel(channel)
        elif key in (framing.CHANNEL_CLOSE, framing.CONNECTION_CLOSE):
            self.reader.closing_channel(channel)

    def tune(self, channel0, msg):
        """
        Answer C{connection.tune}: the frame size is the broker's, or this
        client's largest if smaller; the heartbeat is this client's.
        """
        frame_max = msg.frame_max or framing.FRAME_MAX
        if frame_max < framing.FRAME_MIN_SIZE:
            self.violated(ProtocolViolation(SYNTAX_ERROR, f"connection.tune with frame_max "
                                            f"{frame_max}, below the minimum "
                                            f"{framing.FRAME_MIN_SIZE}", 10, 30))
            return
        frame_max = min(frame_max, framing.FRAME_MAX)
        self.tuned = True
        self.MAX_LENGTH = self.reader.frame_max = frame_max
        channel0.connection_tune_ok(msg.channel_max, frame_max, self.heartbeatInterval)
        self.started.fire()

    def channel_closed(self, channel, code, text):
        """
        The broker closed C{channel}: its requests have failed by now.  The
        session is gone with it: the connection is closed (and, unless the
        broker refused a permission, made again).
        """
        self.conversation.channel_gone(channel)
        self.reader.close_channel(channel)
        reason = f"the broker closed channel {channel}: {code} {text}"
        if self.ready and self.refused is None:
            self._log.warn("{reason}; connecting again", reason=reason)
        self.hang_up(REPLY_SUCCESS, reason)

    # Reading.

    def dataReceived(self, data):
        if self._first:
            self._first = False
            if data[:4] == b"AMQP":
                self.lost_reason = (f"the broker does not speak AMQP 0-9-1 (it offered "
                                    f"protocol {'.'.join(str(b) for b in data[4:8])})")
                self.transport.loseConnection()
                return
        if self.transport is None or self._hanging_up is False:
            return
        self._heard = self.clock.seconds()
        self.reader.feed(data)
        if self._resuming is None:
            self._read()

    def _read(self):
        """
        Handle what the reader holds, up to L{max_deliveries_per_read}
        deliveries; if more remain, pause the transport and come back in the
        next reactor turn, after the reactor had a chance to run the TUN.
        """
        self._resuming = None
        deliveries = 0
        try:
            while deliveries < self.max_deliveries_per_read:
                event = self.reader.next_event()
                if event is None:
                    break
                if type(event) is Delivery:
                    deliveries += 1
                    self._deliver(event)
                else:
                    self._method(event)
                if self.transport is None or self._hanging_up is False:
                    break
            else:
                if self.reader.buffered and self.transport is not None:
                    self._resuming = self.clock.callLater(0, self._resume)
                    if hasattr(self.transport, "pauseProducing"):
                        self.transport.pauseProducing()
        except ProtocolViolation as violation:
            self.violated(violation)
        self.flush()

    def _resume(self):
        self._read()
        if self._resuming is None and self.transport is not None and \
                hasattr(self.transport, "resumeProducing"):
            self.transport.resumeProducing()

    def _method(self, event):
        if self._hanging_up is not None:
            if (event.class_id, event.method_id) in (framing.CONNECTION_CLOSE,
                                                     framing.CONNECTION_CLOSE_OK):
                self.transport.loseConnection()
            return
        self.conversation.check(event.channel, (event.class_id, event.method_id), event.name)
        try:
            frame = self._unpack_frame(event.frame)
        except Exception as e:
            raise ProtocolViolation(SYNTAX_ERROR, f"{event.name} that cannot be decoded "
                                    f"({e.__class__.__name__}: {e})",
                                    event.class_id, event.method_id) from None
        self.frame_received(frame)

    def _deliver(self, delivery):
        """
        Hand one delivery to its consumer.  Nothing a consumer raises reaches
        txamqp (which would close the connection); it is logged instead.
        """
        if self._hanging_up is not None:
            return
        consumer = self.consumers.get(delivery.consumer_tag)
        if consumer is None:
            self._log.debug("delivery for unknown consumer {tag}", tag=delivery.consumer_tag)
            return
        handler, oversize = consumer
        try:
            if oversize is WHOLE:
                handler(delivery)
            elif delivery.oversize:
                if oversize is None:
                    self._log.warn("dropped a {size}-byte message on {key}: larger than "
                                   "{limit} bytes", size=delivery.size,
                                   key=delivery.routing_key, limit=self.reader.max_body)
                else:
                    oversize(delivery.routing_key, delivery.size)
            else:
                handler(delivery.routing_key, delivery.body, delivery.content_type,
                        delivery.user_id)
        except Exception:
            self._log.failure("consumer failed on a message with key {key}",
                              key=delivery.routing_key)
        acking = self.acking.get(delivery.consumer_tag)
        if acking is not None:  # [every, handled since the last ack]
            acking[1] += 1
            if acking[1] >= acking[0]:
                acking[1] = 0
                self.write_frames(framing.pack_basic_ack(delivery.channel,
                                                         delivery.delivery_tag, True))

    # Closing.

    def violated(self, violation):
        """
        The broker broke the protocol: log why and close the connection with
        the violation's reply code.  Once closing, more of the same drops the
        connection at once.
        """
        if self._hanging_up is not None:
            self._log.debug("the broker broke the AMQP protocol again ({what}); dropping "
                            "the connection", what=violation.text)
            self._abort()
            return
        self._log.error("the broker broke the AMQP protocol: it sent {what}; closing the "
                        "connection ({code}) and connecting again", what=violation.text,
                        code=violation.reply_code)
        self.hang_up(violation.reply_code, f"protocol violation: {violation.text}",
                     violation.class_id, violation.method_id)

    def hang_up(self, code, reason, class_id=0, method_id=0):
        """
        Close the connection without waiting for anything else: send
        C{connection.close} with C{code}, skip everything but the broker's
        answer, and drop the connection when it comes or after
        L{HANG_UP_WAIT} seconds.
        """
        if self.lost_reason is None:
            self.lost_reason = reason
        transport = self.transport
        if self._hanging_up is not None or transport is None or transport.disconnecting:
            return
        self.reader.closing_channel(0)
        self.write_frames(framing.pack_connection_close(code, reason, class_id, method_id))
        self.flush()
        self._hanging_up = self.clock.callLater(HANG_UP_WAIT, self._abort)

    def _abort(self):
        self._hanging_up = False
        if self.transport is not None:
            self.transport.abortConnection()

    @defer.inlineCallbacks
    def close_connection(self, timeout):
        """
        The orderly end: C{connection.close} with 200, then wait (at most
        C{timeout} seconds) for the broker's C{close-ok}.
        """
        channel0 = yield self.channel(0)
        d = channel0.connection_close(reply_code=REPLY_SUCCESS, reply_text="goodbye",
                                      class_id=0, method_id=0)
        yield d.addTimeout(timeout, self.clock)

    def connectionLost(self, reason):
        for call in (self._hanging_up, self._resuming):
            if call and call.active():
                call.cancel()
        self._hanging_up = False
        self._resuming = None
        AMQClient.connectionLost(self, reason)

    # Heartbeats: txamqp re-arms a timer for every frame either way; here each
    # read and write only notes the time, and the timers look at it.
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
        self.lost_reason = (f"nothing heard from the broker for {silent:.1f} s (heartbeat "
                            f"{self.heartbeatInterval} s)")
        if self.transport is not None:
            self.transport.abortConnection()

    def reschedule_send_heartbeat(self):
        self._said = self.clock.seconds()
        if self.heartbeatInterval > 0 and self.tuned and not self.sendHB.running:
            self.sendHB.start(self.heartbeatInterval, now=False)

    def send_heartbeat(self):
        if self.clock.seconds() - self._said >= self.heartbeatInterval * 0.5:
            AMQClient.send_heartbeat(self)

