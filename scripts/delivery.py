"""
make bench (delivery): the ways one publish can reach both ioppytest's
sniffer (a consumer of fromAgent.#) and the packet's owner, measured at the
broker with 2 and 30 agents' queues bound: the one-hop keys ioppy used
before (which the sniffer cannot read), the headers exchange chosen, the
CC header, and receivers bound to their peers' keys.

Each run floods agent_1's 1400-byte JSON packets for agent_2 for a few
seconds (tests.lab.delivery); the methods alternate, three rounds, and the
table gives the median rate agent_2 got them at, the broker's CPU time per
1000 packets, and where the packets went (the owner, other agents, the
sniffer, the router).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.lab import VHost, tool, write_results  # noqa: E402
from tests.lab.broker import machine_broker_pid  # noqa: E402
from tests.lab.delivery import METHODS  # noqa: E402

SIZES = (2, 30)


def one_run(method, agents, seconds, broker):
    cleanups = []
    try:
        vhost = VHost(lambda f, *a, **k: cleanups.append((f, a, k)))
        argv, env = tool("delivery", vhost.url, method, str(agents), str(seconds), str(broker))
        out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 120,
                             env=dict(os.environ, **env))
        if out.returncode != 0:
            raise SystemExit(f"{method} with {agents} agents failed:\n{out.stderr}")
        return json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        for f, a, k in reversed(cleanups):
            f(*a, **k)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each flood")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=None, help="directory for delivery.md and .json")
    args = parser.parse_args()
    broker = machine_broker_pid()
    runs = []
    for agents in SIZES:
        for _ in range(args.rounds):
            for method in METHODS:
                run = one_run(method, agents, args.seconds, broker)
                print(json.dumps(run), flush=True)
                runs.append(run)
    lines = ["| method | agents | packets/s to the owner | vs keys | broker CPU s / 1000 | "
             "vs keys | other agents got | sniffer got | router got |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    table = {}
    for agents in SIZES:
        for method in METHODS:
            mine = [r for r in runs if r["method"] == method and r["agents"] == agents]
            table[(method, agents)] = {
                "rate": statistics.median(r["rate"] for r in mine),
                "cpu": statistics.median(r["broker cpu per 1000"] for r in mine),
                "others": sum(r["other agents"] for r in mine) / sum(r["sent"] for r in mine),
                "sniffer": sum(r["sniffer"] for r in mine) / sum(r["sent"] for r in mine),
                "router": sum(r["router"] for r in mine) / sum(r["sent"] for r in mine)}
        base = table[("keys", agents)]
        for method in METHODS:
            row = table[(method, agents)]
            lines.append(
                f"| {method} | {agents} | {row['rate']:,.0f} | {row['rate'] / base['rate']:.2f} "
                f"| {row['cpu']:.3f} | {row['cpu'] / base['cpu']:.2f} | "
                f"{row['others']:.2f} per packet | {row['sniffer']:.2f} per packet | "
                f"{row['router']:.2f} per packet |")
    print("\n".join(lines))
    if args.out:
        write_results(args.out, "delivery", lines, runs)


if __name__ == "__main__":
    main()
