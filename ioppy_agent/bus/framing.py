"""
AMQP 0-9-1 framing as bytes: the protocol's constants and method table,
packing the frames the client sends (L{Publisher} for messages), and
encoding field tables.  L{ioppy_agent.bus.reader} reads what the broker
sends.

Pure: this module imports neither Twisted nor txamqp; it is tested on bytes.
"""

import struct

FRAME_METHOD, FRAME_HEADER, FRAME_BODY, FRAME_HEARTBEAT = 1, 2, 3, 8
FRAME_END = 0xCE
# Every frame has a 7-byte header and one end octet around its payload.
FRAME_HEAD = struct.Struct("!BHI")
OVERHEAD = 8
# The smallest frame_max a peer may negotiate, and the largest this client
# accepts (RabbitMQ's default).
FRAME_MIN_SIZE = 4096
FRAME_MAX = 131072
# The largest body kept: a 65,535-byte packet is at most about 330 KB as
# ioppytest JSON, so anything larger is not a packet.
MAX_BODY = 1 << 20
# RabbitMQ refuses messages over 512 MiB (the ceiling of max_message_size):
# a header announcing more does not come from a broker.
BROKER_MAX_BODY = 512 << 20

BASIC_DELIVER = (60, 60)
BASIC_RETURN = (60, 50)
BASIC_GET_OK = (60, 71)
CONTENT_METHODS = frozenset({BASIC_DELIVER, BASIC_RETURN, BASIC_GET_OK})

# The methods an AMQP 0-9-1 broker (with RabbitMQ's extensions) may send.
SERVER_METHODS = {
    (10, 10): "connection.start", (10, 20): "connection.secure",
    (10, 30): "connection.tune", (10, 41): "connection.open-ok",
    (10, 50): "connection.close", (10, 51): "connection.close-ok",
    (10, 60): "connection.blocked", (10, 61): "connection.unblocked",
    (20, 11): "channel.open-ok", (20, 20): "channel.flow", (20, 21): "channel.flow-ok",
    (20, 40): "channel.close", (20, 41): "channel.close-ok",
    (40, 11): "exchange.declare-ok", (40, 21): "exchange.delete-ok",
    (40, 31): "exchange.bind-ok", (40, 51): "exchange.unbind-ok",
    (50, 11): "queue.declare-ok", (50, 21): "queue.bind-ok", (50, 31): "queue.purge-ok",
    (50, 41): "queue.delete-ok", (50, 51): "queue.unbind-ok",
    (60, 11): "basic.qos-ok", (60, 21): "basic.consume-ok", (60, 30): "basic.cancel",
    (60, 31): "basic.cancel-ok", (60, 50): "basic.return", (60, 60): "basic.deliver",
    (60, 71): "basic.get-ok", (60, 72): "basic.get-empty", (60, 80): "basic.ack",
    (60, 111): "basic.recover-ok", (60, 120): "basic.nack",
    (85, 11): "confirm.select-ok",
}
CONNECTION_CLOSE = (10, 50)
CONNECTION_CLOSE_OK = (10, 51)
CHANNEL_CLOSE = (20, 40)
CHANNEL_CLOSE_OK = (20, 41)

METHOD_IDS = struct.Struct("!HH")
_LONGLONG = struct.Struct("!Q")
_SHORT = struct.Struct("!H")
_DOUBLE = struct.Struct("!d")
_END = bytes([FRAME_END])
# The header a message whose body carries no time of its own (the raw wire
# format) is stamped with: when it entered the bus, as a double.
STAMP_HEADER = "timestamp"


def method_name(class_id, method_id):
    """
    @return: C{"basic.deliver"} for C{(60, 60)}, or C{"method 60.99"} for an
        unknown one.
    """
    return SERVER_METHODS.get((class_id, method_id), f"method {class_id}.{method_id}")


# Packing what the client sends.

def pack_frame(kind, channel, payload):
    """
    @return: One frame: header, C{payload}, end octet.
    """
    return FRAME_HEAD.pack(kind, channel, len(payload)) + payload + _END


def shortstr(text):
    """
    @return: C{text} as an AMQP short string (one length octet).
    @raise ValueError: if it is longer than 255 bytes.
    """
    data = text.encode("utf-8") if isinstance(text, str) else text
    if len(data) > 255:
        raise ValueError(f"{data[:40]!r}... is longer than an AMQP short string (255)")
    return bytes([len(data)]) + data


class Timestamp(int):
    """
    Seconds since the epoch, to go in a field table as an AMQP timestamp
    (C{T}) rather than as a number: a stream consumer's C{x-stream-offset}
    is a point in time only as a timestamp.
    """


def encode_table(table):
    """
    Encode an AMQP 0-9-1 field table as RabbitMQ reads it: C{bool} as C{t},
    C{int} as C{I} (or C{l} when it does not fit in 32 bits), L{Timestamp}
    as C{T}, C{float} as C{d}, C{str} and C{bytes} as C{S}, C{dict} as a
    nested table C{F}.

    txamqp's own encoder writes every non-string as a 32-bit integer, so it
    cannot announce the boolean capabilities RabbitMQ looks for, nor a
    stream's retention in bytes, nor a timestamp.

    @raise TypeError: for any other type.
    """
    out = []
    for key, value in table.items():
        out.append(shortstr(key))
        if isinstance(value, bool):
            out.append(b"t" + struct.pack("!B", value))
        elif isinstance(value, Timestamp):
            out.append(b"T" + _LONGLONG.pack(value))
        elif isinstance(value, float):
            out.append(b"d" + _DOUBLE.pack(value))
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


# Field value types: fixed-size ones by their struct (RabbitMQ's reading of
# the 0-9-1 errata: s is a signed short, l a signed long long).
_FIXED = {b"t": struct.Struct("!B"), b"b": struct.Struct("!b"), b"B": struct.Struct("!B"),
          b"s": struct.Struct("!h"), b"u": struct.Struct("!H"), b"I": struct.Struct("!i"),
          b"i": struct.Struct("!I"), b"l": struct.Struct("!q"), b"L": struct.Struct("!Q"),
          b"f": struct.Struct("!f"), b"d": _DOUBLE, b"T": _LONGLONG}


def decode_table(data):
    """
    Decode the entries of a field table (without its length prefix).

    @return: A C{dict}; timestamps as L{Timestamp}, decimals as C{(scale,
        value)}, strings as C{bytes}, arrays as lists.
    @raise ValueError: for a table that is cut short or holds an unknown
        type.
    """
    return _entries(data, 0, len(data), named=True)[0]


def _entries(data, at, end, named):
    found = {} if named else []
    try:
        while at < end:
            if named:
                length = data[at]
                key = data[at + 1:at + 1 + length].decode("utf-8", "replace")
                at += 1 + length
            kind = data[at:at + 1]
            at += 1
            fixed = _FIXED.get(kind)
            if fixed is not None:
                value, = fixed.unpack_from(data, at)
                at += fixed.size
                if kind == b"t":
                    value = bool(value)
                elif kind == b"T":
                    value = Timestamp(value)
            elif kind == b"D":
                value = (data[at], struct.unpack_from("!i", data, at + 1)[0])
                at += 5
            elif kind in (b"S", b"x", b"F", b"A"):
                length, = struct.unpack_from("!I", data, at)
                at += 4
                if at + length > end:
                    raise ValueError("a field overruns its table")
                if kind == b"F":
                    value = _entries(data, at, at + length, named=True)[0]
                elif kind == b"A":
                    value = _entries(data, at, at + length, named=False)[0]
                else:
                    value = bytes(data[at:at + length])
                at += length
            elif kind == b"V":
                value = None
            else:
                raise ValueError(f"a field of unknown type {kind!r}")
            if at > end:
                raise ValueError("a field overruns its table")
            if named:
                found[key] = value
            else:
                found.append(value)
    except (IndexError, struct.error):
        raise ValueError("a field table cut short") from None
    return found, at


def pack_start_ok(channel, properties, mechanism, response, locale):
    """
    @return: The C{connection.start-ok} frame, its client properties encoded
        by L{encode_table}.
    """
    if isinstance(response, str):
        response = response.encode("utf-8")
    payload = (METHOD_IDS.pack(10, 11) + encode_table(properties) + shortstr(mechanism)
               + struct.pack("!I", len(response)) + response + shortstr(locale))
    return pack_frame(FRAME_METHOD, channel, payload)


def _bits(*flags):
    return bytes([sum(1 << i for i, flag in enumerate(flags) if flag)])


def pack_queue_declare(channel, ticket, queue, passive, durable, exclusive, auto_delete,
                       nowait, arguments):
    """
    @return: A C{queue.declare} frame (the spec's fields, in its order), its
        arguments encoded by L{encode_table}.
    """
    payload = (METHOD_IDS.pack(50, 10) + _SHORT.pack(ticket or 0) + shortstr(queue)
               + _bits(passive, durable, exclusive, auto_delete, nowait)
               + encode_table(arguments or {}))
    return pack_frame(FRAME_METHOD, channel, payload)


def pack_basic_consume(channel, ticket, queue, consumer_tag, no_local, no_ack, exclusive,
                       nowait, arguments):
    """
    @return: A C{basic.consume} frame, its arguments encoded by
        L{encode_table}.
    """
    payload = (METHOD_IDS.pack(60, 20) + _SHORT.pack(ticket or 0) + shortstr(queue)
               + shortstr(consumer_tag) + _bits(no_local, no_ack, exclusive, nowait)
               + encode_table(arguments or {}))
    return pack_frame(FRAME_METHOD, channel, payload)


def pack_basic_ack(channel, delivery_tag, multiple=False):
    """
    @return: A C{basic.ack} frame.
    """
    payload = METHOD_IDS.pack(60, 80) + _LONGLONG.pack(delivery_tag) + _bits(multiple)
    return pack_frame(FRAME_METHOD, channel, payload)


def pack_connection_close(reply_code, text, class_id=0, method_id=0):
    """
    @return: A C{connection.close} frame; C{text} is cut to fit a short
        string.
    """
    data = text.encode("utf-8")[:255]
    payload = (METHOD_IDS.pack(10, 50) + _SHORT.pack(reply_code) + bytes([len(data)]) + data
               + METHOD_IDS.pack(class_id, method_id))
    return pack_frame(FRAME_METHOD, 0, payload)


# The methods with a field table that RabbitMQ must read right, packed
# here: txamqp's encoder writes every number as a 32-bit integer.
PACKED_HERE = {(10, 11): pack_start_ok, (50, 10): pack_queue_declare,
               (60, 20): pack_basic_consume}

# A headers table's C{timestamp} entry, a double, up to its value.
STAMP_ENTRY_HEAD = shortstr(STAMP_HEADER) + b"d"


def _text(value):
    data = value.encode("utf-8")
    return b"S" + struct.pack("!I", len(data)) + data


def _entries_of(headers):
    """
    @param headers: C{((name, value), ...)}, each value a text or a tuple of
        texts (an array: RabbitMQ's C{CC}).
    @return: Those entries of a field table.
    """
    out = []
    for name, value in headers:
        if isinstance(value, tuple):
            items = b"".join(_text(item) for item in value)
            out.append(shortstr(name) + b"A" + struct.pack("!I", len(items)) + items)
        else:
            out.append(shortstr(name) + _text(value))
    return b"".join(out)


class Publisher:
    """
    Packs C{basic.publish} messages for one channel and exchange: method,
    content header and body frames, ready to write at once.  The method
    frame for each routing key and the header for each content type are
    packed once and kept.
    """

    MAX_KEYS = 4096

    def __init__(self, channel, exchange):
        self.channel = channel
        self._exchange = shortstr(exchange)
        self._methods = {}
        self._headers = {}

    def frames(self, routing_key, body, content_type, frame_max, timestamp=None,
               headers=None, user_id=None):
        """
        @param frame_max: The negotiated frame size: bodies longer than
            C{frame_max - 8} go in several body frames.
        @param timestamp: When the message entered the bus (seconds since the
            epoch), for a body that does not say so itself: sent in the
            C{headers} property as C{timestamp}, a double (23 bytes).
        @param headers: More entries of the headers property,
            C{((name, value), ...)}, each value a text or a tuple of texts;
            packed once per distinct tuple and kept.
        @param user_id: The C{user_id} property: the broker refuses it unless
            it is the connection's user, so receivers know who sent it.  Not
            with C{timestamp}.
        @return: The frames of one message, C{bytes}.
        """
        method = self._methods.get(routing_key)
        if method is None:
            method = self._method(routing_key)
        kind = (content_type, timestamp is not None, headers, user_id)
        header = self._headers.get(kind)
        if header is None:
            header = self._header(*kind)
        stamp = b"" if timestamp is None else _DOUBLE.pack(timestamp) + _END
        size = len(body)
        chunk = frame_max - OVERHEAD
        if size <= chunk:
            return b"".join((method, header[0], _LONGLONG.pack(size), header[1], stamp,
                             FRAME_HEAD.pack(FRAME_BODY, self.channel, size), body, _END))
        parts = [method, header[0], _LONGLONG.pack(size), header[1], stamp]
        for start in range(0, size, chunk):
            part = body[start:start + chunk]
            parts += [FRAME_HEAD.pack(FRAME_BODY, self.channel, len(part)), part, _END]
        return b"".join(parts)

    def _method(self, routing_key):
        payload = (METHOD_IDS.pack(60, 40) + b"\0\0" + self._exchange
                   + shortstr(routing_key) + b"\0")
        frame = pack_frame(FRAME_METHOD, self.channel, payload)
        if len(self._methods) < self.MAX_KEYS:
            self._methods[routing_key] = frame
        return frame

    def _header(self, content_type, stamped=False, headers=None, user_id=None):
        """
        @return: The content header frame in two parts, to go either side of
            the body size; with C{stamped}, the second part stops before the
            timestamp's eight bytes and the end octet.
        """
        table = _entries_of(headers) if headers else b""
        if stamped:
            table += STAMP_ENTRY_HEAD
        if stamped and user_id:
            raise ValueError("a user_id with a timestamp: the stamp ends the header")
        flags = ((0x8000 if content_type else 0) | (0x2000 if table else 0)
                 | (0x0010 if user_id else 0))
        properties = _SHORT.pack(flags) + (shortstr(content_type) if content_type else b"")
        if table:
            size = len(table) + (_DOUBLE.size if stamped else 0)
            properties += struct.pack("!I", size) + table
        if user_id:
            properties += shortstr(user_id)
        size = 12 + len(properties) + (_DOUBLE.size if stamped else 0)
        head = FRAME_HEAD.pack(FRAME_HEADER, self.channel, size)
        frame = (head + METHOD_IDS.pack(60, 0), properties if stamped else properties + _END)
        if len(self._headers) < self.MAX_KEYS:
            self._headers[(content_type, stamped, headers, user_id)] = frame
        return frame
