"""
Counters of what was moved and dropped, warnings that cannot flood the log,
and the L{Reporter} service that logs summaries and keeps the status file.
"""

import json
import os
from collections import Counter
from dataclasses import dataclass
from typing import Optional

from twisted.application import service
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from ..model.actions import drop_reason


@dataclass(frozen=True)
class ReportConfig:
    """
    What a program reports about itself.

    @ivar stats_interval: Seconds between summary lines; 0 for none.
    @ivar status_file: Path of the JSON status file, or C{None}.
    @ivar status_interval: Seconds between rewrites of the status file.
    """

    stats_interval: float = 60.0
    status_file: Optional[str] = None
    status_interval: float = 5.0


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
        """
        Count one drop under C{reason}; one that is not a
        L{ioppy_agent.model.actions.DropReason} counts as C{"other"}.
        """
        self.drops[drop_reason(reason)] += 1


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


class Reporter(service.Service):
    """
    Logs a one-line summary every C{stats_interval} seconds and keeps a JSON
    status file rewritten atomically every C{status_interval} seconds (and
    at the end), like OpenVPN's status file.  Stopping it logs the final
    summary and writes the final status.
    """

    _log = Logger()
    name = "reporter"

    def __init__(self, clock, describe, config=ReportConfig()):
        """
        @param describe: Returns C{(line, status)}: the summary line, and a
            JSON-able dict for the status file.
        @param config: A L{ReportConfig}.
        """
        self._clock = clock
        self._describe = describe
        self._interval = config.stats_interval
        self._status_file = config.status_file
        self._status_interval = config.status_interval
        self._loops = []
        self._status_failed = False

    def startService(self):
        """
        Start the periodic summary and status file.
        """
        service.Service.startService(self)
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

    def stopService(self):
        """
        Stop the loops, log the final summary and write the final status.
        """
        if not self.running:
            return
        service.Service.stopService(self)
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
