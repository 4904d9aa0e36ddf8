"""
Network namespaces the lab owns, and links into them: a veth uplink to the
broker, and a direct veth pair (the kernel's own path, for the bench).
"""

import os
import re
import time

from .programs import Program
from .system import broker_reachable, next_number, run, unique


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

    def ping(self, address, count=5, size=56, interval=0.2, source=None):
        """
        Ping C{address} from inside the namespace (from C{source}, if given).

        @return: C{(sent, received, output)}
        """
        args = ["ping", "-c", str(count), "-i", str(interval), "-W", "3", "-s", str(size)]
        if source is not None:
            args += ["-I", source]
        if ":" in address:
            args.append("-6")
        result = self.run(*args, address, timeout=count * 4 + 10, check=False)
        match = re.search(r"(\d+) packets transmitted, (\d+) received", result.stdout)
        if not match:
            raise AssertionError(f"ping gave no summary: {result.stdout}{result.stderr}")
        return int(match.group(1)), int(match.group(2)), result.stdout


class Uplink:
    """
    A veth pair from the host into a namespace, and a TCP forwarder on the
    host end to the broker on 127.0.0.1:5672, so that a program running
    inside the namespace reaches the broker as it would across a network.

    @ivar broker: The address the namespace uses for the broker.
    """

    def __init__(self, cleanup, namespace):
        n = next_number()
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


def veth_pair(cleanup, a, b):
    """
    Join namespaces C{a} (10.3.0.1, fd03::1) and C{b} (10.3.0.2, fd03::2)
    with a veth pair.
    """
    tag = f"{os.getpid() % 100000:05d}{next_number() % 100:02d}"
    end_a, end_b = f"iob{tag}a", f"iob{tag}b"
    run("ip", "link", "add", end_a, "netns", a.name, "type", "veth", "peer", "name", end_b,
        "netns", b.name)
    for ns, end, n in ((a, end_a, 1), (b, end_b, 2)):
        ns.run("ip", "addr", "add", f"10.3.0.{n}/24", "dev", end)
        ns.run("ip", "addr", "add", f"fd03::{n}/64", "dev", end, "nodad")
        ns.run("ip", "link", "set", end, "up")
