"""
The ioppytest message format: functions between packet bytes and message
bodies.  Pure functions, no I/O.  The routing keys are in
L{ioppy_agent.model.keys}, the control messages in L{ioppy_agent.model.control}.

A packet travels as a JSON body::

    {"_api_version": "1.2.15", "data": [69, 0, ...],
     "interface_name": "tun0", "timestamp": 1764242400.5}

with C{content_type} C{application/json}.

The JSON of packet bodies is written and read by orjson: for a 1400-byte
packet (a 6.5 KB body) it decodes in a quarter and encodes in a quarter of
the time the standard library takes, and decoding is most of what a
receiving agent does per packet.
"""

from typing import NamedTuple

import orjson

API_VERSION = "1.2.15"
JSON = "application/json"
# The binary wire format: the body is the packet itself.
RAW = "application/octet-stream"
WIRE_FORMATS = {"json": JSON, "raw": RAW}


class BadMessage(ValueError):
    """
    A message body that is not what its routing key promises.
    """


class UnknownContentType(BadMessage):
    """
    A packet message in neither wire format.
    """


class Message(NamedTuple):
    """
    One message to publish (a named tuple: one is made per packet, and a
    frozen dataclass costs three times as much to make).

    @ivar routing_key: The routing key on the exchange.
    @ivar body: The body, always C{bytes}.
    @ivar content_type: The AMQP C{content-type} property.
    @ivar timestamp: For a raw packet, when it entered the bus (sent in the
        C{timestamp} header); C{None} when the body says so itself.
    @ivar headers: More of the C{headers} property, C{((name, value), ...)}
        with text or a tuple of texts as values: for a packet sent straight
        to its receivers, C{CC} with their inbox keys (see
        L{ioppy_agent.model.keys}); C{None} for one the router forwards.
    """

    routing_key: str
    body: bytes
    content_type: str = JSON
    timestamp: float = None
    headers: tuple = None


def as_bytes(body):
    """
    Normalise a message body to C{bytes}.

    txamqp's decoder on Python 3 hands back a C{str} when the body happens to
    be valid UTF-8 (it tries to decode every long string).  Encoding it again
    as UTF-8 gives back exactly the bytes that were on the wire.
    """
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode("utf-8")
    if isinstance(body, (bytearray, memoryview)):
        return bytes(body)
    raise BadMessage(f"message body of type {type(body).__name__} is not bytes")


def encode_packet(packet, timestamp, interface_name="tun0"):
    """
    @param packet: The IP packet, C{bytes}.
    @param timestamp: Seconds since the epoch, a C{float}.
    @return: The ioppytest JSON body for C{packet}, C{bytes}.
    """
    return orjson.dumps({"_api_version": API_VERSION, "data": list(packet),
                         "interface_name": interface_name, "timestamp": timestamp})


def decode_json(body):
    """
    @return: The JSON object in C{body}.
    @raise BadMessage: if C{body} is not a JSON object.
    """
    try:
        obj = orjson.loads(as_bytes(body))
    except orjson.JSONDecodeError as e:
        raise BadMessage(f"body is not JSON: {e}") from None
    if not isinstance(obj, dict):
        raise BadMessage(f"body is JSON but not an object: {type(obj).__name__}")
    return obj


def decode_packet(body):
    """
    @return: The packet carried by an ioppytest packet body, C{bytes}.
    @raise BadMessage: if the body is not JSON, has no C{data} list, or the
        list holds anything but integers 0..255, or is empty.
    """
    body = as_bytes(body)
    obj = decode_json(body)
    try:
        data = obj["data"]
    except KeyError:
        raise BadMessage("body has no 'data' field") from None
    if not isinstance(data, list):
        raise BadMessage(f"'data' is a {type(data).__name__}, not a list of bytes")
    if not data:
        raise BadMessage("'data' is empty")
    try:
        packet = bytes(data)
    except (TypeError, ValueError):
        raise BadMessage("'data' holds values that are not integers 0..255") from None
    # bytes() takes true and false for 1 and 0; look for them only when the
    # text has them, to keep the common case at C speed.
    if (b"true" in body or b"false" in body) and any(
            value is True or value is False for value in data):
        raise BadMessage("'data' holds true/false, not integers 0..255")
    return packet


def _raw_body(body, content_type):
    """
    Tell the two wire formats apart by C{content_type}.

    @return: The packet for a raw message, or C{None} for a JSON one
        (C{application/json}, or no content type at all).
    @raise UnknownContentType: for any other content type.
    @raise BadMessage: for an empty raw body.
    """
    if content_type == RAW:
        if not body:
            raise BadMessage("the raw body is empty")
        return as_bytes(body)
    if content_type in (JSON, None, ""):
        return None
    raise UnknownContentType(f"content type {content_type!r} is neither {JSON} nor {RAW}")


def packet_of(body, content_type):
    """
    @return: The packet carried by a packet message in either wire format:
        C{application/octet-stream} (the body is the packet) or ioppytest's
        JSON (C{application/json}, or no content type at all).
    @raise UnknownContentType: for any other content type.
    @raise BadMessage: if the body is not a packet in its format.
    """
    packet = _raw_body(body, content_type)
    return decode_packet(body) if packet is None else packet


def check_shape(body, content_type):
    """
    Check, without decoding it, that a packet message has the shape of one:
    a raw body that is not empty, or a JSON body that is an object with a
    C{data} field.  This is what the router checks before it forwards a
    body unchanged; the receiving agent decodes and checks the packet
    itself (L{packet_of}).

    @return: The body, as C{bytes}.
    @raise UnknownContentType: for a content type of neither format.
    @raise BadMessage: for a body of the wrong shape.
    """
    raw = _raw_body(body, content_type)
    if raw is not None:
        return raw
    body = as_bytes(body)
    # Whitespace around the object is legal JSON but rare: only then is the
    # body copied to strip it.
    ends = body if body[:1] == b"{" and body[-1:] == b"}" else body.strip()
    if ends[:1] != b"{" or ends[-1:] != b"}":
        raise BadMessage("body is not a JSON object")
    if b'"data"' not in body:
        raise BadMessage("body has no 'data' field")
    return body
