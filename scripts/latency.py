"""
make bench (broker wake-up): how much of the tunnel's round trip is the
broker waking up?

The same measurements on three brokers: the machine's, a private node the
bench starts with RabbitMQ's default Erlang scheduler flags (schedulers
sleep as soon as they run out of work), and a private node with busy-wait
flags (schedulers spin before they sleep, and wake each other eagerly).
The private nodes run on ports of their own and are stopped at the end;
the machine's broker is never changed.

For each: one broker pass (a small message from one connection to another,
200 of them 20 ms apart), the tunnel's ping round trip (200 pings 20 ms
apart, one router and two agents on the broker), 'ping -f' for 5 s, and
the broker's CPU use, idle and during the pings.
"""

import argparse
import contextlib
import os
import re
import shutil
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.lab import Tunnel, VHost, cpu_seconds, write_results  # noqa: E402
from tests.lab.broker import (BUSY_WAIT_SCHEDULERS, DEFAULT_SCHEDULERS,  # noqa: E402
                              PrivateNode, machine_broker_pid)
from tests.lab.tools import broker_latency  # noqa: E402

BROKERS = (("machine's broker", None),
           ("private node, default flags", DEFAULT_SCHEDULERS),
           ("private node, busy-wait", BUSY_WAIT_SCHEDULERS))


def cores(pid, seconds, during=None):
    """
    @return: The cores process C{pid} used, on average, over C{seconds}
        of sleep or while C{during()} runs; and what C{during} returned.
    """
    start, used = time.monotonic(), cpu_seconds(pid)
    result = during() if during is not None else time.sleep(seconds)
    return (cpu_seconds(pid) - used) / (time.monotonic() - start), result


def p99(values):
    return values[max(int(len(values) * 0.99) - 1, 0)]


def one_broker(label, erl_args, work, count):
    with contextlib.ExitStack() as stack:
        cleanup = stack.callback
        if erl_args is None:
            vhost, pid = VHost(cleanup), machine_broker_pid()
        else:
            node = PrivateNode(cleanup, erl_args)
            vhost, pid = VHost(cleanup, node), node.beam_pid
        print(f"latency: {label}: broker pass ...", flush=True)
        passes = broker_latency(vhost.url, count, 0.02)
        print(f"latency: {label}: tunnel ...", flush=True)
        lab = Tunnel(cleanup, work, vhost=vhost)
        idle, _ = cores(pid, 5)

        def pings():
            out = lab.ns1.run("ping", "-c", str(count), "-i", "0.02", "-W", "2", "10.2.0.2",
                              timeout=count * 0.02 + 60, check=False).stdout
            return sorted(float(x) for x in re.findall(r"time=([\d.]+) ms", out))

        busy, rtts = cores(pid, 0, pings)
        out = lab.ns1.run("ping", "-f", "-w", "5", "10.2.0.2", timeout=40, check=False).stdout
        match = re.search(r"(\d+) received", out)
        lab.stop()
        return {"broker": label, "erl_args": list(erl_args or ()),
                "pass median": statistics.median(passes), "pass p99": p99(passes),
                "rtt median": statistics.median(rtts) if rtts else 0.0,
                "rtt p99": p99(rtts) if rtts else 0.0, "lost": count - len(rtts),
                "flood": int(match.group(1)) / 5 if match else 0.0,
                "idle cores": idle, "ping cores": busy}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--count", type=int, default=200, help="pings and passes per broker")
    parser.add_argument("--out", default=None, help="directory for latency.md and latency.json")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("the bench needs root (TUN interfaces and network namespaces)")
    work = tempfile.mkdtemp(prefix="ioppy-latency-")
    runs = [one_broker(label, erl_args, work, args.count) for label, erl_args in BROKERS]
    lines = [
        "",
        f"Broker wake-up: {args.count} messages or pings 20 ms apart; times in ms.",
        "| broker | one pass median | one pass p99 | tunnel RTT median | tunnel RTT p99 "
        "| lost | ping -f replies/s | broker cores idle | broker cores during pings |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in runs:
        lines.append(
            f"| {r['broker']} | {r['pass median']:.3f} | {r['pass p99']:.3f} "
            f"| {r['rtt median']:.3f} | {r['rtt p99']:.3f} | {r['lost']} | {r['flood']:,.0f} "
            f"| {r['idle cores']:.3f} | {r['ping cores']:.3f} |")
    lines.append(f"busy-wait flags: {' '.join(BUSY_WAIT_SCHEDULERS)}")
    print("\n".join(lines), flush=True)
    if args.out:
        write_results(args.out, "latency", lines, runs)
    shutil.rmtree(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
