"""
Deliveries: the named L{Delivery}, and L{Contents}, which assembles each one
from its C{basic.deliver}, content header and body frames for
L{ioppy_agent.bus.reader.FrameReader}.

The common case, a delivery whose three frames are whole in one read, is
read in one go (L{Contents.deliver}); otherwise the delivery waits, one per
channel, for its header and body frames (L{Contents.header},
L{Contents.body}), and a body larger than C{max_body} is counted as it
streams past, never stored.

Pure: this module imports neither Twisted nor txamqp.
"""

import struct

from .errors import CHANNEL_ERROR, FRAME_ERROR, SYNTAX_ERROR, UNEXPECTED_FRAME
from .errors import ProtocolViolation
from .framing import (BASIC_DELIVER, BROKER_MAX_BODY, FRAME_BODY, FRAME_END, FRAME_HEAD,
                      FRAME_HEADER, MAX_BODY, decode_table)

_CONTENT_HEAD = struct.Struct("!HHQH")
_LONGLONG = struct.Struct("!Q")
_SHORT = struct.Struct("!H")
_LONG = struct.Struct("!I")


class Delivery:
    """
    One message with content (C{basic.deliver}), assembled from its method,
    content header and body frames.

    @ivar body: The body, C{bytes}; C{None} if it was larger than the
        reader's C{max_body} and was skipped (then L{oversize} is true).
    @ivar size: The body size the content header announced.
    @ivar headers: The C{headers} property's field table as it came (its
        entries, without the length), for L{ioppy_agent.bus.framing.decode_table}
        to read if wanted; C{None} if the message had none.
    @ivar user_id: The C{user_id} property (the broker checks it against
        the publishing connection's user), or C{None}.
    """

    __slots__ = ("channel", "consumer_tag", "delivery_tag", "redelivered", "exchange",
                 "routing_key", "content_type", "size", "body", "oversize", "headers",
                 "user_id")

    def __init__(self, channel, consumer_tag, delivery_tag, redelivered, exchange,
                 routing_key, content_type, size, body, oversize=False, headers=None,
                 user_id=None):
        self.channel = channel
        self.consumer_tag = consumer_tag
        self.delivery_tag = delivery_tag
        self.redelivered = redelivered
        self.exchange = exchange
        self.routing_key = routing_key
        self.content_type = content_type
        self.size = size
        self.body = body
        self.oversize = oversize
        self.headers = headers
        self.user_id = user_id

    def __repr__(self):
        return (f"<Delivery {self.routing_key!r} on channel {self.channel}, "
                f"{self.size} bytes>")

    def header_table(self):
        """
        @return: The C{headers} property as Python values (C{{}} for none):
            timestamps as L{framing.Timestamp}, strings as C{bytes}.
        @raise ValueError: if the table cannot be read.
        """
        return {} if self.headers is None else decode_table(self.headers)

    @property
    def stream_offset(self):
        """
        The offset a stream gave this message (its C{x-stream-offset}
        header), or C{None}: not from a stream, or unreadable.
        """
        try:
            offset = self.header_table().get("x-stream-offset")
        except ValueError:
            return None
        return offset if isinstance(offset, int) and not isinstance(offset, bool) else None


class _Assembly:
    """
    A delivery whose content is still coming: the fields of its
    C{basic.deliver}, then those of its header, and the body so far.
    """

    __slots__ = ("fields", "content_type", "headers", "size", "received", "chunks",
                 "oversize", "user_id")

    def __init__(self, fields):
        self.fields = fields
        self.content_type = None
        self.headers = None
        self.user_id = None
        self.size = None
        self.received = 0
        self.chunks = []
        self.oversize = False

    def done(self, body):
        """
        @return: The L{Delivery}, with C{body}.
        """
        return Delivery(*self.fields, self.content_type, self.size, body, self.oversize,
                        self.headers, self.user_id)


# The content header's properties up to C{user_id}, in their order: flag,
# and what it holds (C{_SIZES} for the fixed sizes, else a short string).
_PROPERTIES = ((0x8000, "content type"), (0x4000, "content encoding"), (0x2000, "table"),
               (0x1000, "delivery mode"), (0x0800, "priority"), (0x0400, "correlation id"),
               (0x0200, "reply-to"), (0x0100, "expiration"), (0x0080, "message id"),
               (0x0040, "timestamp"), (0x0020, "type"), (0x0010, "user id"))
_SIZES = {"delivery mode": 1, "priority": 1, "timestamp": 8}


def _table(buf, at, last):
    """
    @return: The entries of the field table at C{buf[at]}, or C{None} if it
        does not end before C{last}.
    """
    if at + 4 > last:
        return None
    end = at + 4 + _LONG.unpack_from(buf, at)[0]
    return buf[at + 4:end] if end <= last else None


def _violation(code, text, ids=(0, 0)):
    return ProtocolViolation(code, text, *ids)


def _no_content_on_zero(channel):
    if channel == 0:
        raise _violation(CHANNEL_ERROR, "content frames on channel 0, which is for "
                                        "connection methods only")


class Contents:
    """
    The deliveries whose content is still coming, one per channel.

    @ivar max_body: The largest body kept.
    @ivar next_frame: After L{deliver} returned a L{Delivery}: where the
        frame after its body begins.
    """

    next_frame = 0

    def __init__(self, max_body=MAX_BODY):
        self.max_body = max_body
        self._open = {}

    def __contains__(self, channel):
        return channel in self._open

    def drop(self, channel):
        """
        Forget the delivery waiting on C{channel} (on all channels, for 0).
        """
        if channel == 0:
            self._open.clear()
        else:
            self._open.pop(channel, None)

    def deliver(self, channel, buf, start, last, end, limit):
        """
        Read a C{basic.deliver} whose payload past its ids is
        C{buf[start:last]}, and, in the common case that its content header
        and single body frame follow whole in C{buf} and need none of the
        checks of L{header} and L{body}, those too; L{next_frame} then says
        where the frame after them begins.  Otherwise the delivery waits for
        its content.

        @return: The L{Delivery}, or C{None} if its content is still to come.
        @raise ProtocolViolation: if the method's fields overrun its frame.
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
            at = last + 1
        if at > last:
            raise _violation(SYNTAX_ERROR, "basic.deliver: its fields overrun the frame",
                             BASIC_DELIVER)
        pos = last + 1
        fields = None
        if end - pos >= 22:
            kind, on, size = FRAME_HEAD.unpack_from(buf, pos)
            last = pos + 7 + size
            if kind == FRAME_HEADER and on == channel and 14 <= size <= limit \
                    and last < end and buf[last] == FRAME_END:
                fields = _CONTENT_HEAD.unpack_from(buf, pos + 7)
        # The common headers: a content type, and a headers table (a raw
        # packet's timestamp, a stream's offset).
        if fields is not None and fields[0] == 60 and not fields[1] \
                and not fields[3] & 0x5FFF and fields[2] <= self.max_body:
            body_size = fields[2]
            content_type = headers = None
            at = pos + 21
            if fields[3] & 0x8000:
                length = buf[at]
                content_type = (buf[at + 1:at + 1 + length].decode("utf-8", "replace")
                                if at + 1 + length <= last else False)
                at += 1 + length
            if fields[3] & 0x2000 and content_type is not False:
                headers = _table(buf, at, last)
                if headers is None:
                    content_type = False  # cut short: the checks of header() say so
            if content_type is not False:
                pos = last + 1
                body = b""
                if body_size:
                    body = None
                    if end - pos >= 8:
                        kind, on, size = FRAME_HEAD.unpack_from(buf, pos)
                        last = pos + 7 + size
                        if kind == FRAME_BODY and on == channel and size == body_size \
                                and size <= limit and last < end and buf[last] == FRAME_END:
                            body = buf[pos + 7:last]
                            pos = last + 1
                if body is not None:
                    self.next_frame = pos
                    return Delivery(channel, tag, delivery_tag, redelivered, exchange,
                                    routing_key, content_type, body_size, body, False,
                                    headers)
        self._open[channel] = _Assembly((channel, tag, delivery_tag, redelivered, exchange,
                                         routing_key))
        return None

    def header(self, channel, buf, start, last):
        """
        Read the content header of the delivery waiting on C{channel}.

        @return: The L{Delivery} if its body is empty, else C{None}.
        """
        delivery = self._open.get(channel)
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
        at += 2
        for flag, kind in _PROPERTIES:
            if not flags & flag:
                continue
            if kind == "table":
                table = _table(buf, at, last)
                if table is None:
                    raise _violation(FRAME_ERROR, "the headers table overruns the content "
                                                  "header")
                delivery.headers = table
                at += 4 + len(table)
                continue
            length = _SIZES.get(kind) or 1 + (buf[at] if at < last else 0)
            if at + length > last:
                raise _violation(FRAME_ERROR, f"the {kind} overruns the content header")
            if kind == "content type":
                delivery.content_type = buf[at + 1:at + length].decode("utf-8", "replace")
            elif kind == "user id":
                delivery.user_id = buf[at + 1:at + length].decode("utf-8", "replace")
                break
            at += length
        delivery.size = size
        if size > self.max_body:
            delivery.oversize = True
        if size == 0:
            del self._open[channel]
            return delivery.done(b"")
        return None

    def body(self, channel, buf, start, last):
        """
        Read one body frame of the delivery waiting on C{channel}.

        @return: The L{Delivery} once its body is complete, else C{None}.
        """
        delivery = self._open.get(channel)
        if delivery is None or delivery.size is None:
            _no_content_on_zero(channel)
            raise _violation(UNEXPECTED_FRAME, f"a body frame on channel {channel} with no "
                                               "content header before it")
        length = last - start
        received = delivery.received + length
        if received > delivery.size:
            raise _violation(FRAME_ERROR, f"body frames carrying more than the "
                                          f"{delivery.size} bytes their header announced")
        delivery.received = received
        if not delivery.oversize and length:
            delivery.chunks.append(buf[start:last])
        if received < delivery.size:
            return None
        del self._open[channel]
        return delivery.done(None if delivery.oversize else b"".join(delivery.chunks))
