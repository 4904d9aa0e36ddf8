"""
Integration-test set-up: the lab of L{ioppy_agent.lab}, and the check that
the machine can run it.
"""

import os
import shutil

from twisted.trial.unittest import SkipTest

from ioppy_agent.lab import Namespace, Program, Uplink, VHost, broker_reachable

__all__ = ["Namespace", "Program", "Uplink", "VHost", "require"]


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
