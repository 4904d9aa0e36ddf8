"""
Tests for L{ioppy_agent.program.process}.
"""

import signal

from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from ioppy_agent.program.process import ProcessControl, _exit_now


class ProcessControlTests(SynchronousTestCase):
    """
    L{ProcessControl} stops the reactor and sets the exit status.
    """

    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.registered = []
        self.control = ProcessControl(self.reactor, install_signals=False,
                                      at_exit=lambda *a: self.registered.append(a))
        self.control.startService()

    def _shutdown_triggers(self):
        return self.reactor.triggers["after"]["shutdown"]

    def test_stop_before_running(self):
        """
        Stopping before the reactor runs stops it as soon as it runs.
        """
        self.control.stop()
        self.assertFalse(self.reactor.hasStopped)
        self.reactor.run()
        self.assertTrue(self.reactor.hasStopped)

    def test_stop_once(self):
        """
        Stopping twice stops the reactor once.
        """
        self.reactor.run()
        self.control.stop()
        self.reactor.running = True
        self.control.stop()
        self.assertTrue(self.reactor.hasStopped)

    def test_fail_sets_exit_status(self):
        """
        C{fail} logs the message, stops, and registers an exit with the code
        once the reactor has shut down.
        """
        self.reactor.run()
        with capturedLogs() as events:
            self.control.fail(2, "an agent named 'agent_1' is already connected")
        self.assertTrue(self.reactor.hasStopped)
        self.assertEqual(events[0]["reason"], "an agent named 'agent_1' is already connected")
        [(trigger, args, kwargs)] = self._shutdown_triggers()
        trigger(*args, **kwargs)
        self.assertEqual(self.registered, [(_exit_now, 2)])

    def test_first_failure_wins(self):
        """
        The first failure's code is the exit status.
        """
        with capturedLogs():
            self.control.fail(2, "a")
            self.control.fail(1, "b")
        self.assertEqual(self.control.exit_code, 2)

    def test_clean_stop_exits_zero(self):
        """
        Without a failure nothing changes the exit status.
        """
        self.reactor.run()
        self.control.stop()
        for trigger, args, kwargs in self._shutdown_triggers():
            trigger(*args, **kwargs)
        self.assertEqual(self.registered, [])

    def test_signal_stops(self):
        """
        SIGTERM and SIGINT stop the reactor the normal way (so the process
        exits 0 instead of dying by the signal).
        """
        self.reactor.run()
        calls = []
        self.reactor.callFromThread = lambda f, *a: calls.append((f, a))
        self.control._on_signal(signal.SIGTERM, None)
        [(f, a)] = calls
        with capturedLogs() as events:
            f(*a)
        self.assertTrue(self.reactor.hasStopped)
        self.assertEqual(events[0]["signal"], "SIGTERM")
        self.assertEqual(self.control.exit_code, 0)

    def test_installs_signal_handlers_when_running(self):
        """
        With C{install_signals}, the handlers are installed once the reactor
        runs, replacing the reactor's own, and restored by the test.
        """
        reactor = MemoryReactorClock()
        control = ProcessControl(reactor, install_signals=True)
        control.startService()
        old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        for s, handler in old.items():
            self.addCleanup(signal.signal, s, handler)
        reactor.run()
        self.assertEqual(signal.getsignal(signal.SIGTERM), control._on_signal)
        self.assertEqual(signal.getsignal(signal.SIGINT), control._on_signal)


class ExitStatusTests(SynchronousTestCase):
    """
    L{exit_status_of} maps the bus's fatal errors to the documented exit
    statuses.
    """

    def test_statuses(self):
        """
        A locked queue is 2, a refused login, vhost or exchange 3, TLS 4,
        anything else 1.
        """
        from ioppy_agent.bus import errors
        from ioppy_agent.program.process import exit_status_of
        cases = [(errors.QueueLocked("x"), 2), (errors.LoginRefused("x"), 3),
                 (errors.AccessRefused("x"), 3), (errors.ExchangeMissing("x"), 3),
                 (errors.TLSFailed("x"), 4), (errors.FatalBusError("x"), 1)]
        self.assertEqual([exit_status_of(error) for error, _ in cases],
                         [status for _, status in cases])
