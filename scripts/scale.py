"""
make bench (scale): does one pair's traffic cost more when more agents are
connected?

For 2, 10 and 30 agents (a router and that many agents on a vhost of their
own, each TUN in a namespace of its own), agent_1 floods agent_2 with
'ping -f' for 5 s while the others stay idle.  The run prints the pair's
replies per second and its ratio to the 2-agent run, and the CPU time per
1000 echo replies of agent_1, agent_2, the idle agents together, the router
and the broker.

--twistd runs another installation's programs (an older release, to
compare).
"""

import argparse
import contextlib
import os
import re
import shutil
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.lab import Tunnel, cpu_seconds, write_results  # noqa: E402
from tests.lab.broker import machine_broker_pid  # noqa: E402
from tests.lab.programs import TWISTD  # noqa: E402

SIZES = (2, 10, 30)


def one_size(agents, seconds, twistd, work):
    """
    @return: A dict of figures for one run with C{agents} agents.
    """
    with contextlib.ExitStack() as stack:
        lab = Tunnel(stack.callback, work, agents=agents, twistd=twistd,
                     status_interval=5.0, direct_within=30.0)
        pids = {name: program.process.pid for name, program in lab.programs.items()}
        pids["broker"] = machine_broker_pid()
        time.sleep(1)
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        out = lab.ns1.run("ping", "-f", "-w", str(seconds), "10.2.0.2",
                          timeout=seconds + 30, check=False).stdout
        spent = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}
        match = re.search(r"(\d+) packets transmitted, (\d+) received", out)
        sent, received = (int(match.group(1)), int(match.group(2))) if match else (0, 0)
        idle = [name for name in lab.programs if name not in ("router", "agent_1", "agent_2")]
        lab.stop()
        per_k = 1000 / max(received, 1)
        return {
            "agents": agents, "direct": lab.direct, "sent": sent, "received": received,
            "rate": received / seconds,
            "cpu agent_1": spent["agent_1"] * per_k, "cpu agent_2": spent["agent_2"] * per_k,
            "cpu idle agents": sum(spent[name] for name in idle) * per_k,
            "idle agents cores": sum(spent[name] for name in idle) / seconds,
            "cpu router": spent["router"] * per_k, "cpu broker": spent["broker"] * per_k,
        }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--seconds", type=int, default=5, help="length of each flood")
    parser.add_argument("--twistd", default=TWISTD,
                        help="the twistd whose programs to measure")
    parser.add_argument("--out", default=None, help="directory for scale.md and scale.json")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("the bench needs root (TUN interfaces and network namespaces)")
    work = tempfile.mkdtemp(prefix="ioppy-scale-")
    runs = []
    for agents in SIZES:
        print(f"scale: {agents} agents ...", flush=True)
        runs.append(one_size(agents, args.seconds, args.twistd, work))
    lines = [
        "",
        f"Scale: agent_1 -> agent_2 'ping -f' for {args.seconds} s, the other agents idle "
        f"(programs: {args.twistd}).",
        "CPU is seconds per 1000 echo replies; 'idle agents' is all of them together.",
        "| agents | path | replies/s | vs 2 agents | agent_1 | agent_2 | idle agents "
        "| idle agents, cores | router | broker |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    base = runs[0]["rate"] or 1.0
    for r in runs:
        lines.append(
            f"| {r['agents']} | {'one hop' if r['direct'] else 'two hops'} | {r['rate']:,.0f} "
            f"| {r['rate'] / base:.2f} | {r['cpu agent_1']:.3f} | {r['cpu agent_2']:.3f} "
            f"| {r['cpu idle agents']:.3f} | {r['idle agents cores']:.2f} "
            f"| {r['cpu router']:.3f} | {r['cpu broker']:.3f} |")
    print("\n".join(lines), flush=True)
    if args.out:
        write_results(args.out, "scale", lines, runs)
    shutil.rmtree(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
