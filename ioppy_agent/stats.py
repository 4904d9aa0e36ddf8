"""
Counters of what was moved and dropped, and warnings that cannot flood the
log.
"""

import json
import os
from collections import Counter

from twisted.internet.task import LoopingCall
from twisted.logger import Logger


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


class Reporter:
    """
    Logs a one-line summary every C{interval} seconds and keeps a JSON
    status file rewritten atomically every C{status_interval} seconds (and
    at the end), like OpenVPN's status file.
    """

    _log = Logger()

    def __init__(self, clock, describe, interval=60.0, status_file=None,
                 status_interval=5.0):
        """
        @param describe: Returns C{(line, status)}: the summary line, and a
            JSON-able dict for the status file.
        @param interval: Seconds between summary lines; 0 for none.
        @param status_file: Path of the status file, or C{None}.
        """
        self._clock = clock
        self._describe = describe
        self._interval = interval
        self._status_file = status_file
        self._status_interval = status_interval
        self._loops = []
        self._status_failed = False

    def start(self):
        """
        Start the periodic summary and status file.
        """
        if self._interval > 0:
            self._loop(self.summarise, self._interval)
        if self._status_file:
            self.write_status()
            self._loop(self.write_status, self._status_interval)

    def _loop(self, f, interval):
        loop = LoopingCall(f)
        loop.clock = self._clock
        loop.start(interval, now=False)
        self._loops.append(loop)

    def summarise(self):
        line, _ = self._describe()
        self._log.info("{summary}", summary=line)

    def write_status(self):
        """
        Replace the status file with the current status: written to a
        temporary file in the same directory, then renamed over it.
        """
        if not self._status_file:
            return
        _, status = self._describe()
        status = dict(status, updated=self._clock.seconds())
        temporary = f"{self._status_file}.{os.getpid()}.tmp"
        try:
            with open(temporary, "w", encoding="utf-8") as f:
                json.dump(status, f, indent=1, sort_keys=True)
                f.write("\n")
            os.replace(temporary, self._status_file)
        except OSError as e:
            if not self._status_failed:
                self._log.error("cannot write the status file {path}: {error}",
                                path=self._status_file, error=e.strerror or str(e))
            self._status_failed = True
        else:
            self._status_failed = False

    def stop(self):
        """
        Stop the loops, log the final summary and write the final status.
        """
        for loop in self._loops:
            if loop.running:
                loop.stop()
        self._loops = []
        line, _ = self._describe()
        self._log.info("final: {summary}", summary=line)
        self.write_status()


def summary_line(counters):
    """
    @return: Packets and bytes each way, and drops by reason, in one line.
    """
    drops = ", ".join(f"{reason}: {n}" for reason, n in sorted(counters.drops.items()))
    return (f"out {counters.packets['out']} packets/{counters.bytes['out']} bytes, "
            f"in {counters.packets['in']} packets/{counters.bytes['in']} bytes, "
            f"dropped {sum(counters.drops.values())}" + (f" ({drops})" if drops else ""))


def status_of(counters):
    """
    @return: The counters as a JSON-able dict.
    """
    return {"packets": {"in": counters.packets["in"], "out": counters.packets["out"]},
            "bytes": {"in": counters.bytes["in"], "out": counters.bytes["out"]},
            "drops": dict(sorted(counters.drops.items()))}
