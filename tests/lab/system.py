"""
Commands, names and broker vhosts for the lab.
"""

import json
import os
import secrets
import socket
import subprocess

PREFIX = f"ioppy-t{os.getpid()}"
_counter = [0]


def unique(kind):
    """
    @return: A name for a test resource, unique on this machine.
    """
    return f"{PREFIX}-{kind}{next_number()}"


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
    """
    @return: Whether something accepts TCP connections on C{host}:C{port}.
    """
    try:
        with socket.create_connection((host, port), timeout=3):
            return True
    except OSError:
        return False


def next_number():
    """
    @return: A number not returned before in this process.
    """
    _counter[0] += 1
    return _counter[0]


def rabbitmqctl(*args, check=True, timeout=60):
    """
    Run C{rabbitmqctl -q} against the machine's broker.
    """
    return run("rabbitmqctl", "-q", *args, check=check, timeout=timeout)


class VHost:
    """
    A broker vhost the test owns, with permissions for guest: on the
    machine's broker, or on a L{PrivateNode<tests.lab.broker.PrivateNode>}.
    """

    def __init__(self, cleanup, node=None):
        self._ctl = node.ctl if node is not None else rabbitmqctl
        port = node.port if node is not None else 5672
        self.name = unique("vhost")
        self._ctl("add_vhost", self.name)
        cleanup(self._ctl, "delete_vhost", self.name, check=False)
        self._ctl("set_permissions", "-p", self.name, "guest", ".*", ".*", ".*")
        self.url = f"amqp://guest:guest@127.0.0.1:{port}/{self.name}"

    def queues(self):
        """
        @return: The queue names in this vhost.
        """
        out = self._ctl("list_queues", "-p", self.name, "name").stdout
        return [line.strip() for line in out.splitlines()
                if line.strip() and line.strip() != "name"]

    def add_user(self, cleanup):
        """
        Create a broker user with a random password, allowed on this vhost.

        @return: C{(user, password)}
        """
        user, password = unique("user"), secrets.token_hex(12)
        self._ctl("add_user", user, password)
        cleanup(self._ctl, "delete_user", user, check=False)
        self._ctl("set_permissions", "-p", self.name, user, ".*", ".*", ".*")
        return user, password


def free_port():
    """
    @return: A TCP port on 127.0.0.1 that nothing listens on right now.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def uid_of(pid):
    """
    @return: The effective uid of process C{pid}.
    """
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("Uid:"):
                return int(line.split()[2])
    raise AssertionError(f"no Uid line for {pid}")


def command_line(pid):
    """
    @return: Process C{pid}'s command line, as one string.
    """
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().replace(b"\0", b" ").decode("utf-8", "replace")


def cpu_seconds(pid):
    """
    @return: The user and system CPU time process C{pid} used so far.
    """
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid):
    """
    @return: The peak resident set size of process C{pid}, in MB.
    """
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def write_results(directory, name, lines, data=None):
    """
    Write a bench script's table (C{<name>.md}) and, if given, its figures
    (C{<name>.json}) to C{directory}, made if missing.
    """
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, f"{name}.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    if data is not None:
        with open(os.path.join(directory, f"{name}.json"), "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1)
