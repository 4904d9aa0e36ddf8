"""
The documentation against the code: every option of both programs is
documented, every documented option exists, and the module map names
every module.
"""

import os
import re

from twisted.scripts._twistd_unix import ServerOptions
from twisted.trial.unittest import SynchronousTestCase

from ioppy_agent.agent.cli import ConnectOptions
from ioppy_agent.recorder.capture import CaptureOptions
from ioppy_agent.agent.tap import AgentOptions
from ioppy_agent.router.tap import RouterOptions

from .test_layout import CORES, PACKAGE, PURE, ROOT, modules

OPERATING = os.path.join(ROOT, "docs", "operating.md")
ARCHITECTURE = os.path.join(ROOT, "docs", "architecture.md")
README = os.path.join(ROOT, "README.md")
# Options usage.Options adds to every command.
BUILT_IN = {"--help", "--version"}
# Other commands' options the documents show (systemctl enable --now).
ELSEWHERE = {"--now"}


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def options_of(options_class):
    """
    @return: The long option names of a L{usage.Options} class.
    """
    options = options_class()
    names = {"--" + name for name in options.synonyms if len(name) > 1}
    return {name.replace("_", "-") for name in names} - BUILT_IN


def documented(heading):
    """
    @return: The options in the first column of the table under
        C{heading} in docs/operating.md.
    """
    text = read(OPERATING)
    section = text.split(heading + "\n", 1)[1].split("\n#", 1)[0]
    names = set()
    for line in section.splitlines():
        if line.startswith("| `-"):
            names |= set(re.findall(r"`(--[a-z0-9-]+)`", line.split("|")[1]))
    return names


def session_options():
    """
    @return: The options of C{ioppy-session} and its commands.
    """
    from ioppy_agent.admin.credentials import parser
    top = parser()
    names = {o for a in top._actions for o in a.option_strings}
    for action in top._actions:
        for command in getattr(action, "choices", None) or {}:
            sub = action.choices[command]
            names |= {o for a in sub._actions for o in a.option_strings}
    return {n for n in names if n.startswith("--")}


def scripts_options():
    """
    @return: The options the bench scripts take.
    """
    names = set()
    for script in ("bench.py", "scale.py", "latency.py", "soak.py"):
        names |= set(re.findall(r'add_argument\("(--[a-z-]+)"',
                                read(os.path.join(ROOT, "scripts", script))))
    return names


class OptionDocsTests(SynchronousTestCase):
    """
    docs/operating.md has one table per command, and they match the code.
    """

    def test_agent(self):
        """
        The agent's table lists exactly the agent's options.
        """
        self.assertEqual(documented("### `twistd ioppy-agent`"), options_of(AgentOptions))

    def test_router(self):
        """
        The router's table lists exactly the router's options.
        """
        self.assertEqual(documented("### `twistd ioppy-router`"), options_of(RouterOptions))

    def test_connect(self):
        """
        The connect table lists the options connect adds to the agent's.
        """
        self.assertEqual(documented("### `ioppy-agent connect`"),
                         options_of(ConnectOptions) - options_of(AgentOptions))

    def test_capture(self):
        """
        The table of C{ioppy-capture} lists exactly its options.
        """
        self.assertEqual(documented("### `ioppy-capture`"), options_of(CaptureOptions))

    def test_every_option_mentioned_exists(self):
        """
        Every --option the README and the operating guide mention is one of
        the programs', twistd's or the bench scripts'.
        """
        known = (options_of(AgentOptions) | options_of(RouterOptions)
                 | options_of(ConnectOptions) | options_of(CaptureOptions)
                 | options_of(ServerOptions)
                 | scripts_options() | session_options() | BUILT_IN | ELSEWHERE)
        for path in (README, OPERATING, ARCHITECTURE):
            mentioned = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]+)(?![A-Za-z.])",
                                       read(path)))
            self.assertEqual(mentioned - known, set(), path)


class ModuleMapTests(SynchronousTestCase):
    """
    docs/architecture.md names every module of the package.
    """

    def test_every_module_named(self):
        """
        Each module's file name appears in the module map, in the section of
        its package.
        """
        text = read(ARCHITECTURE)
        tree = text.split("## Module map", 1)[1].split("## ", 1)[0]
        for relative in modules():
            directory, name = os.path.split(relative)
            if directory:
                section = tree.split(f"  {directory}/\n", 1)
                self.assertEqual(len(section), 2, f"no {directory}/ in the map")
                self.assertIn(f"    {name} ", section[1], relative)
            else:
                self.assertIn(f"  {name} ", tree, relative)
        self.assertTrue(os.path.isdir(PACKAGE))

    def test_claims_enforced(self):
        """
        Every module the map calls pure is checked as pure by test_layout,
        and every module it says does no I/O is checked as a core; and the
        other way round.
        """
        text = read(ARCHITECTURE)
        tree = text.split("## Module map", 1)[1].split("```", 2)[1]
        marked = {"(pure)": set(), "(no I/O)": set()}
        package = ""
        for line in tree.splitlines():
            if re.match(r"^  [a-z]+/$", line):
                package = line.strip()
            found = re.match(r"^    (\S+\.py) ", line)
            for mark, names in marked.items():
                if found and line.rstrip().endswith(mark):
                    names.add(package + found.group(1))
        self.assertEqual(marked["(pure)"], set(PURE) | {"model/__init__.py"})
        self.assertEqual(marked["(no I/O)"], set(CORES) - set(PURE))


class ReadmeTests(SynchronousTestCase):
    """
    The README stays short enough to read first.
    """

    def test_length(self):
        lines = read(README).splitlines()
        self.assertLessEqual(len(lines), 200)
        headings = [line for line in lines if line.startswith("## ")]
        self.assertEqual(headings, ["## Install", "## Run", "## Options", "## How it works",
                                    "## Test", "## Benchmark", "## Read more"])
