"""
The shape of the package: what is shipped, how large each module is, which
modules stay pure, and that its layers only import downwards.
"""

import ast
import configparser
import os

from twisted.trial.unittest import SynchronousTestCase

import ioppy_agent

PACKAGE = os.path.dirname(os.path.abspath(ioppy_agent.__file__))
ROOT = os.path.dirname(PACKAGE)
MAX_LINES = 400

# Modules that must not import Twisted or txamqp (every module of the
# message model, and those docs/architecture.md calls pure), and cores that
# do no I/O.
PURE_PACKAGES = ("model",)
PURE = ("bus/errors.py", "bus/framing.py", "bus/reader.py", "bus/content.py",
        "bus/conversation.py", "recorder/window.py", "recorder/retention.py", "web/view.py",
        "router/steering.py")
CORES = ("agent/core.py", "router/core.py", "router/policy.py", "router/topology.py",
         "router/steering.py")
IO = ("os", "socket", "subprocess", "twisted.internet", "ioppy_agent.host",
      "ioppy_agent.bus", "pyroute2", "pytun")
# The layers, lowest first: a module may import only from its own package
# and from lower layers (and the package's __version__).
LAYERS = {"model": 1, "host": 2, "bus": 2, "program": 3, "web": 4, "recorder": 4,
          "agent": 5, "router": 5, "admin": 5}
TOP = 6  # modules at the top level: __main__, testing (the fakes)


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
        C{ioppy-session} (admin/credentials.py), whose job is to run
        rabbitmqctl.
        """
        for relative in modules():
            if relative == "admin/credentials.py":
                continue
            self.assertNotIn("subprocess", imports(relative), relative)
            with open(os.path.join(PACKAGE, relative), encoding="utf-8") as f:
                # The program's name alone in quotes is how a command line
                # runs it; a message may name it.
                self.assertNotRegex(f.read(), r"""['"]rabbitmqctl['"]""", relative)

    def test_pure_modules(self):
        """
        The message model, and the framing, reader, conversation and errors
        of the bus, the recorder's window and retention, the page's view and
        the router's steering import neither Twisted nor txamqp.
        """
        pure = [m for m in modules() if m.split(os.sep)[0] in PURE_PACKAGES] + list(PURE)
        self.assertGreater(len(pure), len(PURE))
        for relative in pure:
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


def layer_of(name):
    """
    @return: The layer of module C{name} (dotted, absolute), or C{None} for
        one outside the package.
    """
    parts = name.split(".")
    if parts[0] != "ioppy_agent":
        return None
    if len(parts) == 1:
        return 0
    return LAYERS.get(parts[1], TOP)


class LayerTests(SynchronousTestCase):
    """
    The package in layers: the message model, then host I/O and the bus,
    then the programs' skeleton, then the page and the recorder, then the
    programs and the organiser's command.
    """

    def test_every_package_has_a_layer(self):
        packages = {m.split(os.sep)[0] for m in modules() if os.sep in m}
        self.assertEqual(packages, set(LAYERS))

    def test_imports_go_down(self):
        """
        No module imports from a package of its own layer or above, but its
        own.
        """
        upward = []
        for relative in modules():
            here = "ioppy_agent." + relative[:-3].replace(os.sep, ".")
            if here.endswith(".__init__"):
                here = here[:-len(".__init__")]
            mine = layer_of(here)
            package = here.split(".")[:2]
            for name in imports(relative):
                theirs = layer_of(name)
                if theirs is None or name.split(".")[:2] == package:
                    continue
                if theirs >= mine:
                    upward.append((relative, name))
        self.assertEqual(upward, [])

    def test_check_can_fail(self):
        """
        The layer check sees an import upwards for what it is.
        """
        self.assertGreater(layer_of("ioppy_agent.router.core"), layer_of("ioppy_agent.bus"))
        self.assertEqual(layer_of("ioppy_agent.testing"), TOP)
        self.assertEqual(layer_of("ioppy_agent"), 0)
        self.assertIsNone(layer_of("twisted.internet"))
