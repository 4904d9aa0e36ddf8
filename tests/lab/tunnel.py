"""
L{Tunnel}: the router-and-two-agents set-up that the demo, the bench and
the soak share.
"""

import json
import os

from .network import Namespace
from .programs import Program
from .system import VHost


class Tunnel:
    """
    A router and agents C{agent_1} and C{agent_2}, their TUNs in two
    namespaces of their own, on a vhost of its own; each program keeps a
    status file in C{log_dir}.

    @ivar programs: C{"router"}, C{"agent_1"}, C{"agent_2"} to L{Program}.
    """

    def __init__(self, cleanup, log_dir, agent_args=(), status_interval=1.0):
        self.vhost = VHost(cleanup)
        self.ns1, self.ns2 = Namespace(cleanup), Namespace(cleanup)
        self.status_files = {name: os.path.join(log_dir, name + ".json")
                             for name in ("router", "agent_1", "agent_2")}
        common = ["--url", self.vhost.url, "--stats-interval", "0",
                  "--status-interval", str(status_interval)]
        router = Program(cleanup, "ioppy-router", *common, "--status-file",
                         self.status_files["router"], log_dir=log_dir)
        router.wait_for("router connected to")
        self.programs = {"router": router}
        for name, ns in (("agent_1", self.ns1), ("agent_2", self.ns2)):
            self.programs[name] = Program(
                cleanup, "ioppy-agent", *common, "--name", name, "--netns", ns.name,
                "--status-file", self.status_files[name], *agent_args, log_dir=log_dir)
            self.programs[name].wait_for(f"agent {name} connected to")
        self.ns1.ping("10.2.0.2", count=3)

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
