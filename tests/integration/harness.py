"""
Integration-test set-up: the lab of L{tests.lab}, and the check that the
machine can run it.
"""

import os
import shutil
import subprocess
import sys

from twisted.trial.unittest import SkipTest

from ..lab import Namespace, Program, Uplink, VHost, broker_reachable, rabbitmqctl

__all__ = ["Namespace", "Program", "Uplink", "VHost", "make_session", "require"]

SESSION_COMMAND = os.path.join(os.path.dirname(sys.executable), "ioppy-session")


def require(testcase):
    """
    Fail (with CI=true) or skip (elsewhere) unless root, /dev/net/tun, ip,
    ping, rabbitmqctl and a broker on 127.0.0.1:5672 are all there.
    """
    missing = []
    if os.geteuid() != 0:
        missing.append("root")
    if not os.path.exists("/dev/net/tun"):
        missing.append("/dev/net/tun")
    for tool in ("ip", "ping", "rabbitmqctl"):
        if shutil.which(tool) is None:
            missing.append(tool)
    if not broker_reachable():
        missing.append("a RabbitMQ broker on 127.0.0.1:5672")
    if missing:
        message = "integration tests need " + ", ".join(missing) + " (run 'make test')"
        if os.environ.get("CI") == "true":
            testcase.fail(message)
        raise SkipTest(message)


def rabbitmqctl_connections():
    """
    @return: C{(pid, vhost, connection_name)} of each broker connection.
    """
    out = rabbitmqctl("list_connections", "pid", "vhost", "client_properties").stdout
    connections = []
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) != 3 or parts[0] == "pid":
            continue
        name = ""
        marker = '{"connection_name","'
        if marker in parts[2]:
            name = parts[2].split(marker, 1)[1].split('"', 1)[0]
        connections.append((parts[0], parts[1], name))
    return connections


def make_session(testcase, kind, names):
    """
    Make a session with C{ioppy-session create} on the machine's broker,
    one participant per name, deleted when the test ends.

    @return: C{(session, directory)}: its name and where its URL files and
        grants file are.
    """
    from .. import lab
    session = lab.unique(kind)
    directory = os.path.abspath(testcase.mktemp())
    args = [SESSION_COMMAND, "create", session, "--broker", "amqp://127.0.0.1", "--out",
            directory]
    for name in names:
        args += ["-p", name]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300)
    testcase.assertEqual(done.returncode, 0, done.stderr)
    testcase.addCleanup(subprocess.run, [SESSION_COMMAND, "delete", session],
                        capture_output=True, timeout=300)
    return session, directory
