"""
L{Tunnel}: the router-and-agents set-up that the demo, the bench and the
soak share.
"""

import json
import os
import re
import time

from .network import Namespace
from .programs import TWISTD, Program
from .system import VHost

ROUTES = r"routes from the router: (\d+) destinations \((\d+) direct\)"


class Tunnel:
    """
    A router and agents C{agent_1} ... C{agent_<agents>}, each TUN in a
    namespace of its own, on a vhost of its own; each program keeps a status
    file in C{log_dir}.

    @ivar programs: C{"router"}, C{"agent_1"}, ... to L{Program}.
    @ivar namespaces: C{"agent_1"}, ... to L{Namespace}.
    @ivar direct: Whether the router steered every agent to deliver to
        every other directly (one broker hop); C{False} with programs that
        do not (an older release, through C{twistd}).
    """

    def __init__(self, cleanup, log_dir, agent_args=(), status_interval=1.0, agents=2,
                 vhost=None, twistd=TWISTD, direct_within=15.0, router_args=()):
        """
        @param vhost: The L{VHost} to use; by default a new one on the
            machine's broker.
        @param router_args: More options for the router (C{--record}).
        @param direct_within: How long to wait for the router's routes.
        """
        self.vhost = vhost if vhost is not None else VHost(cleanup)
        names = [f"agent_{i}" for i in range(1, agents + 1)]
        self.namespaces = {name: Namespace(cleanup) for name in names}
        self.ns1, self.ns2 = self.namespaces["agent_1"], self.namespaces["agent_2"]
        self.status_files = {name: os.path.join(log_dir, name + ".json")
                             for name in ["router", *names]}
        common = ["--url", self.vhost.url, "--stats-interval", "0",
                  "--status-interval", str(status_interval)]
        router = Program(cleanup, "ioppy-router", *common, "--status-file",
                         self.status_files["router"], *router_args, log_dir=log_dir,
                         twistd=twistd)
        router.wait_for("router connected to")
        self.programs = {"router": router}
        for name in names:
            self.programs[name] = Program(
                cleanup, "ioppy-agent", *common, "--name", name, "--netns",
                self.namespaces[name].name, "--status-file", self.status_files[name],
                *agent_args, log_dir=log_dir, twistd=twistd)
        for name in names:
            self.programs[name].wait_for(f"agent {name} connected to", timeout=60)
        self.direct = self._wait_direct(names, direct_within)
        self.ns1.ping("10.2.0.2", count=3)

    def _wait_direct(self, names, within):
        """
        @return: Whether each agent's last routes from the router make every
            other agent a direct destination, within C{within} seconds.
        """
        wanted = str(len(names) - 1)
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            last = [re.findall(ROUTES, self.programs[name].text())[-1:] for name in names]
            if all(found and found[0] == (wanted, wanted) for found in last):
                return True
            time.sleep(0.2)
        return False

    def status(self, name):
        """
        @return: The last status file of program C{name}, or C{{}}.
        """
        try:
            with open(self.status_files[name], encoding="utf-8") as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def stop(self):
        """
        Stop every program with SIGTERM.
        """
        for program in self.programs.values():
            program.terminate(timeout=10)
