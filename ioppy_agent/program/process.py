"""
Process-level behaviour for services run by twistd: a clean exit status 0 on
SIGINT/SIGTERM, and a chosen non-zero status when a service gives up.

twistd re-raises SIGINT/SIGTERM after the reactor stops, so the process would
die "killed by signal" instead of exiting 0; and twistd offers a service no
way to set the exit status.  L{ProcessControl} handles both.
"""

import atexit
import os
import signal
import sys

from twisted.application import service
from twisted.logger import Logger

from ..bus.errors import AccessRefused, ExchangeMissing, LoginRefused, QueueLocked, TLSFailed

# Exit statuses, as the README lists them.
EXIT_FAILURE = 1      # bad options; TUN, namespace or interface set-up failed
EXIT_DUPLICATE = 2    # the name (or the router's queue) is taken on the vhost
EXIT_REFUSED = 3      # the broker refused the login, the vhost or the exchange
EXIT_TLS = 4          # the broker's TLS certificate did not verify

_EXIT_STATUS = ((QueueLocked, EXIT_DUPLICATE), (LoginRefused, EXIT_REFUSED),
                (AccessRefused, EXIT_REFUSED), (ExchangeMissing, EXIT_REFUSED),
                (TLSFailed, EXIT_TLS))


def exit_status_of(error):
    """
    @param error: The L{ioppy_agent.bus.FatalBusError} a program gave up on.
    @return: The exit status for it.
    """
    for kind, status in _EXIT_STATUS:
        if isinstance(error, kind):
            return status
    return EXIT_FAILURE


class ProcessControl(service.Service):
    """
    Owns the process's stop signals and exit status, from the time it is
    started.

    @ivar exit_code: The status the process exits with (0 unless L{fail} was
        called).
    """

    _log = Logger()

    def __init__(self, reactor, install_signals=True, at_exit=atexit.register):
        """
        @param install_signals: Replace the reactor's SIGINT/SIGTERM handlers
            once it runs (C{False} in tests).
        @param at_exit: Registers a callable to run at interpreter exit.
        """
        self._reactor = reactor
        self._install_signals = install_signals
        self._at_exit = at_exit
        self._stopping = False
        self.exit_code = 0

    def startService(self):
        service.Service.startService(self)
        self._reactor.addSystemEventTrigger("after", "shutdown", self._shut_down)
        if self._install_signals:
            self._reactor.callWhenRunning(self._install)

    def _install(self):
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum, frame):
        self._reactor.callFromThread(self._signalled, signal.Signals(signum).name)

    def _signalled(self, name):
        self._log.info("received {signal}, disconnecting", signal=name)
        self.stop()

    def stop(self):
        """
        Stop the reactor once; the services' C{stopService} run before it
        ends.
        """
        if self._stopping:
            return
        self._stopping = True
        if self._reactor.running:
            self._reactor.stop()
        else:
            self._reactor.callWhenRunning(self._reactor.stop)

    def fail(self, exit_code, message):
        """
        Log C{message}, stop, and make the process exit with C{exit_code}.
        """
        self._log.critical("{reason}", reason=message)
        if not self.exit_code:
            self.exit_code = exit_code
        self.stop()

    def _shut_down(self):
        if self.exit_code:
            self._at_exit(_exit_now, self.exit_code)


def _exit_now(code):
    """
    Exit with C{code} at the very end (after twistd removed its pidfile).
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
