"""
The shape of the package: what is shipped, how large each module is, and
which modules stay pure.
"""

import ast
import configparser
import os

from twisted.trial.unittest import SynchronousTestCase

import ioppy_agent

PACKAGE = os.path.dirname(os.path.abspath(ioppy_agent.__file__))
ROOT = os.path.dirname(PACKAGE)
MAX_LINES = 400

# Modules that must not import Twisted or txamqp, and cores that do no I/O.
PURE = ("bus/errors.py", "bus/framing.py", "bus/reader.py", "bus/content.py",
        "bus/conversation.py", "wire.py", "keys.py", "addressing.py", "actions.py",
        "grants.py")
CORES = ("agent/core.py", "router/core.py", "router/policy.py", "router/topology.py")
IO = ("os", "socket", "subprocess", "twisted.internet", "ioppy_agent.tun",
      "ioppy_agent.netlink", "ioppy_agent.bus", "pyroute2", "pytun")


def modules():
    """
    @return: The path of every module of the package, relative to it.
    """
    found = []
    for directory, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                found.append(os.path.relpath(os.path.join(directory, name), PACKAGE))
    return sorted(found)


def imports(relative):
    """
    @return: The modules C{relative} imports, absolute.
    """
    with open(os.path.join(PACKAGE, relative), encoding="utf-8") as f:
        tree = ast.parse(f.read())
    here = ["ioppy_agent", *os.path.dirname(relative).split(os.sep)]
    here = [part for part in here if part]
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[:len(here) - node.level + 1]
                names.add(".".join(base + ([node.module] if node.module else [])))
            else:
                names.add(node.module)
    return names


class LayoutTests(SynchronousTestCase):
    """
    What a maintainer can count on.
    """

    def test_module_size(self):
        """
        No shipped module is over 400 lines.
        """
        sizes = {}
        for relative in modules():
            with open(os.path.join(PACKAGE, relative), encoding="utf-8") as f:
                sizes[relative] = len(f.read().splitlines())
        self.assertEqual({m: n for m, n in sizes.items() if n > MAX_LINES}, {})

    def test_packages_shipped(self):
        """
        setup.cfg ships every package of ioppy_agent and the plugin, and
        nothing else: not the tests or their lab.
        """
        config = configparser.ConfigParser()
        config.read(os.path.join(ROOT, "setup.cfg"))
        shipped = set(config["options"]["packages"].split())
        found = {"ioppy_agent" + ("." + os.path.dirname(m).replace(os.sep, ".")
                                  if os.path.dirname(m) else "")
                 for m in modules()}
        self.assertEqual(shipped, found | {"twisted.plugins"})

    def test_no_lab_in_package(self):
        """
        Nothing shipped starts processes or runs rabbitmqctl (a message may
        tell the operator to): that is the lab's, in tests/lab.  The one exception is the organiser's command,
        C{ioppy-session} (credentials.py), whose job is to run rabbitmqctl.
        """
        for relative in modules():
            if relative == "credentials.py":
                continue
            self.assertNotIn("subprocess", imports(relative), relative)
            with open(os.path.join(PACKAGE, relative), encoding="utf-8") as f:
                # The program's name alone in quotes is how a command line
                # runs it; a message may name it.
                self.assertNotRegex(f.read(), r"""['"]rabbitmqctl['"]""", relative)

    def test_pure_modules(self):
        """
        The framing, reader, conversation and errors of the bus, the wire
        format and the actions import neither Twisted nor txamqp.
        """
        for relative in PURE:
            found = {name for name in imports(relative)
                     if name.split(".")[0] in ("twisted", "txamqp")}
            self.assertEqual(found, set(), relative)

    def test_cores_do_no_io(self):
        """
        The agent's and the router's cores and policies import nothing that
        does I/O: not the reactor, the TUN, netlink or the bus.
        """
        for relative in CORES:
            found = {name for name in imports(relative)
                     if any(name == io or name.startswith(io + ".") for io in IO)}
            self.assertEqual(found, set(), relative)
