"""
The window a reader asks for: the times it is given on the command line,
where in the stream to start, and which entries fall in it.  Pure.
"""

import math
import re
from datetime import datetime, time as clock_time

from ..bus.framing import Timestamp

# How far an agent's clock may be behind the broker's: the stream is
# attached this much before the window (RabbitMQ finds its place by the
# time the broker wrote each chunk), and read until an entry is this much
# past the window's end.
SKEW = 10.0
_RELATIVE = re.compile(r"^-([0-9]+(?:\.[0-9]+)?)(s|m|h|d)$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_EPOCH = re.compile(r"^[0-9]{9,}(?:\.[0-9]+)?$")


class BadTime(ValueError):
    """
    A time that cannot be read; the message says how to write one.
    """


def parse_time(text, now, tz=None):
    """
    @param text: C{now}; C{-10m}, C{-90s}, C{-2h}, C{-1d} (before now); a
        time of today C{14:05} or C{14:05:30}; an ISO 8601 date and time
        (C{2026-12-02T14:05:30}, local unless it says C{Z} or an offset); or
        seconds since the epoch.
    @param now: Seconds since the epoch.
    @param tz: The local time zone (C{None}: the system's).
    @return: Seconds since the epoch, a C{float}.
    @raise BadTime: for anything else.
    """
    text = text.strip()
    if text == "now":
        return float(now)
    match = _RELATIVE.match(text)
    if match:
        return now - float(match.group(1)) * _SECONDS[match.group(2)]
    if _EPOCH.match(text):
        return float(text)
    try:
        if re.match(r"^[0-9]{1,2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?$", text):
            today = datetime.fromtimestamp(now, tz).date()
            moment = datetime.combine(today, clock_time.fromisoformat(text.zfill(5)
                                                                       if len(text) < 5
                                                                       else text))
        else:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        moment = None
    if moment is None:
        raise BadTime(f"{text!r}: give now, -10m (-s, -m, -h, -d before now), 14:05[:30] "
                      "(today), 2026-12-02T14:05:30[Z|+01:00] or seconds since the epoch")
    if moment.tzinfo is None and tz is not None:
        moment = moment.replace(tzinfo=tz)
    return moment.timestamp()


class Window:
    """
    The entries a reader keeps: sent between C{since} and C{until} (either
    may be C{None}: from the first, or on and on), by one of C{agents}
    (empty: any).
    """

    def __init__(self, since=None, until=None, agents=()):
        if since is not None and until is not None and until < since:
            raise BadTime("--until is before --since")
        self.since = since
        self.until = until
        self.agents = frozenset(agents)

    def attach(self):
        """
        @return: The C{x-stream-offset} to start reading at: a timestamp
            L{SKEW} seconds before the window (whole seconds, as AMQP 0-9-1
            has them), or C{"first"}.
        """
        if self.since is None:
            return "first"
        return Timestamp(max(0, math.floor(self.since - SKEW)))

    def keeps(self, entry):
        """
        @return: Whether C{entry} (an L{ioppy_agent.recorder.stream.Entry})
            is in the window.
        """
        if self.agents and entry.agent not in self.agents:
            return False
        if self.since is not None and entry.time < self.since:
            return False
        return self.until is None or entry.time <= self.until

    def passed(self, entry):
        """
        @return: Whether C{entry} shows the stream is past the window, by
            more than any agent's clock can be behind.
        """
        return self.until is not None and entry.time > self.until + SKEW
