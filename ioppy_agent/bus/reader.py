"""
L{FrameReader}: the broker's byte stream turned into methods and whole
deliveries, with whatever AMQP 0-9-1 does not allow refused.

The reader trusts nothing it is sent.  A frame larger than the negotiated
C{frame_max} is refused as soon as its 7-byte header arrives, before its
payload is buffered; a body is kept only up to L{MAX_BODY} (a larger one is
skipped as it streams past, never stored, and reported as oversize); the
bytes waiting for the rest of a frame are held as a list of reads and
joined once, so a slow frame costs no copy per read.  Frames out of order,
on channels that were never opened, of unknown types, or carrying methods a
broker does not send raise L{ProtocolViolation} with the reply code to
close the connection with.

Pure: this module imports neither Twisted nor txamqp; it is tested on bytes.
"""

import struct

from .errors import (CHANNEL_ERROR, COMMAND_INVALID, FRAME_ERROR, NOT_IMPLEMENTED,
                     SYNTAX_ERROR, UNEXPECTED_FRAME, ProtocolViolation)
from .framing import (BASIC_DELIVER, BROKER_MAX_BODY, CHANNEL_CLOSE, CHANNEL_CLOSE_OK,
                      CONNECTION_CLOSE, CONNECTION_CLOSE_OK, CONTENT_METHODS, FRAME_BODY,
                      FRAME_END, FRAME_HEAD, FRAME_HEADER, FRAME_HEARTBEAT, FRAME_MAX,
                      FRAME_METHOD, MAX_BODY, METHOD_IDS, OVERHEAD, SERVER_METHODS,
                      method_name)

_CONTENT_HEAD = struct.Struct("!HHQH")
_LONGLONG = struct.Struct("!Q")
_SHORT = struct.Struct("!H")


class MethodFrame:
    """
    A method frame, for the caller to decode.

    @ivar frame: The whole frame, header and end octet included.
    """

    __slots__ = ("channel", "class_id", "method_id", "frame")

    def __init__(self, channel, class_id, method_id, frame):
        self.channel = channel
        self.class_id = class_id
        self.method_id = method_id
        self.frame = frame

    @property
    def name(self):
        return method_name(self.class_id, self.method_id)

    def __repr__(self):
        return f"<MethodFrame {self.name} on channel {self.channel}>"


class Delivery:
    """
    One message with content (C{basic.deliver}), assembled from its method,
    content header and body frames.

    @ivar body: The body, C{bytes}; C{None} if it was larger than the
        reader's C{max_body} and was skipped (L{oversize}).
    @ivar size: The body size the content header announced.
    """

    __slots__ = ("channel", "consumer_tag", "delivery_tag", "redelivered", "exchange",
                 "routing_key", "content_type", "size", "body", "oversize",
                 "_received", "_chunks")

    def __init__(self, channel, consumer_tag, delivery_tag, redelivered, exchange,
                 routing_key):
        self.channel = channel
        self.consumer_tag = consumer_tag
        self.delivery_tag = delivery_tag
        self.redelivered = redelivered
        self.exchange = exchange
        self.routing_key = routing_key
        self.content_type = None
        self.size = None
        self.body = None
        self.oversize = False
        self._received = 0
        self._chunks = None

    def __repr__(self):
        return (f"<Delivery {self.routing_key!r} on channel {self.channel}, "
                f"{self.size} bytes>")


def _violation(code, text, ids=(0, 0)):
    return ProtocolViolation(code, text, *ids)


def _no_content_on_zero(channel):
    if channel == 0:
        raise _violation(CHANNEL_ERROR, "content frames on channel 0, which is for "
                                        "connection methods only")


def parse_deliver(channel, buf, start, end):
    """
    @return: The L{Delivery} that the C{basic.deliver} payload
        C{buf[start:end]} (past its class and method ids) begins.
    @raise ProtocolViolation: if its fields do not fit the payload.
    """
    try:
        at = start
        length = buf[at]
        tag = buf[at + 1:at + 1 + length].decode("utf-8", "replace")
        at += 1 + length
        delivery_tag, = _LONGLONG.unpack_from(buf, at)
        redelivered = bool(buf[at + 8] & 1)
        at += 9
        length = buf[at]
        exchange = buf[at + 1:at + 1 + length].decode("utf-8", "replace")
        at += 1 + length
        length = buf[at]
        routing_key = buf[at + 1:at + 1 + length].decode("utf-8", "replace")
        at += 1 + length
    except (IndexError, struct.error):
        at = end + 1
    if at > end:
        raise _violation(SYNTAX_ERROR, "basic.deliver: its fields overrun the frame",
                         BASIC_DELIVER)
    return Delivery(channel, tag, delivery_tag, redelivered, exchange, routing_key)


class FrameReader:
    """
    Turns the broker's bytes into L{MethodFrame}s and L{Delivery}s.

    Feed it each read with L{feed}, then call L{next_event} until it returns
    C{None}; it parses only as far as asked, so a caller can stop after a
    number of deliveries and come back for the rest.  Heartbeat frames are
    checked and consumed.

    Channel 0 is always open; other channels count as open once the caller
    says so (L{open_channel}, when it sends C{channel.open}).  While a
    channel is closing (the caller sent C{channel.close}, or with channel 0
    C{connection.close}), every frame on it but the two closing methods is
    skipped, as the spec requires.

    @ivar frame_max: The largest frame accepted, header and end octet
        included: the negotiated value once the connection is tuned.
    @ivar max_body: The largest body kept.
    @ivar skipped: Frames skipped on closing channels.
    """

    def __init__(self, frame_max=FRAME_MAX, max_body=MAX_BODY,
                 content_methods=frozenset({BASIC_DELIVER})):
        """
        @param content_methods: The content-bearing methods the caller
            handles; the others (C{basic.return}, C{basic.get-ok}) answer
            requests it never makes and are refused.
        """
        self.frame_max = frame_max
        self.max_body = max_body
        self.content_methods = content_methods
        self.skipped = 0
        self._buf = b""
        self._pos = 0
        self._chunks = []
        self._held = 0
        self._needed = 0
        self._open = {0}
        self._closing = set()
        self._content = {}

    # Channels.

    def open_channel(self, channel):
        """
        Accept frames on C{channel} from now on.
        """
        self._open.add(channel)
        self._closing.discard(channel)

    def closing_channel(self, channel):
        """
        Skip frames on C{channel} (all channels, for 0) until it is closed,
        except C{close} and C{close-ok}.
        """
        self._closing.add(channel)
        if channel == 0:
            self._content.clear()
        else:
            self._content.pop(channel, None)

    def close_channel(self, channel):
        """
        Refuse frames on C{channel} from now on (for 0, nothing changes: a
        closed connection reads nothing).
        """
        if channel:
            self._open.discard(channel)
            self._closing.discard(channel)
            self._content.pop(channel, None)

    def awaiting_content(self, channel):
        """
        @return: Whether C{channel} is in the middle of a message's content.
        """
        return channel in self._content

    # Bytes.

    @property
    def buffered(self):
        """
        @return: How many bytes are held, not yet parsed.
        """
        return len(self._buf) - self._pos + self._held

    def feed(self, data):
        """
        Take one read.  The bytes of an incomplete frame are kept as a list
        and joined once the frame is complete.
        """
        if not data:
            return
        if self._pos >= len(self._buf) and not self._chunks:
            self._buf, self._pos = data, 0
            return
        self._chunks.append(data)
        self._held += len(data)
        if self._held >= self._needed:
            self._join()

    def _join(self):
        self._buf = self._buf[self._pos:] + b"".join(self._chunks)
        self._pos = 0
        self._chunks = []
        self._held = 0
        self._needed = 0

    def next_event(self):
        """
        Parse frames until one gives a L{MethodFrame} or a complete
        L{Delivery}.

        @return: The event, or C{None} when the bytes held run out.
        @raise ProtocolViolation: for anything the protocol does not allow;
            the reader is then of no further use.
        """
        if self._chunks:
            if self._held < self._needed:
                return None
            self._join()
        buf = self._buf
        end = len(buf)
        while True:
            pos = self._pos
            if end - pos < 7:
                if end > pos:
                    self._needed = 7 - (end - pos)
                return None
            kind, channel, size = FRAME_HEAD.unpack_from(buf, pos)
            if size > self.frame_max - OVERHEAD:
                raise _violation(FRAME_ERROR, f"a frame of {size + OVERHEAD} bytes, more "
                                              f"than the negotiated frame_max {self.frame_max}")
            last = pos + 7 + size
            if last >= end:
                self._needed = last + 1 - end
                return None
            if buf[last] != FRAME_END:
                raise _violation(FRAME_ERROR, f"a frame that does not end with {FRAME_END:#x}")
            self._pos = last + 1
            if channel in self._closing or (0 in self._closing and channel):
                if self._closing_frame(kind, channel, buf, pos, size) is None:
                    self.skipped += 1
                    continue
            elif channel not in self._open:
                raise _violation(CHANNEL_ERROR, f"a frame of type {kind} on channel "
                                                f"{channel}, which was never opened")
            start = pos + 7
            if kind == FRAME_BODY:
                delivery = self._body(channel, buf, start, last)
                if delivery is not None:
                    return delivery
            elif kind == FRAME_METHOD:
                event = self._method(channel, buf, pos, start, last)
                if event is not None:
                    return event
            elif kind == FRAME_HEADER:
                delivery = self._header(channel, buf, start, last)
                if delivery is not None:
                    return delivery
            elif kind == FRAME_HEARTBEAT:
                if channel or size:
                    raise _violation(FRAME_ERROR, "a heartbeat frame with a channel or a "
                                                  "payload")
            else:
                raise _violation(FRAME_ERROR, f"a frame of unknown type {kind}")

    def _closing_frame(self, kind, channel, buf, pos, size):
        """
        @return: C{True} if a frame on a closing channel is one of the
            closing methods, which are read as usual; C{None} to skip it.
        """
        if kind != FRAME_METHOD or size < 4:
            return None
        ids = METHOD_IDS.unpack_from(buf, pos + 7)
        if channel == 0 and ids in (CONNECTION_CLOSE, CONNECTION_CLOSE_OK):
            return True
        if channel and channel in self._closing and ids in (CHANNEL_CLOSE, CHANNEL_CLOSE_OK):
            return True
        return None

    def _method(self, channel, buf, pos, start, last):
        if last - start < 4:
            raise _violation(FRAME_ERROR, "a method frame too short for its method ids")
        ids = METHOD_IDS.unpack_from(buf, start)
        if ids not in SERVER_METHODS:
            raise _violation(NOT_IMPLEMENTED, f"{method_name(*ids)}, which AMQP 0-9-1 "
                                              "brokers do not send", ids)
        if channel in self._content:
            raise _violation(UNEXPECTED_FRAME, f"{method_name(*ids)} on channel {channel} "
                                               "while a message's content was expected", ids)
        if (channel == 0) != (ids[0] == 10):
            raise _violation(CHANNEL_ERROR, f"{method_name(*ids)} on channel {channel}: "
                                            "channel 0 is for connection methods only", ids)
        if ids in CONTENT_METHODS:
            if ids not in self.content_methods:
                raise _violation(COMMAND_INVALID, f"{method_name(*ids)}, which answers "
                                                  "nothing this client does", ids)
            self._content[channel] = parse_deliver(channel, buf, start + 4, last)
            return None
        return MethodFrame(channel, ids[0], ids[1], buf[pos:last + 1])

    def _header(self, channel, buf, start, last):
        delivery = self._content.get(channel)
        if delivery is None or delivery.size is not None:
            _no_content_on_zero(channel)
            raise _violation(UNEXPECTED_FRAME, f"a content header on channel {channel} "
                                               "with no message before it")
        if last - start < 14:
            raise _violation(FRAME_ERROR, "a content header too short for its fields")
        class_id, weight, size, flags = _CONTENT_HEAD.unpack_from(buf, start)
        if class_id != 60 or weight:
            raise _violation(UNEXPECTED_FRAME, f"a content header of class {class_id}, "
                                               f"weight {weight} after basic.deliver")
        if size > BROKER_MAX_BODY:
            raise _violation(FRAME_ERROR, f"a content header announcing {size} bytes, "
                                          f"more than any broker sends ({BROKER_MAX_BODY})")
        at = start + 12
        more = flags
        while more & 1:
            at += 2
            if at + 2 > last:
                raise _violation(FRAME_ERROR, "content header property flags overrun the frame")
            more, = _SHORT.unpack_from(buf, at)
        if flags & 0x8000:
            at += 2
            length = buf[at] if at < last else 0
            if at + 1 + length > last:
                raise _violation(FRAME_ERROR, "the content type overruns the content header")
            delivery.content_type = buf[at + 1:at + 1 + length].decode("utf-8", "replace")
        delivery.size = size
        if size > self.max_body:
            delivery.oversize = True
        if size == 0:
            del self._content[channel]
            delivery.body = b""
            return delivery
        return None

    def _body(self, channel, buf, start, last):
        delivery = self._content.get(channel)
        if delivery is None or delivery.size is None:
            _no_content_on_zero(channel)
            raise _violation(UNEXPECTED_FRAME, f"a body frame on channel {channel} with no "
                                               "content header before it")
        length = last - start
        received = delivery._received + length
        if received > delivery.size:
            raise _violation(FRAME_ERROR, f"body frames carrying more than the "
                                          f"{delivery.size} bytes their header announced")
        if received == delivery.size:
            del self._content[channel]
            if delivery.oversize:
                return delivery
            chunks = delivery._chunks
            if chunks is None:
                delivery.body = buf[start:last]
            else:
                chunks.append(buf[start:last])
                delivery.body = b"".join(chunks)
                delivery._chunks = None
            return delivery
        delivery._received = received
        if not delivery.oversize and length:
            if delivery._chunks is None:
                delivery._chunks = []
            delivery._chunks.append(buf[start:last])
        return None
