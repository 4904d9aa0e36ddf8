"""
The recording stream: its name, what it is bound to, its retention, and
the entry each recorded message makes.
"""

import re
from dataclasses import dataclass
from typing import NamedTuple

from ..bus.framing import STAMP_HEADER
from ..model import keys, wire

STREAM = keys.RECORD_STREAM
# The key every agent publishes its packets on, as they enter the bus,
# whichever way they go on.  Not toAgent.#: those are the router's copies of
# packets already recorded.
BINDINGS = (keys.any_of(keys.PACKET_FROM),)
DEFAULT_MAX_AGE = "7D"
DEFAULT_MAX_BYTES = 1 << 30
DEFAULT_CHECK = 30.0
# RabbitMQ drops whole segment files when a stream outgrows its retention;
# its default segment (500 MB) would keep a small stream whole.
SEGMENT_MAX = 500_000_000
SEGMENT_MIN = 1_000_000
_AGE = re.compile(r"^([1-9][0-9]*)([YMDhms])$")
_SIZE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)\s*([kKMGT]i?B|B)?$")
_UNITS = {"B": 1, "kB": 10 ** 3, "KB": 10 ** 3, "MB": 10 ** 6, "GB": 10 ** 9, "TB": 10 ** 12,
          "KiB": 1 << 10, "kiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}
# A reader's marker for the end of what it reads (see capture).
MARKER = "application/x-ioppy-marker"


class BadRetention(ValueError):
    """
    A retention the broker would not understand; the message says why.
    """


def parse_age(text):
    """
    @param text: A number and one of RabbitMQ's units: C{Y}, C{M} (months),
        C{D}, C{h}, C{m} (minutes), C{s}; C{"7D"}, C{"12h"}.
    @return: C{text}, checked.
    @raise BadRetention: otherwise.
    """
    if not _AGE.match(text):
        raise BadRetention(f"--record-max-age {text!r}: give a whole number and one of "
                           "Y, M (months), D, h, m (minutes), s, as in 7D or 12h")
    return text


def parse_size(text):
    """
    @param text: Bytes, or a number with C{kB}, C{MB}, C{GB}, C{TB} (powers of
        ten) or C{KiB}, C{MiB}, C{GiB}, C{TiB}.
    @return: The size in bytes.
    @raise BadRetention: for anything else, or less than a megabyte.
    """
    match = _SIZE.match(text.strip())
    if not match:
        raise BadRetention(f"--record-max-bytes {text!r}: give bytes or a size such as "
                           "500MB or 2GiB")
    size = int(float(match.group(1)) * _UNITS[match.group(2) or "B"])
    if size < SEGMENT_MIN:
        raise BadRetention(f"--record-max-bytes {text!r}: at least 1MB")
    return size


def shown_size(size):
    """
    @return: C{size} bytes as a person would write it: C{1 GiB}, C{50 MB}.
    """
    for unit in ("TiB", "GiB", "MiB", "KiB", "TB", "GB", "MB", "kB"):
        if size >= _UNITS[unit] and size % _UNITS[unit] == 0:
            return f"{size // _UNITS[unit]} {unit}"
    return f"{size:,} bytes"


@dataclass(frozen=True)
class RecordConfig:
    """
    The stream's retention: RabbitMQ drops the oldest packets once they are
    older than C{max_age} or the stream is larger than C{max_bytes}.  The
    router looks how far back it reaches every C{check} seconds.
    """

    max_age: str = DEFAULT_MAX_AGE
    max_bytes: int = DEFAULT_MAX_BYTES
    name: str = STREAM
    check: float = DEFAULT_CHECK

    def arguments(self):
        """
        @return: The stream's declaration arguments (C{x-queue-type} aside).
        """
        segment = max(SEGMENT_MIN, min(SEGMENT_MAX, self.max_bytes // 8))
        return {"x-max-age": self.max_age, "x-max-length-bytes": self.max_bytes,
                "x-stream-max-segment-size-bytes": segment}

    def describe(self):
        return f"stream {self.name!r}: kept {self.max_age}, at most {shown_size(self.max_bytes)}"


class Entry(NamedTuple):
    """
    One recorded packet.

    @ivar agent: The agent that sent it.
    @ivar time: When it entered the bus, by the agent's clock (the JSON
        body's C{timestamp}, or a raw message's C{timestamp} header).
    @ivar packet: The IP packet.
    """

    agent: str
    time: float
    packet: bytes


def entry_of(delivery):
    """
    @param delivery: A L{ioppy_agent.bus.content.Delivery} from the stream.
    @return: Its L{Entry}, or C{None} for a message that is not a packet (a
        reader's marker).
    @raise wire.BadMessage: for a packet message that cannot be read.
    """
    kind, agent = keys.parse(delivery.routing_key) or (None, None)
    if kind != keys.PACKET_FROM:
        return None
    packet = wire.packet_of(delivery.body, delivery.content_type)
    if delivery.content_type == wire.RAW:
        time = _stamp(delivery)
    else:
        time = wire.decode_json(delivery.body).get("timestamp")
    if isinstance(time, bool) or not isinstance(time, (int, float)):
        raise wire.BadMessage(f"a packet from {agent} with no time it entered the bus")
    return Entry(agent, float(time), packet)


def _stamp(delivery):
    try:
        return delivery.header_table().get(STAMP_HEADER)
    except ValueError as e:
        raise wire.BadMessage(f"the headers cannot be read: {e}") from None
