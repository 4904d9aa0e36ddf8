"""
make bench (flood): what a flood from one participant costs the others.

A session made by ioppy-session with four participants and its router, on
the machine's broker, each agent's TUN in a namespace of its own.  agent_3
pings agent_4 (100 pings, 20 ms apart) with nothing else running, then
while agent_1's own credentials flood agent_2's inbox for 10 s with JSON
echo requests from 1, 2 and 4 publishers (agent_2 writes them into its TUN
and its kernel answers agent_1); then once more on a session made with
--max-connections 2, where agent_1's agent and one publisher are all its
user may connect.  Printed for each: the ping's median and 95th percentile
and its loss, the flood's messages per second, the share of a core the
broker took, its memory, and how many flood publishers the broker let in.
"""

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from scripts.bench import ping_rtts  # noqa: E402
from tests.lab import Namespace, Program, cpu_seconds, unique, write_results  # noqa: E402
from tests.lab.broker import machine_broker_pid  # noqa: E402
from tests.lab.programs import tool  # noqa: E402

SESSION = os.path.join(os.path.dirname(sys.executable), "ioppy-session")
NAMES = ("agent_1", "agent_2", "agent_3", "agent_4")
FLOOD_SECONDS = 10
PINGS = 100


def broker_memory_mb():
    out = subprocess.run(["rabbitmqctl", "-q", "eval", "erlang:memory(total)."],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    return int(out.strip()) / 1e6


class Session:
    """
    A session from ioppy-session, its router and four agents.
    """

    def __init__(self, cleanup, work, limits=()):
        self.name = unique("flood")
        self.dir = os.path.join(work, self.name)
        args = [SESSION, "create", self.name, "--broker", "amqp://127.0.0.1", "--out",
                self.dir, *limits]
        for name in NAMES:
            args += ["-p", name]
        subprocess.run(args, capture_output=True, text=True, timeout=300, check=True)
        cleanup(subprocess.run, [SESSION, "delete", self.name], capture_output=True,
                timeout=300)
        router = Program(cleanup, "ioppy-router", "--url-file", self.url_file("router"),
                         "--grants", os.path.join(self.dir, "grants.json"),
                         "--stats-interval", "0", log_dir=work)
        router.wait_for("router connected to")
        self.ns = {name: Namespace(cleanup) for name in NAMES}
        self.agents = {name: Program(cleanup, "ioppy-agent", "--url-file",
                                     self.url_file(name), "--name", name, "--netns",
                                     self.ns[name].name, "--stats-interval", "0",
                                     log_dir=work)
                       for name in NAMES}
        for agent in self.agents.values():
            agent.wait_for(r"routes from the router: 3 destinations \(3 direct\)", timeout=60)
        with open(self.url_file("agent_1")) as f:
            self.attacker = f.read().strip()

    def url_file(self, name):
        return os.path.join(self.dir, f"{name}.url")


def measure(session, publishers):
    """
    agent_3's pings to agent_4 while C{publishers} flood agent_2 as agent_1.
    """
    broker = machine_broker_pid()
    floods = []
    for _ in range(publishers):
        argv, env = tool("flood", session.attacker, "ioppy.to.agent_2", "echo", "100000",
                         str(FLOOD_SECONDS))
        floods.append(subprocess.Popen(argv, env=dict(os.environ, **env), text=True,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    cpu, start = cpu_seconds(broker), time.monotonic()
    if floods:
        time.sleep(2)
    rtts, lost = ping_rtts(session.ns["agent_3"], "10.2.0.4", count=PINGS)
    memory = broker_memory_mb()
    sent, let_in = 0, 0
    for flood in floods:
        out, _ = flood.communicate(timeout=FLOOD_SECONDS + 90)
        if flood.returncode == 0:
            let_in += 1
            sent += int(out.split()[2])
    elapsed = time.monotonic() - start
    busy = (cpu_seconds(broker) - cpu) / elapsed
    rtts.sort()
    return {"ping median ms": statistics.median(rtts) if rtts else None,
            "ping p95 ms": rtts[int(0.95 * (len(rtts) - 1))] if rtts else None,
            "ping lost": lost, "flood msgs/s": sent / FLOOD_SECONDS,
            "broker cores": busy, "broker MB": memory, "publishers let in": let_in}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--out", default=os.path.join(ROOT, "bench-results",
                                                      time.strftime("%Y%m%d-%H%M%S")))
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("the bench needs root (TUN interfaces and network namespaces)")
    work = tempfile.mkdtemp(prefix="ioppy-flood-")
    rows = []
    try:
        for limits, runs in (((), (0, 1, 2, 4)), (("--max-connections", "2"), (2,))):
            with contextlib.ExitStack() as stack:
                session = Session(stack.callback, work, limits)
                for publishers in runs:
                    print(f"flood: {publishers} publishers {' '.join(limits)} ...", flush=True)
                    rows.append((" ".join(limits) or "default limits", publishers,
                                 measure(session, publishers)))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    lines = []

    def say(text=""):
        print(text, flush=True)
        lines.append(text)

    say()
    say(f"A flood from agent_1 to agent_2 ({FLOOD_SECONDS} s, JSON echo requests), "
        f"agent_3 pinging agent_4 ({PINGS} pings, 20 ms apart):")
    say("| session | flood publishers | let in | flood msgs/s | ping median ms | ping p95 ms "
        "| ping lost | broker cores | broker MB |")
    say("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for limits, publishers, m in rows:
        say(f"| {limits} | {publishers} | {m['publishers let in']} | {m['flood msgs/s']:,.0f} "
            f"| {m['ping median ms']:.2f} | {m['ping p95 ms']:.2f} | {m['ping lost']} "
            f"| {m['broker cores']:.2f} | {m['broker MB']:.0f} |")
    write_results(args.out, "flood", lines, {"rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
