"""
A small network lab for the demo, the integration tests and the benchmarks:
network namespaces, veth uplinks, broker vhosts and users, and the programs
started as users start them (C{twistd -n ...}).

Everything is named with the C{ioppy-t<pid>} prefix and removed by the
cleanup callable each constructor is given (trial's C{addCleanup}, or an
L{contextlib.ExitStack}'s C{callback}), so it goes away also on failure.
Processes are stopped by the PID they were started with.  Every wait and
every command is bounded in time.
"""

import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time

BIN = os.path.dirname(sys.executable)
TWISTD = os.path.join(BIN, "twistd")  # the one installed beside this Python
PREFIX = f"ioppy-t{os.getpid()}"
_counter = [0]


def unique(kind):
    """
    @return: A name for a test resource, unique on this machine.
    """
    _counter[0] += 1
    return f"{PREFIX}-{kind}{_counter[0]}"


def run(*args, timeout=60, check=True):
    """
    Run a command, bounded in time.

    @return: The L{subprocess.CompletedProcess}, output as text.
    """
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}): "
                             f"{result.stdout}{result.stderr}")
    return result


def broker_reachable(host="127.0.0.1", port=5672):
    try:
        with socket.create_connection((host, port), timeout=3):
            return True
    except OSError:
        return False


def rabbitmqctl(*args, check=True):
    return run("rabbitmqctl", "-q", *args, check=check)


class Namespace:
    """
    A network namespace the test owns.
    """

    def __init__(self, cleanup):
        self.name = unique("ns")
        run("ip", "netns", "add", self.name)
        cleanup(run, "ip", "netns", "del", self.name, check=False)
        run("ip", "netns", "exec", self.name, "ip", "link", "set", "lo", "up")

    def run(self, *args, timeout=60, check=True):
        return run("ip", "netns", "exec", self.name, *args, timeout=timeout, check=check)

    def links(self):
        """
        @return: The interface names in this namespace.
        """
        out = self.run("ip", "-o", "link", "show").stdout
        return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]

    def ping(self, address, count=5, size=56, interval=0.2):
        """
        Ping C{address} from inside the namespace.

        @return: C{(sent, received, output)}
        """
        args = ["ping", "-c", str(count), "-i", str(interval), "-W", "3", "-s", str(size)]
        if ":" in address:
            args.append("-6")
        result = self.run(*args, address, timeout=count * 4 + 10, check=False)
        match = re.search(r"(\d+) packets transmitted, (\d+) received", result.stdout)
        if not match:
            raise AssertionError(f"ping gave no summary: {result.stdout}{result.stderr}")
        return int(match.group(1)), int(match.group(2)), result.stdout


class VHost:
    """
    A broker vhost the test owns, with permissions for guest.
    """

    def __init__(self, cleanup):
        self.name = unique("vhost")
        rabbitmqctl("add_vhost", self.name)
        cleanup(rabbitmqctl, "delete_vhost", self.name, check=False)
        rabbitmqctl("set_permissions", "-p", self.name, "guest", ".*", ".*", ".*")
        self.url = f"amqp://guest:guest@127.0.0.1:5672/{self.name}"

    def queues(self):
        """
        @return: The queue names in this vhost.
        """
        out = rabbitmqctl("list_queues", "-p", self.name, "name").stdout
        return [line.strip() for line in out.splitlines()
                if line.strip() and line.strip() != "name"]

    def add_user(self, cleanup):
        """
        Create a broker user with a random password, allowed on this vhost.

        @return: C{(user, password)}
        """
        user, password = unique("user"), secrets.token_hex(12)
        rabbitmqctl("add_user", user, password)
        cleanup(rabbitmqctl, "delete_user", user, check=False)
        rabbitmqctl("set_permissions", "-p", self.name, user, ".*", ".*", ".*")
        return user, password


class Program:
    """
    One C{twistd -n} process started by the lab.

    @ivar shown: The command as a user would type it (without the lab's
        log and pidfile flags).
    """

    def __init__(self, cleanup, plugin, *args, netns=None, env=None, log_dir="."):
        self.log = os.path.abspath(os.path.join(log_dir, unique("log") + ".log"))
        self.shown = " ".join(["twistd", "-n", plugin, *args])
        command = [TWISTD, "-n", "--pidfile=", f"--logfile={self.log}", plugin, *args]
        if netns is not None:
            command = ["ip", "netns", "exec", netns, *command]
            self.shown = f"ip netns exec {netns} {self.shown}"
        self.command = command
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, env=dict(os.environ, **(env or {})))
        cleanup(self.kill)

    def text(self):
        """
        @return: The log so far.
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
                             f"{self.text()}{self.output()}")

    def output(self):
        if self.process.poll() is None or self.process.stdout is None:
            return ""
        return self.process.stdout.read().decode("utf-8", "replace")

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
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()


class Uplink:
    """
    A veth pair from the host into a namespace, and a TCP forwarder on the
    host end to the broker on 127.0.0.1:5672, so that a program running
    inside the namespace reaches the broker as it would across a network.

    @ivar broker: The address the namespace uses for the broker.
    """

    def __init__(self, cleanup, namespace):
        n = _counter[0] = _counter[0] + 1
        tag = f"{os.getpid() % 100000:05d}{n % 100:02d}"
        host_end, ns_end = f"io{tag}h", f"io{tag}n"
        subnet = 16 + (os.getpid() + n) % 200
        self.broker = f"10.254.{subnet}.1"
        run("ip", "link", "add", host_end, "type", "veth", "peer", "name", ns_end)
        cleanup(run, "ip", "link", "del", host_end, check=False)
        run("ip", "link", "set", ns_end, "netns", namespace.name)
        run("ip", "addr", "add", f"{self.broker}/30", "dev", host_end)
        run("ip", "link", "set", host_end, "up")
        namespace.run("ip", "addr", "add", f"10.254.{subnet}.2/30", "dev", ns_end)
        namespace.run("ip", "link", "set", ns_end, "up")
        self.forwarder = Program(cleanup, "portforward", "-p",
                                 f"tcp:5672:interface={self.broker}", "-h", "127.0.0.1",
                                 "-d", "5672")
        deadline = time.monotonic() + 20
        while not broker_reachable(self.broker):
            if time.monotonic() > deadline or self.forwarder.process.poll() is not None:
                raise AssertionError("the forwarder did not start:\n" + self.forwarder.text())
            time.sleep(0.1)
