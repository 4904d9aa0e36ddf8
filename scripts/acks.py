"""
make bench (acknowledgements): what consuming with acknowledgements and a
prefetch costs, and what it bounds.

For each of --prefetch 0 (no acknowledgements) and the default (1024,
acknowledged a quarter at a time), alternated ROUNDS times in one run, a
router and two agents as in 'make demo': the sparse ping's median round
trip (50 pings, 20 ms apart), the best UDP 64 B rate under 1 % loss, TCP
throughput (iperf3, 10 s), and
the CPU seconds per 1000 packets of each program and of the broker at a
fixed offered rate; then agent_2 is stopped (SIGSTOP) while agent_1 floods
it for 3 s, and the broker's resident memory before, during and after is
printed: the stalled receiver's bound.
"""

import argparse
import contextlib
import os
import signal
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from scripts.bench import Iperf, ping_rtts, tunnelled  # noqa: E402
from tests.lab import Tunnel, cpu_seconds, write_results  # noqa: E402
from tests.lab.broker import machine_broker_pid  # noqa: E402

MODES = (("no acknowledgements", "0"), ("prefetch 1024, acked by 256", "1024"))
RATE = 5000  # datagrams/s offered for the CPU figures
# 1400-byte datagrams to agent_2 (discard port) as fast as the TUN takes them, 3 s.
BLAST = ("import socket, time\n"
         "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
         "end = time.monotonic() + 3\n"
         "while time.monotonic() < end:\n"
         "    for _ in range(100):\n"
         "        try:\n"
         "            s.sendto(bytes(1400), ('10.2.0.2', 9))\n"
         "        except OSError:\n"
         "            pass\n")


def rss_mb(pid):
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def one(cleanup, work, prefetch, quick):
    args = ["--prefetch", prefetch]
    lab = Tunnel(cleanup, work, agent_args=args, router_args=args, status_interval=0.5)
    pids = {n: p.process.pid for n, p in lab.programs.items()}
    pids["broker"] = machine_broker_pid()
    out = {}
    rtts, _ = ping_rtts(lab.ns1, "10.2.0.2", count=50)
    out["ping median ms"] = statistics.median(rtts)
    iperf = Iperf(cleanup, lab.ns2, lab.ns1, "10.2.0.2", work)
    out["udp 64 best"] = iperf.best_udp(64, low=500.0, high=100_000.0, steps=3 if quick else 5)
    out["tcp Mbit/s"] = iperf.tcp(seconds=5 if quick else 10)
    time.sleep(1)
    before = {n: cpu_seconds(pid) for n, pid in pids.items()}
    sent = tunnelled(lab)
    iperf.udp(64, RATE, seconds=3)
    time.sleep(1)
    packets = max(tunnelled(lab) - sent, 1)
    for n, pid in pids.items():
        out[f"cpu {n}"] = 1000 * (cpu_seconds(pid) - before[n]) / packets
    # The stalled receiver: agent_2 stopped while agent_1 floods it.
    broker = pids["broker"]
    out["broker MB before"] = rss_mb(broker)
    agent2 = lab.programs["agent_2"].process
    os.kill(agent2.pid, signal.SIGSTOP)
    try:
        lab.ns1.run(sys.executable, "-c", BLAST, timeout=60, check=False)
        out["broker MB stalled"] = rss_mb(broker)
    finally:
        os.kill(agent2.pid, signal.SIGCONT)
    time.sleep(3)
    out["broker MB after"] = rss_mb(broker)
    lab.stop()
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--quick", action="store_true", help="one round, shorter runs")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", default=os.path.join(ROOT, "bench-results",
                                                      time.strftime("%Y%m%d-%H%M%S")))
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("the bench needs root (TUN interfaces and network namespaces)")
    work = tempfile.mkdtemp(prefix="ioppy-acks-")
    results = {name: [] for name, _ in MODES}
    for _ in range(1 if args.quick else max(1, min(args.rounds, 5))):
        for name, prefetch in MODES:
            print(f"acks: {name} ...", flush=True)
            with contextlib.ExitStack() as stack:
                results[name].append(one(stack.callback, work, prefetch, args.quick))
    lines = []

    def say(text=""):
        print(text, flush=True)
        lines.append(text)

    measures = list(results[MODES[0][0]][0])
    say()
    say("Acknowledgements, medians of the rounds (each mode in the same run):")
    say("| measure | " + " | ".join(name for name, _ in MODES) + " | ratio |")
    say("| --- | --- | --- | --- |")
    for measure in measures:
        values = [statistics.median(r[measure] for r in results[name]) for name, _ in MODES]
        ratio = f"{values[1] / values[0]:.2f}" if values[0] else "-"
        say(f"| {measure} | " + " | ".join(f"{v:,.3f}" for v in values) + f" | {ratio} |")
    write_results(args.out, "acks", lines, {"results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
