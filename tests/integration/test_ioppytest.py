"""
Compatibility with ioppytest, tried against its real components: the
original agent of the ioppytest-agent 0.2.20 wheel and the capture dumper of
ioppytest-utils 1.2.14, fetched by pip into the lab's own virtualenv
(L{tests.lab.ioppytest}), beside ioppy agents and ioppy-router run with
twistd.  The first run of these tests installs them (about a minute).
"""

import collections
import json
import os
import re
import subprocess
import time

from ..lab import ioppytest
from .harness import Namespace, Uplink
from .test_direct import DirectTestCase, status

# ICMP data for a 1400-byte packet: 1400 - 20 (IPv4) - 8, 1400 - 40 (IPv6) - 8.
V4_DATA, V6_DATA = 1372, 1352


def echoes(pcap):
    """
    @return: A C{Counter} of C{(kind, sequence number)} of the ICMP and
        ICMPv6 echoes in C{pcap}, read by tshark; C{kind} is C{"request"}
        or C{"reply"}.
    """
    out = subprocess.run(
        ["tshark", "-r", pcap, "-Y", "icmp.type == 0 or icmp.type == 8 or icmpv6.type == 128 "
         "or icmpv6.type == 129",
         "-T", "fields", "-e", "icmp.type", "-e", "icmp.seq", "-e", "icmpv6.type",
         "-e", "icmpv6.echo.sequence_number"],
        capture_output=True, text=True, timeout=60, check=True).stdout
    found = collections.Counter()
    for line in out.splitlines():
        v4_type, v4_seq, v6_type, v6_seq = (line.split("\t") + ["", "", "", ""])[:4]
        kind = {"8": "request", "0": "reply", "128": "request", "129": "reply"}[
            v4_type or v6_type]
        found[(("v4" if v4_type else "v6"), kind, int((v4_seq or v6_seq).split(",")[0]))] += 1
    return found


class RealComponentsTestCase(DirectTestCase):
    """
    The lab's virtualenv of ioppytest's components, and ways to run them.
    """

    def setUp(self):
        DirectTestCase.setUp(self)
        ioppytest.ensure_venv()

    def original(self, name, namespace):
        """
        The real original agent C{name}, in C{namespace}, reaching the broker
        through an uplink.
        """
        uplink = Uplink(self.addCleanup, namespace)
        url = self.vhost.url.replace("127.0.0.1", uplink.broker)
        return ioppytest.original_agent(self.addCleanup, namespace, url, name)

    def listen(self, pattern):
        return self.sniffer(pattern, command="listen")

    def heard(self, listener):
        return [json.loads(line) for line in listener.text().splitlines()
                if line.startswith('{"') and '"event": "message"' in line]

    def assertPingsBothWays(self, ours, theirs, our_number, their_number):
        """
        IPv4 and IPv6, 1400-byte packets, from each namespace to the other's
        agent: every echo answered.
        """
        for namespace, number in ((ours, their_number), (theirs, our_number)):
            for address, size in ((f"10.2.0.{number}", V4_DATA), (f"bbbb::{number}", V6_DATA)):
                sent, received, output = namespace.ping(address, count=5, size=size,
                                                        interval=0.1)
                self.assertEqual((sent, received), (5, 5), output)
                rtt = [line for line in output.splitlines() if line.startswith("rtt")]
                print(f"\n  {'ioppy' if namespace is ours else 'original'} -> {address}: "
                      f"{received}/{sent} replies, {rtt[0] if rtt else ''}", flush=True)


class CaptureDumperTests(RealComponentsTestCase):
    """
    ioppytest's capture dumper records a session ioppy-router steers.
    """

    def test_records_every_steered_packet_once(self):
        """
        Ten IPv4 and ten IPv6 echoes between two ioppy agents go straight
        (the router carries none); the capture dumper, bound to fromAgent.#
        as ioppytest's sniffer runs it, writes each request and each reply
        exactly once, and logs no validation error, on the bus or in its
        output, for anything ioppy sends while it runs (routes, their
        acknowledgements, the agents' reports every second).
        """
        errors = self.listen("log.error.#")
        ns1, ns2 = Namespace(self.addCleanup), Namespace(self.addCleanup)
        self.router()
        directory = os.path.abspath(self.mktemp())
        os.mkdir(directory)
        dumper = ioppytest.CaptureDumper(self.addCleanup, self.vhost.url, directory)
        deadline = time.monotonic() + 30
        while not any(q.endswith("::packet.sniffed.raw") for q in self.vhost.queues()):
            self.assertLess(time.monotonic(), deadline, dumper.program.text())
            time.sleep(0.2)
        agent1 = self.agent("agent_1", ns1, "--report-interval", "1")
        agent2 = self.agent("agent_2", ns2, "--report-interval", "1")
        self.wait_direct(agent1, 1)
        self.wait_direct(agent2, 1)
        before = status(self.status_file("router"))["packets"]["in"]
        self.assertPings(ns1, "10.2.0.2", count=10, interval=0.05, size=V4_DATA)
        self.assertPings(ns2, "bbbb::1", count=10, interval=0.05, size=V6_DATA)
        time.sleep(2)
        self.assertEqual(status(self.status_file("router"))["packets"]["in"], before)
        said = dumper.stop()
        found = echoes(dumper.path)
        print(f"\n  dumper's pcap, by tshark: {sorted(found.items())}", flush=True)
        want = {(version, kind, seq): 1 for version in ("v4", "v6")
                for kind in ("request", "reply") for seq in range(1, 11)}
        self.assertEqual(dict(found), want)
        self.assertNotIn("VALIDATION", said)
        self.assertNotIn("not recogized", said)
        self.assertEqual(self.heard(errors), [])


class OriginalAgentTests(RealComponentsTestCase):
    """
    The real original agent in a session with ioppy agents through
    ioppy-router.
    """

    def test_both_ways(self):
        """
        The original agent started after the router: ioppy-router learns its
        addresses from its announcement (ipv4_address), carries 1400-byte
        pings both ways over IPv4 and IPv6 between it and an ioppy agent,
        drops none of its kernel-made link-local traffic, and the two ioppy
        agents still go straight to each other.
        """
        ns1, ns2, ns3 = (Namespace(self.addCleanup) for _ in range(3))
        router = self.router()
        agent1 = self.agent("agent_1", ns1)
        self.agent("agent_2", ns2)
        original = self.original("agent_3", ns3)
        router.wait_for(r"agent agent_3 has .*10\.2\.0\.3/32")
        self.wait_direct(agent1, 1)
        self.assertPingsBothWays(ns1, ns3, 1, 3)
        self.assertPings(ns1, "10.2.0.2", count=5, interval=0.05)
        report = status(self.status_file("router"))
        self.assertEqual(report["drops"].get("source not sender's", 0), 0, report)
        self.assertIn("Injecting packet into tun interface", original.text())

    def test_silent_original_agent(self):
        """
        An original agent that started before the router, and has sent
        nothing for seconds since, is reached once the router calls its name
        (--roll-call): it announces itself again, and pings go both ways.
        """
        ns1, ns3 = Namespace(self.addCleanup), Namespace(self.addCleanup)
        listener = self.listen("fromAgent.agent_3.#")
        self.original("agent_3", ns3)
        deadline = time.monotonic() + 60
        while True:
            heard = self.heard(listener)
            last = heard[-1]["time"] if heard else 0
            if heard and time.time() - last > 4:
                quiet = time.time() - last
                break
            self.assertLess(time.monotonic(), deadline, "the original agent never went quiet")
            time.sleep(0.5)
        router = self.router("--roll-call", "agent_3")
        router.wait_for("roll call: asked agent_3 to announce themselves")
        router.wait_for(r"agent agent_3 has .*10\.2\.0\.3/32")
        agent1 = self.agent("agent_1", ns1)
        agent1.wait_for("routes from the router")
        self.assertPingsBothWays(ns1, ns3, 1, 3)
        print(f"\n  silent for {quiet:.1f} s before the router started; "
              f"{len(heard)} messages from agent_3 before", flush=True)
        self.assertTrue(re.search(r"agent agent_3 has", router.text()))
