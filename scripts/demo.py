"""
make demo: a router and two agents on the local RabbitMQ, each agent's TUN in
a network namespace of its own; once the router has steered them to deliver
to each other directly, pings cross the tunnel over IPv4 and IPv6, then everything is stopped with SIGTERM and removed.

Run as root after 'make setup' (make demo does both).
"""

import contextlib
import os
import re
import shutil
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.lab import Namespace, Program, VHost  # noqa: E402


def say(text=""):
    print(text, flush=True)


def show_command(program):
    say("  $ " + program.shown)


def ping(namespace, label, address, **kwargs):
    sent, received, output = namespace.ping(address, **kwargs)
    rtt = re.search(r"= ([\d.]+)/([\d.]+)/([\d.]+)", output)
    figures = f"rtt min/avg/max {rtt.group(1)}/{rtt.group(2)}/{rtt.group(3)} ms" if rtt else ""
    ok = sent > 0 and received == sent
    say(f"  {'ok  ' if ok else 'FAIL'} {label:<34} {received}/{sent} replies  {figures}")
    return ok


def main():
    if os.geteuid() != 0:
        sys.exit("make demo needs root (TUN interfaces and network namespaces)")
    results = []
    logs = tempfile.mkdtemp(prefix="ioppy-demo-")
    with contextlib.ExitStack() as stack:
        cleanup = stack.callback
        vhost = VHost(cleanup)
        ns1, ns2 = Namespace(cleanup), Namespace(cleanup)
        say(f"Broker vhost {vhost.name}; namespaces {ns1.name} and {ns2.name}.")
        say("Starting the router and two agents, as you would by hand:")
        router = Program(cleanup, "ioppy-router", "--url", vhost.url, log_dir=logs)
        show_command(router)
        router.wait_for("router connected to")
        agents = []
        for name, ns in (("agent_1", ns1), ("agent_2", ns2)):
            agent = Program(cleanup, "ioppy-agent", "--url", vhost.url, "--name", name,
                            "--netns", ns.name, log_dir=logs)
            show_command(agent)
            agent.wait_for(f"agent {name} connected to")
            agents.append(agent)
        for agent in agents:
            agent.wait_for(r"routes from the router: 1 destinations \(1 direct\)")
        say("The router has told each agent where the other is: packets go agent to")
        say("agent through the broker in one hop; the router only steers.")
        say()
        say(f"{ns1.name}: " + ns1.run("ip", "-br", "addr", "show", "tun0").stdout.strip())
        say(f"{ns2.name}: " + ns2.run("ip", "-br", "addr", "show", "tun0").stdout.strip())
        say()
        say("Pinging across the tunnel:")
        results.append(ping(ns1, "agent_1 -> 10.2.0.2 (IPv4)", "10.2.0.2"))
        results.append(ping(ns2, "agent_2 -> 10.2.0.1 (IPv4)", "10.2.0.1"))
        results.append(ping(ns1, "agent_1 -> bbbb::2 (IPv6)", "bbbb::2"))
        results.append(ping(ns2, "agent_2 -> bbbb::1 (IPv6)", "bbbb::1"))
        results.append(ping(ns1, "agent_1 -> 10.2.0.2, 1400-byte IP", "10.2.0.2",
                            size=1372, count=3))
        say()
        say("Stopping with SIGTERM (agents first, then the router):")
        for program, label in ((agents[0], "agent_1"), (agents[1], "agent_2"),
                               (router, "router")):
            code, seconds = program.terminate(timeout=5.0)
            stopped = code == 0
            results.append(stopped)
            summary = re.findall(r"final: (?:agent \S+|router): (.*)", program.text())
            say(f"  {'ok  ' if stopped else 'FAIL'} {label:<8} exit {code} after "
                f"{seconds:.2f} s  {summary[-1] if summary else ''}")
        left = [ns for ns in (ns1, ns2) if "tun0" in ns.links()]
        queues = vhost.queues()
        results.append(not left and not queues)
        say(f"  {'ok  ' if not left and not queues else 'FAIL'} left behind: "
            f"{len(left)} interfaces, {len(queues)} queues")
    say("Namespaces, vhost and processes removed.")
    say()
    if all(results):
        shutil.rmtree(logs)
        say("Demo succeeded: IPv4 and IPv6 pings crossed the AMQP tunnel both ways.")
        return 0
    say(f"Demo FAILED: see the lines marked FAIL above, and the logs in {logs}.")
    return 1


if __name__ == "__main__":
    sys.exit(main())
