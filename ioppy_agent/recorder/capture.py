"""
C{ioppy-capture}: the packets of a window of the session, read back from
the recording stream, as pcapng.

    ioppy-capture --url-file router.url --since 14:05 --until 14:15 -o case.pcapng
    ioppy-capture --url-file router.url --follow | wireshark -k -i -

It attaches to the stream a little before C{--since} (RabbitMQ finds the
place by time), keeps the packets whose bus-entry time is in the window,
and stops at the end of the window: at a marker it publishes to the stream
once C{--until} has passed (everything before the marker was in the stream
when it was written), or at the first packet well past the window.  A
dropped connection is made again and reading goes on after the last
offset read; nothing is read twice.
"""

import os
import sys
import time
from datetime import datetime

from twisted.internet import defer, task
from twisted.logger import (FilteringLogObserver, LogLevel, LogLevelFilterPredicate, Logger,
                            globalLogBeginner, textFileLogObserver)
from twisted.python import usage

from ..bus import BusConnector, FatalBusError, NotFound
from ..model import wire
from ..program.options import BusOptions
from ..program.process import exit_status_of
from .pcapng import PcapngWriter
from .stream import MARKER, STREAM, entry_of
from .window import BadTime, Window, parse_time

# Messages in flight from the broker, and how many are acknowledged at once.
PREFETCH = 2000
ACK_EVERY = PREFETCH // 4
# Seconds after --until before the end marker goes in (packets stamped just
# before the end may still be on their way).
END_GRACE = 1.0
# Warnings about unreadable messages, at most.
MAX_WARNINGS = 10


class CaptureOptions(BusOptions):
    """
    Options of C{ioppy-capture}.
    """

    synopsis = ("ioppy-capture [--url-file router.url] [--since T] [--until T] "
                "[--agent NAME ...] (-o FILE | --follow)")
    longdesc = (
        "Write the packets the session recorder (ioppy-router --record) kept between "
        "--since and --until as pcapng, one interface per agent, each packet stamped "
        "with the time it entered the bus.  Times: now, -10m (before now; s, m, h, d), "
        "14:05[:30] (today), 2026-12-02T14:05:30[Z|+01:00], or seconds since the "
        "epoch.  Read with a user that may read the stream: the router's.")
    optFlags = [
        ["follow", "f", "Go on with packets as they come (to stdout unless -o), until "
                        "--until or Ctrl-C."],
    ]
    optParameters = BusOptions.optParameters + [
        ["since", "s", None, "First time of the window (default: the oldest packet kept; "
                             "with --follow, now)."],
        ["until", "e", None, "Last time of the window (default: now; with --follow, "
                             "none)."],
        ["output", "o", None, "The pcapng file to write; - for stdout."],
        ["stream", None, STREAM, "The recording stream."],
    ]

    def __init__(self):
        BusOptions.__init__(self)
        self["agents"] = []

    def opt_agent(self, name):
        """
        Only the packets this agent sent (give it once per agent).
        """
        self["agents"].append(name)

    opt_a = opt_agent

    def postOptions(self):
        BusOptions.postOptions(self)
        if self["output"] is None and not self["follow"]:
            raise usage.UsageError("give -o FILE (or -o - for stdout), or --follow")
        if self["output"] not in (None, "-"):
            folder = os.path.dirname(os.path.abspath(self["output"]))
            if not os.path.isdir(folder):
                raise usage.UsageError(f"-o {self['output']}: the directory {folder} does "
                                       "not exist")
        now = self.now()
        try:
            since = parse_time(self["since"], now) if self["since"] is not None else None
            until = parse_time(self["until"], now) if self["until"] is not None else None
            if since is None and self["follow"]:
                since = now
            if until is None and not self["follow"]:
                until = now
            self["window"] = Window(since, until, self["agents"])
        except BadTime as e:
            raise usage.UsageError(str(e)) from None

    now = staticmethod(time.time)


def _shown(seconds):
    if seconds is None:
        return "-"
    return datetime.fromtimestamp(seconds).isoformat(sep=" ", timespec="milliseconds")


class Capture:
    """
    Reads one window of the stream into a L{PcapngWriter}.

    @ivar done: Fires with the exit status when reading is over.
    @ivar counts: Packets written, by agent.
    @ivar offset: The last stream offset read.
    """

    _log = Logger()

    def __init__(self, reactor, bus, window, writer, stream=STREAM, follow=False,
                 err=sys.stderr, make_connector=BusConnector):
        self.reactor = reactor
        self.window = window
        self.writer = writer
        self.stream = stream
        self.follow = follow
        self.err = err
        self.done = defer.Deferred()
        self.counts = {}
        self.unreadable = 0
        self.offset = None
        self.first = self.last = None
        self._marker = os.urandom(8).hex().encode()
        self._marking = None
        self._unacked = 0
        self._finished = False
        self.connector = make_connector(reactor, bus, self._setup, self._fatal,
                                        connection_name="ioppy-capture",
                                        deliveries_per_read=PREFETCH)

    def start(self):
        self.connector.start()
        return self.done

    def _setup(self, session):
        offset = self.window.attach() if self.offset is None else self.offset + 1
        d = session.consume_stream(self.stream, self._delivery, offset, PREFETCH)

        def missing(reason):
            reason.trap(NotFound)
            raise NotFound(f"{reason.value}: nothing is recorded on this vhost (start "
                           "ioppy-router with --record)")

        d.addCallbacks(lambda _: self._schedule_marker(), missing)
        return d

    def _schedule_marker(self):
        until = self.window.until
        if until is None:
            return
        if self._marking is not None and self._marking.active():
            self._marking.cancel()
        wait = max(0.0, until + END_GRACE - self.reactor.seconds())
        self._marking = self.reactor.callLater(wait, self._mark)

    def _mark(self):
        session = self.connector.session
        if session is not None:
            session.publish_to_queue(self.stream, self._marker, MARKER)
            session.flush()

    def _delivery(self, delivery):
        session = self.connector.session
        self._unacked += 1
        if self._unacked >= ACK_EVERY and session is not None:
            session.ack(delivery.delivery_tag)
            self._unacked = 0
        if self._finished:
            return
        if delivery.stream_offset is not None:
            self.offset = delivery.stream_offset
        if delivery.content_type == MARKER:
            if delivery.body == self._marker:
                self.finish(0)
            return
        try:
            entry = entry_of(delivery)
        except wire.BadMessage as e:
            self.unreadable += 1
            if self.unreadable <= MAX_WARNINGS:
                self.say(f"skipped an unreadable message on {delivery.routing_key}: {e}")
            return
        if entry is None:
            return
        if self.window.keeps(entry):
            try:
                self.writer.write(entry.agent, entry.time, entry.packet)
            except BrokenPipeError:
                self.finish(0)
                return
            except OSError as e:
                self.say(f"cannot write: {e.strerror or e}")
                self.finish(1)
                return
            self.counts[entry.agent] = self.counts.get(entry.agent, 0) + 1
            if self.first is None:
                self.first = entry.time
            self.last = entry.time
        elif self.window.passed(entry):
            self.finish(0)

    def _fatal(self, error):
        self.say(str(error))
        self.finish(exit_status_of(error) if isinstance(error, FatalBusError) else 1)

    def say(self, text):
        print(f"ioppy-capture: {text}", file=self.err, flush=True)

    @defer.inlineCallbacks
    def finish(self, status):
        """
        Stop reading: disconnect in order, then fire L{done} with C{status}.
        """
        if self._finished:
            return
        self._finished = True
        if self._marking is not None and self._marking.active():
            self._marking.cancel()
        try:
            yield self.connector.stop()
        finally:
            self.done.callback(status)

    def summary(self):
        total = sum(self.counts.values())
        agents = ", ".join(f"{name} {count:,}" for name, count in sorted(self.counts.items()))
        line = f"{total:,} packets" + (f" ({agents})" if agents else "")
        if total:
            line += f", first {_shown(self.first)}, last {_shown(self.last)}"
        if self.unreadable:
            line += f"; {self.unreadable} unreadable messages skipped"
        return line


def _open_output(path):
    if path in (None, "-"):
        return sys.stdout.buffer, False
    return open(path, "wb"), True


@defer.inlineCallbacks
def run(reactor, options, err=sys.stderr):
    """
    Read the window of C{options} and write it; fires with the exit status.
    """
    window = options["window"]
    try:
        out, close = _open_output(options["output"])
    except OSError as e:
        print(f"ioppy-capture: -o {options['output']}: {e.strerror or e}", file=err)
        return 1
    follow = options["follow"]
    what = ", ".join(sorted(window.agents)) or "every agent"
    print(f"ioppy-capture: reading {options['stream']!r} on {options['url'].masked()}: "
          f"{what}, from {_shown(window.since) if window.since else 'the oldest kept'} "
          f"to {_shown(window.until) if window.until else 'Ctrl-C'}", file=err, flush=True)
    writer = PcapngWriter(out, flush=follow or options["output"] in (None, "-"),
                          comment=f"ioppy session {options['url'].vhost}: {what}, "
                                  f"{_shown(window.since)} to {_shown(window.until)}")
    capture = Capture(reactor, options["bus"], window, writer, options["stream"], follow, err)
    stop = reactor.addSystemEventTrigger("before", "shutdown", capture.finish, 0)
    try:
        status = yield capture.start()
    finally:
        reactor.removeSystemEventTrigger(stop)
        if close:
            out.close()
    if status and close and not capture.counts:
        os.remove(options["output"])
        return status
    target = options["output"] if close else "stdout"
    print(f"ioppy-capture: wrote {capture.summary()} to {target}", file=err, flush=True)
    return status


def console(argv=None):
    """
    The C{ioppy-capture} console script.
    """
    options = CaptureOptions()
    try:
        options.parseOptions(sys.argv[1:] if argv is None else argv)
    except usage.UsageError as e:
        print(options, file=sys.stderr)
        print(f"ioppy-capture: {e}", file=sys.stderr)
        sys.exit(1)
    # The bus's own warnings (a dropped connection, say) go to stderr.
    globalLogBeginner.beginLoggingTo(
        [FilteringLogObserver(textFileLogObserver(sys.stderr),
                              [LogLevelFilterPredicate(defaultLogLevel=LogLevel.warn)])],
        redirectStandardIO=False)
    status = []

    def main(reactor):
        return run(reactor, options).addCallback(status.append)

    try:
        task.react(main)
    except SystemExit as e:
        sys.exit(status[0] if status else e.code)
