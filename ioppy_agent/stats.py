"""
Counters of what was moved and dropped, and warnings that cannot flood the
log.
"""

from collections import Counter


class Counters:
    """
    Packets and bytes moved in each direction, and drops by reason.
    """

    def __init__(self):
        self.packets = Counter()
        self.bytes = Counter()
        self.drops = Counter()

    def moved(self, direction, size):
        self.packets[direction] += 1
        self.bytes[direction] += size

    def dropped(self, reason):
        self.drops[reason] += 1


class WarnLimiter:
    """
    Logs a warning at most once per C{interval} seconds; the warnings held
    back are counted and reported with the next one that gets through.
    """

    def __init__(self, clock, log, interval=10.0):
        self._clock = clock
        self._log = log
        self._interval = interval
        self._next = 0.0
        self.suppressed = 0

    def warn(self, format, **kwargs):
        now = self._clock.seconds()
        if now < self._next:
            self.suppressed += 1
            return False
        self._next = now + self._interval
        held, self.suppressed = self.suppressed, 0
        if held:
            format += " ({held} more since the last such warning)"
        self._log.warn(format, held=held, **kwargs)
        return True
