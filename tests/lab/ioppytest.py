"""
ioppytest's real components, for the compatibility tests: the original
agent of the C{ioppytest-agent} 0.2.20 wheel, and the capture dumper of
C{ioppytest-utils} 1.2.14 (C{event_bus_utils.packet_dumper}, the code
ioppytest's sniffer runs).

pip fetches them from PyPI at test time into a virtualenv of the lab's own,
C{.lab/ioppytest} in the checkout (git ignores it; nothing of them is
committed), made once and kept while its stamp matches L{STAMP}.  They were
written for Python 2 and an older pika, so the lab makes them run on this
Python with the few edits in L{FIXES}, each checked to apply exactly once:
a release that differs fails the test instead of running changed code.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time

from .programs import ROOT, Program

VENV = os.path.join(ROOT, ".lab", "ioppytest")
PYTHON = os.path.join(VENV, "bin", "python")
# The original agent and its dependencies; pika 0.13.1 is the oldest pika
# that runs on Python 3.7 and later, and the dumper's 0.11.0 pin is not.
AGENT = ("ioppytest-agent==0.2.20", "pika==0.13.1")
# Installed without its pins (click 6.7, prompt-toolkit 1.0.15, pika
# 0.11.0: the dumper needs none but pika).
UTILS = "ioppytest-utils==1.2.14"
# The original agent's Python 2 byte handling around its TUN, in
# agent/utils/opentun.py: (old, new), each found exactly once.
FIXES = (
    ('struct.pack("16sH", "tun%d", IFF_TUN | IFF_NO_PI)',
     'struct.pack("16sH", b"tun%d", IFF_TUN | IFF_NO_PI)'),
    ('self.ifname = ifs[:16].strip("\\x00")',
     'self.ifname = ifs[:16].strip(b"\\x00").decode()'),
    ("p = [ord(b) for b in p]", "p = list(p)"),
    ("        data = ''.join([chr(b) for b in data])\n\n        try:\n"
     "            # write over tuntap interface\n            out = os.write(self.tunIf, data)",
     "        data = bytes(data)\n\n        try:\n"
     "            # write over tuntap interface\n            out = os.write(self.tunIf, data)"),
)
# pika 0.13.1 still looks for collections.Callable (gone in Python 3.10).
SITECUSTOMIZE = ("import collections, collections.abc\n"
                 "collections.Callable = collections.abc.Callable\n")
STAMP = json.dumps({"agent": AGENT, "utils": UTILS, "fixes": FIXES,
                    "sitecustomize": SITECUSTOMIZE, "python": sys.version_info[:2]})
# What the original agent logs once its TUN is up and announced, and its
# queue bound: it takes packets from then on.
ANNOUNCED = r"Publishing MsgAgentTunStarted"
BOUND = r"bound to: toAgent\.{}\.ip\.tun\.packet\.raw"
# It hangs before that about one start in four: how long to give it.
START_TIMEOUT = 20.0
STARTS = 4


def _pip(*args):
    result = subprocess.run([PYTHON, "-m", "pip", "install", "-q",
                             "--disable-pip-version-check", *args],
                            capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise AssertionError(f"pip install {' '.join(args)} failed:\n{result.stdout}"
                             f"{result.stderr}")


def _site_packages():
    out = subprocess.run([PYTHON, "-c", "import sysconfig; print(sysconfig.get_paths()"
                                        "['purelib'])"],
                         capture_output=True, text=True, timeout=60, check=True)
    return out.stdout.strip()


def ensure_venv():
    """
    Make the lab's virtualenv of ioppytest's components, unless it is there
    and its stamp matches.

    @return: Its site-packages directory.
    """
    stamp = os.path.join(VENV, "ioppy-lab.stamp")
    try:
        with open(stamp) as f:
            if f.read() == STAMP:
                return _site_packages()
    except FileNotFoundError:
        pass
    subprocess.run(["rm", "-rf", VENV], check=True, timeout=60)
    subprocess.run([sys.executable, "-m", "venv", VENV], check=True, timeout=300,
                   capture_output=True)
    _pip(*AGENT)
    _pip("--no-deps", UTILS)
    site = _site_packages()
    opentun = os.path.join(site, "agent", "utils", "opentun.py")
    with open(opentun) as f:
        text = f.read()
    for old, new in FIXES:
        if text.count(old) != 1:
            raise AssertionError(f"{opentun}: expected {old!r} once, found it "
                                 f"{text.count(old)} times: not the 0.2.20 the lab knows")
        text = text.replace(old, new)
    with open(opentun, "w") as f:
        f.write(text)
    with open(os.path.join(site, "sitecustomize.py"), "w") as f:
        f.write(SITECUSTOMIZE)
    with open(stamp, "w") as f:
        f.write(STAMP)
    return site


def original_agent(cleanup, namespace, url, name):
    """
    Start the real original agent C{name} inside C{namespace}, as its users
    start it (C{python -m agent connect --url URL --name NAME}), and wait
    until it has opened its TUN and announced it; start it again (at most
    L{STARTS} times) when it hangs before that.

    @param url: The URL it reaches the broker with from inside the namespace.
    @return: The L{Program}.
    """
    ensure_venv()
    tried = []
    for _ in range(STARTS):
        agent = Program(cleanup, None, netns=namespace.name,
                        argv=[PYTHON, "-u", "-m", "agent", "connect", "--url", url,
                              "--name", name])
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and agent.process.poll() is None:
            text = agent.text()
            if re.search(ANNOUNCED, text) and re.search(BOUND.format(re.escape(name)), text):
                return agent
            time.sleep(0.2)
        tried.append(agent.text()[-3000:])
        agent.kill()
        # Its TUN, if it made one, goes with it; make sure before the next.
        namespace.run("ip", "link", "del", "tun0", check=False)
    raise AssertionError(f"the original agent did not start in {STARTS} tries:\n"
                         + "\n-----\n".join(tried))


class CaptureDumper:
    """
    ioppytest-utils' capture dumper, as ioppytest's sniffer runs it: bound
    to C{fromAgent.#}, writing a pcap (DLT_RAW) of every packet message.
    """

    def __init__(self, cleanup, url, directory, filename="capture.pcap"):
        ensure_venv()
        self.path = os.path.join(directory, filename)
        code = ("import sys\n"
                "from event_bus_utils.packet_dumper import launch_amqp_data_to_pcap_dumper\n"
                "launch_amqp_data_to_pcap_dumper(sys.argv[1], 20, sys.argv[2], 101,"
                " sys.argv[3], 'amq.topic', ['fromAgent.#'])\n")
        self.program = Program(cleanup, None, argv=[PYTHON, "-u", "-c", code, directory,
                                                    filename, url])

    def stop(self, timeout=20.0):
        """
        Stop it as the sniffer does (SIGINT), and wait for it to end.

        @return: Its output.
        """
        if self.program.process.poll() is None:
            self.program.process.send_signal(signal.SIGINT)
            try:
                self.program.wait(timeout)
            except subprocess.TimeoutExpired:
                self.program.kill()
        return self.program.text()
