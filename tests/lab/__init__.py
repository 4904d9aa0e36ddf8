"""
A small network lab for the integration tests, the demo and the bench:
network namespaces, veth links, broker vhosts and users, the programs
started as users start them (C{twistd -n ...}), helper commands and a
misbehaving broker.  It needs root, C{ip} and C{rabbitmqctl}, so it lives
with the tests and is not part of the installed package.

Everything is named with the C{ioppy-t<pid>} prefix and removed by the
cleanup callable each constructor is given (trial's C{addCleanup}, or an
L{contextlib.ExitStack}'s C{callback}), so it goes away also on failure.
Processes are stopped by the PID they were started with.  Every wait and
every command is bounded in time.

  - L{system}: commands, unique names, broker vhosts and users;
  - L{programs}: L{Program} and L{Daemon}, the processes;
  - L{network}: L{Namespace}, L{Uplink}, L{veth_pair};
  - L{tunnel}: L{Tunnel}, a router and two agents;
  - L{tools}: the helper commands (publish, broker rate, proxies);
  - L{hostile}: a fake broker that breaks the protocol on purpose;
  - L{peers}: stand-ins for ioppytest's sniffer, original agent and router;
  - L{broker}: L{PrivateNode<broker.PrivateNode>}, a RabbitMQ node of the
    lab's own, for tests that stop or reconfigure a broker, and the bench.
"""

from .network import Namespace, Uplink, veth_pair
from .programs import Daemon, Program, tool, wait_for_log
from .system import (VHost, broker_reachable, command_line, cpu_seconds, free_port,
                     peak_rss_mb, rabbitmqctl, run, uid_of, unique, write_results)
from .tools import broker_rate, connections, publish, try_as
from .tunnel import Tunnel

__all__ = ["Daemon", "Namespace", "Program", "Tunnel", "Uplink", "VHost", "broker_rate", "connections",
           "broker_reachable", "command_line", "cpu_seconds", "free_port", "peak_rss_mb",
           "publish", "rabbitmqctl", "run", "tool", "try_as", "uid_of", "unique",
           "veth_pair", "wait_for_log", "write_results"]
