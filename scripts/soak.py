"""
make bench (soak): flood the tunnel with at least 1,000,000 packets and watch
the memory of the agents and the router.

A router and two agents run as in 'make demo'.  A sender inside agent_1's
namespace offers UDP datagrams to agent_2's address at a paced rate; the
agents and the router move what they can and count what they drop.  RSS is
sampled once a second.  Prints the counters and the RSS growth of each
program (goal: under 10 MB).
"""

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.lab import Program, Tunnel, write_results  # noqa: E402

SENDER = r"""
import socket, sys, time
count, rate, size = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setblocking(False)
payload = b"x" * size
sent = refused = 0
start = time.monotonic()
batch = 100
while sent + refused < count:
    for _ in range(min(batch, count - sent - refused)):
        try:
            s.sendto(payload, ("10.2.0.2", 9))
            sent += 1
        except (BlockingIOError, OSError):
            refused += 1
    delay = start + (sent + refused) / rate - time.monotonic()
    if delay > 0:
        time.sleep(delay)
print(sent, refused, time.monotonic() - start, flush=True)
"""


def rss_kib(pid):
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--packets", type=int, default=1_000_000)
    parser.add_argument("--rate", type=float, default=8000.0, help="datagrams per second")
    parser.add_argument("--size", type=int, default=64, help="UDP payload bytes")
    parser.add_argument("--out", default=None,
                        help="also write the results to OUT/soak.md (make bench gives its "
                             "results directory)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("the soak needs root (TUN interfaces and network namespaces)")
    work = tempfile.mkdtemp(prefix="ioppy-soak-")
    with contextlib.ExitStack() as stack:
        cleanup = stack.callback
        tunnel = Tunnel(cleanup, work)
        ns1, programs = tunnel.ns1, tunnel.programs
        time.sleep(2)
        baseline = {name: rss_kib(p.process.pid) for name, p in programs.items()}
        peak = dict(baseline)
        sender = Program(cleanup, None, netns=ns1.name, log_dir=work, argv=[
            sys.executable, "-c", SENDER, str(args.packets), str(args.rate), str(args.size)])
        print(f"offering {args.packets:,} UDP datagrams of {args.size} bytes at "
              f"{args.rate:,.0f}/s into agent_1's TUN ...", flush=True)
        deadline = time.monotonic() + args.packets / args.rate * 3 + 120
        samples = 0
        while sender.process.poll() is None and time.monotonic() < deadline:
            time.sleep(1)
            samples += 1
            for name, p in programs.items():
                peak[name] = max(peak[name], rss_kib(p.process.pid))
            if samples % 30 == 0:
                s1 = tunnel.status("agent_1")
                print(f"  {samples:4d} s: agent_1 read {s1.get('packets', {}).get('out', 0):,}"
                      f" + dropped {sum(s1.get('drops', {}).values()):,}; RSS "
                      + ", ".join(f"{n} {rss_kib(p.process.pid) / 1024:.1f} MB"
                                  for n, p in programs.items()), flush=True)
        if sender.process.poll() is None:
            sys.exit("the sender did not finish in time")
        time.sleep(3)
        final = {name: rss_kib(p.process.pid) for name, p in programs.items()}
        sent, refused, seconds = sender.text().split()
        tunnel.stop()
        counters = {name: tunnel.status(name) for name in programs}
    a1, r, a2 = counters["agent_1"], counters["router"], counters["agent_2"]
    lines = []

    def say(text=""):
        print(text, flush=True)
        lines.append(text)

    say()
    say(f"offered {int(sent) + int(refused):,} datagrams in {float(seconds):.0f} s "
        f"({int(refused):,} refused by the sender's socket)")
    say(f"agent_1 published {a1['packets']['out']:,}, dropped {a1['drops']}")
    say(f"router  forwarded {r['packets']['out']:,}, dropped {r['drops']}")
    say(f"agent_2 wrote     {a2['packets']['in']:,} to its TUN, dropped {a2['drops']}")
    say()
    say(f"{'program':<9} {'RSS start':>10} {'peak':>10} {'end':>10} {'growth':>10}")
    worst = 0
    for name in programs:
        growth = final[name] - baseline[name]
        worst = max(worst, growth)
        say(f"{name:<9} {baseline[name] / 1024:>7.1f} MB {peak[name] / 1024:>7.1f} MB "
            f"{final[name] / 1024:>7.1f} MB {growth / 1024:>+7.1f} MB")
    say()
    say(f"largest growth {worst / 1024:.1f} MB (goal: under 10 MB)")
    if args.out:
        write_results(args.out, "soak", lines)
    shutil.rmtree(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
