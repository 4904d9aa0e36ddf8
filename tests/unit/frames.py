"""
AMQP frames as a broker sends them, built byte by byte for the tests of the
frame reader, without txamqp.
"""

import struct


def frame(kind, channel, payload, end=b"\xce"):
    """
    @return: One frame of type C{kind}.
    """
    return struct.pack("!BHI", kind, channel, len(payload)) + payload + end


def shortstr(text):
    data = text.encode("utf-8")
    return bytes([len(data)]) + data


def method(channel, class_id, method_id, args=b""):
    """
    @return: A method frame.
    """
    return frame(1, channel, struct.pack("!HH", class_id, method_id) + args)


def deliver(channel=1, tag="ioppy-1", key="toAgent.a.ip.tun.packet.raw", delivery_tag=7,
            redelivered=False, exchange="amq.topic"):
    """
    @return: A C{basic.deliver} method frame.
    """
    args = (shortstr(tag) + struct.pack("!QB", delivery_tag, redelivered) + shortstr(exchange)
            + shortstr(key))
    return method(channel, 60, 60, args)


def header(channel=1, size=0, content_type="application/json", class_id=60, weight=0,
           extra_flags=(), headers=None):
    """
    @param extra_flags: More property-flag words after the first (each must
        say whether another follows in its lowest bit).
    @param headers: The C{headers} property: a field table, encoded with its
        length.
    @return: A content header frame.
    """
    flags = 0x8000 if content_type is not None else 0
    if headers is not None:
        flags |= 0x2000
    if extra_flags:
        flags |= 1
    payload = struct.pack("!HHQH", class_id, weight, size, flags)
    for word in extra_flags:
        payload += struct.pack("!H", word)
    if content_type is not None:
        payload += shortstr(content_type)
    if headers is not None:
        payload += headers
    return frame(2, channel, payload)


def body(channel=1, data=b""):
    """
    @return: A body frame.
    """
    return frame(3, channel, data)


def message(data, channel=1, pieces=1, **kwargs):
    """
    @return: A whole delivery: C{basic.deliver}, its header and C{data} in
        C{pieces} body frames.
    """
    content_type = kwargs.pop("content_type", "application/json")
    headers = kwargs.pop("headers", None)
    step = max(1, -(-len(data) // pieces))
    frames = [deliver(channel, **kwargs),
              header(channel, len(data), content_type, headers=headers)]
    frames += [body(channel, data[i:i + step]) for i in range(0, len(data), step)]
    return b"".join(frames)


HEARTBEAT = frame(8, 0, b"")
