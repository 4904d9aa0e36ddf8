"""
make bench (session recorder): what does ioppy-router --record cost the
data path, and how fast does ioppy-capture read a window back?

The same tunnel (a router and two agents, steered, on the machine's
broker) with the recorder off and on, in alternating rounds on fresh
vhosts, in each wire format: the ping round trip (200 pings 20 ms apart),
'ping -f' for 5 s, and the CPU the agents and the broker use per packet
during the flood.  With the recorder on, ioppy-capture then reads the
flood's window back, and the bench checks it holds every packet the flood
sent.  Medians over the rounds, and the ratio on/off.
"""

import argparse
import contextlib
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.lab import Tunnel, VHost, cpu_seconds, write_results  # noqa: E402
from tests.lab.broker import machine_broker_pid  # noqa: E402

CAPTURE = os.path.join(os.path.dirname(sys.executable), "ioppy-capture")
TSHARK = shutil.which("tshark")


def one_round(work, wire, record, count):
    """
    @return: The figures of one tunnel, recorder on or off.
    """
    with contextlib.ExitStack() as stack:
        cleanup = stack.callback
        vhost = VHost(cleanup)
        lab = Tunnel(cleanup, work, agent_args=["--wire", wire],
                     router_args=["--record"] if record else [], vhost=vhost)
        out = lab.ns1.run("ping", "-c", str(count), "-i", "0.02", "-W", "2", "10.2.0.2",
                          timeout=count * 0.02 + 60, check=False).stdout
        rtts = sorted(float(x) for x in re.findall(r"time=([\d.]+) ms", out))
        pids = {"agent_1": lab.programs["agent_1"].process.pid,
                "agent_2": lab.programs["agent_2"].process.pid,
                "broker": machine_broker_pid()}
        used = {name: cpu_seconds(pid) for name, pid in pids.items()}
        since = time.time()
        out = lab.ns1.run("ping", "-f", "-w", "5", "10.2.0.2", timeout=40, check=False).stdout
        until = time.time()
        cpu = {name: cpu_seconds(pid) - used[name] for name, pid in pids.items()}
        sent = int(re.search(r"(\d+) packets transmitted", out).group(1))
        received = int(re.search(r"(\d+) received", out).group(1))
        packets = sent + received  # each request and reply enters the bus once
        result = {"wire": wire, "record": record, "rtt median": statistics.median(rtts),
                  "lost": count - len(rtts), "flood": received / 5,
                  **{f"{name} us/packet": cpu[name] / packets * 1e6 for name in cpu}}
        if record:
            path = os.path.join(work, f"flood-{wire}.pcapng")
            start = time.monotonic()
            done = subprocess.run([CAPTURE, "--url", vhost.url, "--since", f"{since:.3f}",
                                   "--until", f"{until:.3f}", "-o", path],
                                  capture_output=True, text=True, timeout=300)
            seconds = time.monotonic() - start
            if done.returncode != 0:
                raise SystemExit(f"ioppy-capture failed: {done.stderr}")
            kept = len(subprocess.run([TSHARK, "-r", path, "-Y", "icmp.type == 0 or "
                                                              "icmp.type == 8", "-T", "fields",
                                       "-e", "frame.number"], capture_output=True, text=True,
                                      timeout=300).stdout.split())
            result.update({"captured": kept, "flood packets": packets,
                           "capture seconds": seconds, "capture packets/s": kept / seconds})
        lab.stop()
        return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--rounds", type=int, default=3, help="rounds on and off per format")
    parser.add_argument("--count", type=int, default=200, help="pings per round")
    parser.add_argument("--out", default=None, help="directory for recorder.md and .json")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("the bench needs root (TUN interfaces and network namespaces)")
    if TSHARK is None:
        sys.exit("tshark is missing: make test-tools installs it")
    work = tempfile.mkdtemp(prefix="ioppy-recorder-")
    runs = []
    for wire in ("json", "raw"):
        for n in range(args.rounds):
            for record in (False, True):
                print(f"recorder: {wire}, round {n + 1}, recorder {'on' if record else 'off'}"
                      " ...", flush=True)
                runs.append(one_round(work, wire, record, args.count))
    keys = ("rtt median", "flood", "agent_1 us/packet", "agent_2 us/packet",
            "broker us/packet")
    lines = ["", f"Session recorder: median of {args.rounds} rounds each, recorder off and "
                 "on (ratio on/off); RTT in ms, ping -f in replies/s, CPU in microseconds "
                 "per packet entering the bus.",
             "| wire | recorder | RTT median | ping -f | agent_1 CPU | agent_2 CPU | broker CPU |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for wire in ("json", "raw"):
        medians = {}
        for record in (False, True):
            chosen = [r for r in runs if r["wire"] == wire and r["record"] == record]
            medians[record] = {k: statistics.median(r[k] for r in chosen) for k in keys}
            m = medians[record]
            lines.append(f"| {wire} | {'on' if record else 'off'} | {m['rtt median']:.3f} "
                         f"| {m['flood']:,.0f} | {m['agent_1 us/packet']:.1f} "
                         f"| {m['agent_2 us/packet']:.1f} | {m['broker us/packet']:.1f} |")
        ratio = {k: medians[True][k] / medians[False][k] if medians[False][k] else 0.0
                 for k in keys}
        lines.append(f"| {wire} | on/off | {ratio['rtt median']:.2f} | {ratio['flood']:.2f} "
                     f"| {ratio['agent_1 us/packet']:.2f} | {ratio['agent_2 us/packet']:.2f} "
                     f"| {ratio['broker us/packet']:.2f} |")
    lines += ["", "ioppy-capture of each flood's window (recorder on):",
              "| wire | round | echo packets in the capture | sent into the bus | read in s "
              "| packets/s |", "| --- | --- | --- | --- | --- | --- |"]
    for i, r in enumerate(r for r in runs if r["record"]):
        lines.append(f"| {r['wire']} | {i % args.rounds + 1} | {r['captured']:,} "
                     f"| {r['flood packets']:,} | {r['capture seconds']:.2f} "
                     f"| {r['capture packets/s']:,.0f} |")
    print("\n".join(lines), flush=True)
    if args.out:
        write_results(args.out, "recorder", lines, runs)
    shutil.rmtree(work)
    missing = [r for r in runs if r["record"] and r["captured"] < r["flood packets"]]
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
