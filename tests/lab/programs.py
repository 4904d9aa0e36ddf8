"""
Processes the lab starts: the programs as users run them (C{twistd -n ...},
or twistd's daemon mode), and the lab's own helper commands.

Each is stopped by the PID it was started with, through the cleanup
callable it was given; every wait is bounded in time.
"""

import os
import re
import signal
import subprocess
import sys
import time

from .system import run, unique

BIN = os.path.dirname(sys.executable)
TWISTD = os.path.join(BIN, "twistd")  # the one installed beside this Python
# The checkout, which holds this lab: the helper commands import it from there.
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# What the log of a program of ours must never hold, whatever a test did to
# it: Twisted's "Unhandled Error" report and any Python traceback.
TRACEBACK = re.compile(r"Unhandled Error|Traceback \(most recent call last\)")


def check_log(program):
    """
    @raise AssertionError: if C{program}'s log holds a traceback, with the
        log around it.
    """
    text = program.text()
    found = TRACEBACK.search(text)
    if found is not None:
        raise AssertionError(f"{program.shown} logged a traceback:\n"
                             f"{text[max(0, found.start() - 3000):found.start() + 3000]}")


def tool(*args):
    """
    @return: The command line of one of the lab's helper commands
        (L{tests.lab.tools}), and the environment it needs.
    """
    env = {"PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return [sys.executable, "-m", "tests.lab.tools", *args], env


class Program:
    """
    One process started by the lab: by default C{twistd -n} with a plugin,
    logging to standard output; everything it prints goes to one log file.

    @ivar shown: The command as a user would type it (without the lab's
        log and pidfile flags).

    When the cleanups run, a program of ours (a twistd plugin) is killed if
    it still runs, and then its log is checked: a traceback in it fails the
    test (L{check_log}).
    """

    def __init__(self, cleanup, plugin, *args, netns=None, env=None, log_dir=".",
                 twistd_args=(), prefix=(), argv=None, interactive=False, twistd=TWISTD):
        """
        @param twistd_args: twistd's own options (before the plugin name).
        @param twistd: The twistd to run (another installation's, to compare
            releases).
        @param prefix: A command that runs the program (C{setpriv ...}).
        @param argv: Run this command instead of twistd.
        @param interactive: Give it a pipe as standard input, for L{send}.
        """
        self.log = os.path.abspath(os.path.join(log_dir, unique("log") + ".log"))
        if argv is None:
            self.shown = " ".join(["twistd", "-n", *twistd_args, plugin, *args])
            argv = [twistd, "-n", "--pidfile=", "--logfile=-", *twistd_args, plugin, *args]
        else:
            self.shown = " ".join(argv)
        if netns is not None:
            argv = ["ip", "netns", "exec", netns, *argv]
            self.shown = f"ip netns exec {netns} {self.shown}"
        self.command = [*prefix, *argv]
        self._out = open(self.log, "wb")
        # A process group of its own: what it forks (the original agent
        # runs as two processes) is stopped with it.
        self.process = subprocess.Popen(
            self.command, stdout=self._out, stderr=subprocess.STDOUT,
            stdin=subprocess.PIPE if interactive else subprocess.DEVNULL,
            env=dict(os.environ, **(env or {})), start_new_session=True)
        if plugin is not None:
            cleanup(check_log, self)
        cleanup(self.kill)

    def send(self, line):
        """
        Write C{line} to the program's standard input.
        """
        self.process.stdin.write(line.encode("utf-8") + b"\n")
        self.process.stdin.flush()

    def text(self):
        """
        @return: What the program printed so far.
        """
        try:
            with open(self.log, encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def wait_for(self, pattern, timeout=20.0):
        """
        Wait until C{pattern} appears in the log.

        @raise AssertionError: if the process ends or time runs out first.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if re.search(pattern, self.text()):
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"{pattern!r} did not appear (exit {self.process.poll()}):\n"
                             f"{self.text()}")

    def wait(self, timeout):
        """
        @return: The exit status, waiting at most C{timeout} seconds.
        """
        return self.process.wait(timeout=timeout)

    def terminate(self, timeout=5.0):
        """
        Send SIGTERM.

        @return: C{(exit_status, seconds_taken)}
        """
        start = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=timeout)
        return code, time.monotonic() - start

    def kill(self):
        """
        Kill the program and every process of its group that is left (its
        group exists while any of them does, so its number is still ours).
        """
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self.process.poll() is None:
            self.process.wait(timeout=10)
        self._out.close()


class Daemon:
    """
    A program started in twistd's daemon mode (no C{-n}): twistd forks,
    writes the pidfile and returns.

    @ivar status: twistd's own exit status (0 once the daemon started).
    @ivar pid: The daemon's PID, from its pidfile, or C{None}.
    """

    def __init__(self, cleanup, plugin, *args, directory, twistd_args=()):
        self.pidfile = os.path.join(directory, unique("pid") + ".pid")
        self.log = os.path.join(directory, unique("log") + ".log")
        result = run(TWISTD, f"--pidfile={self.pidfile}", f"--logfile={self.log}",
                     *twistd_args, plugin, *args, check=False, timeout=60)
        self.status = result.returncode
        self.output = result.stdout + result.stderr
        self.pid = None
        self.shown = " ".join(["twistd", *twistd_args, plugin, *args])
        if self.status == 0:
            with open(self.pidfile, encoding="ascii") as f:
                self.pid = int(f.read().strip())
        cleanup(check_log, self)
        cleanup(self.kill)

    text = Program.text

    def alive(self):
        return self.pid is not None and os.path.exists(f"/proc/{self.pid}")

    def wait_gone(self, timeout):
        """
        @return: Whether the daemon ended within C{timeout} seconds.
        """
        deadline = time.monotonic() + timeout
        while self.alive():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def kill(self):
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
            self.wait_gone(10)


def wait_for_log(source, pattern, timeout=20.0):
    """
    Wait until C{pattern} appears in C{source.text()}.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if re.search(pattern, source.text()):
            return
        time.sleep(0.1)
    raise AssertionError(f"{pattern!r} did not appear:\n{source.text()}")
