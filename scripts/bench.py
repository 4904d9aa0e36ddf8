"""
make bench (throughput and latency): the tunnel against the kernel's own
path and against the broker's own message rate.

A router and two agents run with their TUNs in two namespaces, as in 'make
demo', and the bench waits until the router has steered the agents to
deliver to each other directly (one broker hop); two more namespaces are
joined by a direct veth pair, the kernel limit.  Over both paths the bench
measures ping round trips (IPv4 and IPv6, 20 ms apart), a 5 s ping flood
with one and with 16 echo requests in flight, the highest UDP rate with
under 1 % loss (64 and 1400-byte datagrams, iperf3), and TCP throughput
(iperf3, 10 s), and prints each tunnel figure next to the kernel's and as a
ratio of it; then the broker's own rate for bodies of the same shape, the
one-hop limit, next to the tunnel's; and the CPU time per 1000 packets of
the agents, the router and the broker, with the programs' peak RSS.

--twistd runs another installation's programs (an older release, to
compare); programs that do not steer are measured through the router.
"""

import argparse
import contextlib
import importlib.util
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.lab import (Namespace, Program, Tunnel, broker_rate, cpu_seconds,  # noqa: E402
                       peak_rss_mb, veth_pair, write_results)
from tests.lab.broker import machine_broker_pid  # noqa: E402
from tests.lab.programs import TWISTD  # noqa: E402


# Echo requests in flight for the second flood: ping's own -l (preload).
PRELOAD = 16


def ping_rtts(ns, address, count=200, interval=0.02):
    """
    @return: The round-trip times in ms of C{count} pings, and how many were
        lost.
    """
    args = ["ping", "-c", str(count), "-i", str(interval), "-W", "2", address]
    if ":" in address:
        args.insert(1, "-6")
    out = ns.run(*args, timeout=count * interval + 60, check=False).stdout
    rtts = [float(x) for x in re.findall(r"time=([\d.]+) ms", out)]
    return rtts, count - len(rtts)


def flood(ns, address, seconds=5, preload=1):
    """
    @param preload: How many echo requests C{ping -f} keeps in flight
        (C{-l}); with 1 it sends the next one when a reply comes back (or
        after 10 ms), so it measures the round trip rather than the rate.
    @return: Echo replies per second of C{ping -f} for C{seconds}, and the
        loss in percent.
    """
    args = ["ping", "-f", "-w", str(seconds), address]
    if preload > 1:
        args[2:2] = ["-l", str(preload)]
    out = ns.run(*args, timeout=seconds + 30, check=False).stdout
    match = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    sent, received = int(match.group(1)), int(match.group(2))
    return received / seconds, 100.0 * (sent - received) / max(sent, 1)


class Iperf:
    """
    An iperf3 server in one namespace, clients run from another.
    """

    def __init__(self, cleanup, server_ns, client_ns, address, log_dir):
        self.client_ns = client_ns
        self.address = address
        self.server = Program(cleanup, None, netns=server_ns.name, log_dir=log_dir,
                              argv=["iperf3", "-s", "-B", address])
        time.sleep(0.5)

    def run(self, *args, seconds):
        done = self.client_ns.run("iperf3", "-c", self.address, "-J", "-t", str(seconds),
                                  *args, timeout=seconds + 60, check=False)
        if not done.stdout.strip().startswith("{"):
            raise SystemExit(f"iperf3 gave no result: {done.stderr.strip() or done.stdout}")
        return json.loads(done.stdout)

    def udp(self, size, rate, seconds=3):
        """
        @return: Packets per second received and loss percent at C{rate}
            datagrams per second of C{size} bytes.
        """
        result = self.run("-u", "-l", str(size), "-b", str(int(rate * size * 8)),
                          seconds=seconds)
        total = result.get("end", {}).get("sum", {})
        if not total:
            return 0.0, 100.0
        received = total["packets"] - total["lost_packets"]
        return received / total["seconds"], total["lost_percent"]

    def best_udp(self, size, low=100.0, high=400_000.0, steps=9):
        """
        @return: The highest offered rate (datagrams/s) with under 1 % loss,
            found by bisection between C{low} and C{high}.
        """
        best = 0.0
        for _ in range(steps):
            rate = (low * high) ** 0.5
            got, loss = self.udp(size, rate)
            if loss < 1.0:
                best, low = got, rate
            else:
                high = rate
        return best

    def tcp(self, seconds=10):
        """
        @return: TCP throughput in Mbit/s.
        """
        result = self.run(seconds=seconds)
        return result.get("end", {}).get("sum_received", {}).get("bits_per_second", 0) / 1e6


def tunnelled(lab):
    """
    @return: How many packets the tunnel carried so far: those agent_1 and
        agent_2 sent.
    """
    return sum(lab.status(a)["packets"]["out"] for a in ("agent_1", "agent_2"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter runs")
    parser.add_argument("--wire", choices=("json", "raw"), default="json",
                        help="the agents' wire format")
    parser.add_argument("--twistd", default=TWISTD,
                        help="the twistd whose programs to measure (default: this "
                             "checkout's virtualenv)")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench-results",
                                                      time.strftime("%Y%m%d-%H%M%S")),
                        help="directory for bench.md, bench.json and bench.png "
                             "(default: bench-results/<time>, which git ignores)")
    args = parser.parse_args()
    missing = [tool for tool in ("iperf3",) if shutil.which(tool) is None]
    if importlib.util.find_spec("matplotlib") is None:
        missing.append("matplotlib")
    if missing:
        raise SystemExit(f"the bench needs {', '.join(missing)}: run it with make bench, "
                         "which installs them")
    if os.geteuid() != 0:
        sys.exit("the bench needs root (TUN interfaces and network namespaces)")
    work = tempfile.mkdtemp(prefix="ioppy-bench-")
    rows = []
    with contextlib.ExitStack() as stack:
        cleanup = stack.callback
        tunnel_lab = Tunnel(cleanup, work, agent_args=["--wire", args.wire],
                            status_interval=0.5, twistd=args.twistd)
        vhost, ns1, ns2 = tunnel_lab.vhost, tunnel_lab.ns1, tunnel_lab.ns2
        programs = tunnel_lab.programs
        pids = {n: p.process.pid for n, p in programs.items()}
        pids["broker"] = machine_broker_pid()
        ns3, ns4 = Namespace(cleanup), Namespace(cleanup)
        veth_pair(cleanup, ns3, ns4)
        paths = {"tunnel": (ns1, ns2, "10.2.0.2", "bbbb::2"),
                 "kernel": (ns3, ns4, "10.3.0.2", "fd03::2")}
        results = {p: {} for p in paths}
        count = 50 if args.quick else 200
        for path, (client, server, v4, v6) in paths.items():
            print(f"{path}: ping ...", flush=True)
            for family, address in (("IPv4", v4), ("IPv6", v6)):
                rtts, lost = ping_rtts(client, address, count=count)
                rtts.sort()
                results[path][f"rtts {family}"] = rtts
                results[path][f"ping {family}"] = (
                    rtts[0], statistics.median(rtts), rtts[int(len(rtts) * 0.99) - 1], lost)
            results[path]["flood"] = flood(client, v4, seconds=2 if args.quick else 5)
            results[path]["flood preload"] = flood(client, v4, seconds=2 if args.quick else 5,
                                                   preload=PRELOAD)
            iperf = Iperf(cleanup, server, client, v4, work)
            before = {n: cpu_seconds(pid) for n, pid in pids.items()}
            sent_before = tunnelled(tunnel_lab) if path == "tunnel" else 0
            for size in (64, 1400):
                print(f"{path}: UDP {size} B ...", flush=True)
                results[path][f"udp {size}"] = iperf.best_udp(
                    size, steps=4 if args.quick else 9)
            if path == "tunnel":
                time.sleep(1)
                packets = max(tunnelled(tunnel_lab) - sent_before, 1)
                results[path]["tunnelled"] = packets
                for n, pid in pids.items():
                    spent = cpu_seconds(pid) - before[n]
                    results[path][f"cpu {n}"] = 1000 * spent / packets
            print(f"{path}: TCP ...", flush=True)
            results[path]["tcp"] = iperf.tcp(seconds=3 if args.quick else 10)
        rss = {n: peak_rss_mb(p.process.pid) for n, p in programs.items()}
        tunnel_lab.stop()
        print("bus: broker message rate ...", flush=True)
        bus = {size: broker_rate(vhost.url, size, args.wire, seconds=2 if args.quick else 5)
               for size in (64, 1400)}
    tunnel, kernel = results["tunnel"], results["kernel"]
    lines = []

    def say(text=""):
        print(text, flush=True)
        lines.append(text)

    def row(name, t, k, unit):
        ratio = f"{t / k:.3f}" if k else "-"
        rows.append(f"| {name} | {t:,.2f} {unit} | {k:,.2f} {unit} | {ratio} |")

    hops = ("one broker hop (direct delivery)" if tunnel_lab.direct
            else "two broker hops (through the router)")
    say()
    say(f"wire format: {args.wire}; path: {hops}; programs: {args.twistd}")
    say("| measure | tunnel | kernel (veth) | tunnel / kernel |")
    say("| --- | --- | --- | --- |")
    for family in ("IPv4", "IPv6"):
        t, k = tunnel[f"ping {family}"], kernel[f"ping {family}"]
        for i, what in enumerate(("min", "median", "p99")):
            row(f"ping {family} RTT {what}", t[i], k[i], "ms")
        rows.append(f"| ping {family} lost | {t[3]} of {count} | {k[3]} of {count} | |")
    row("ping -f replies", tunnel["flood"][0], kernel["flood"][0], "/s")
    rows.append(f"| ping -f loss | {tunnel['flood'][1]:.1f} % | {kernel['flood'][1]:.1f} % | |")
    row(f"ping -f -l {PRELOAD} replies", tunnel["flood preload"][0],
        kernel["flood preload"][0], "/s")
    rows.append(f"| ping -f -l {PRELOAD} loss | {tunnel['flood preload'][1]:.1f} % | "
                f"{kernel['flood preload'][1]:.1f} % | |")
    for size in (64, 1400):
        t, k = tunnel[f"udp {size}"], kernel[f"udp {size}"]
        row(f"UDP {size} B, < 1 % loss", t, k, "packets/s")
        row(f"UDP {size} B, < 1 % loss", t * size * 8 / 1e6, k * size * 8 / 1e6, "Mbit/s")
    row("TCP", tunnel["tcp"], kernel["tcp"], "Mbit/s")
    for line in rows:
        say(line)
    say()
    say("The bus limit: the broker's own rate, one publisher to one consumer, for")
    say(f"bodies of the same shape ({args.wire}); each tunnel packet crosses the broker "
        f"{'once' if tunnel_lab.direct else 'twice'}.")
    say("| measure | tunnel | bus | tunnel / bus |")
    say("| --- | --- | --- | --- |")
    for size in (64, 1400):
        t = tunnel[f"udp {size}"]
        say(f"| {size} B packets | {t:,.0f} packets/s | {bus[size]:,.0f} messages/s | "
            f"{t / bus[size]:.3f} |")
    say()
    say(f"CPU seconds per 1000 packets tunnelled during the UDP runs "
        f"({tunnel['tunnelled']:,} packets), and peak RSS:")
    for n in ("agent_1", "router", "agent_2", "broker"):
        memory = f", peak RSS {rss[n]:.1f} MB" if n in rss else ""
        say(f"  {n}: {tunnel['cpu ' + n]:.3f}{memory}")
    write_results(args.out, "bench", lines,
                  {"wire": args.wire, "direct": tunnel_lab.direct, "twistd": args.twistd,
                   "results": results, "bus": bus, "rss": rss})
    plot(os.path.join(args.out, "bench.png"), args.wire, tunnel, kernel, bus)
    print(f"tables in {os.path.join(args.out, 'bench.md')}")
    shutil.rmtree(work)
    return 0


def plot(path, wire_format, tunnel, kernel, bus):
    """
    Write a PNG: UDP throughput by packet size on a log scale (tunnel,
    kernel, bus), and the distribution of the tunnel's ping round trips.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = (64, 1400)
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    width = 0.27
    for i, (label, values) in enumerate((
            ("tunnel", [tunnel[f"udp {s}"] for s in sizes]),
            ("bus limit (broker)", [bus[s] for s in sizes]),
            ("kernel (veth)", [kernel[f"udp {s}"] for s in sizes]))):
        left.bar([x + (i - 1) * width for x in range(len(sizes))], values, width, label=label)
    left.set_yscale("log")
    left.set_ylim(1000, 1e7)
    left.set_xticks(range(len(sizes)), [f"{s} B" for s in sizes])
    left.set_xlabel("packet size")
    left.set_ylabel("packets (messages) per second, < 1 % loss")
    left.set_title(f"UDP throughput ({wire_format} wire format)")
    left.legend(loc="upper left", ncol=3, fontsize="small")
    for family in ("IPv4", "IPv6"):
        rtts = tunnel[f"rtts {family}"]
        right.plot(rtts, [(i + 1) / len(rtts) for i in range(len(rtts))], label=family)
    right.set_xlabel("round-trip time through the tunnel (ms)")
    right.set_ylabel("fraction of pings")
    right.set_title("ping RTT distribution (200 pings, 20 ms apart)")
    right.legend()
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=90)
    print(f"plot written to {path}")


if __name__ == "__main__":
    sys.exit(main())
