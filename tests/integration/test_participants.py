"""
A hostile participant: agent_1 of a session made by C{ioppy-session},
holding its own valid credentials, with a hand-written AMQP client (the
lab's C{try-as} and C{publish}), tries every way the broker offers to
take the session over.  Each attack is checked by what the victims see:
agent_3's pings keep reaching agent_2's TUN, agent_2 keeps its address,
the router keeps its agents.
"""

import json
import os
import re

from .. import lab

from .harness import Namespace, Program, make_session, require
from .test_tunnel import CONNECTED, TunnelTestCase

NAMES = ("agent_1", "agent_2", "agent_3", "agent_4")


class HostileParticipantTests(TunnelTestCase):
    """
    Four participants and a router on one session; agent_1 attacks.
    """

    def setUp(self):
        require(self)
        self.session, self.dir = make_session(self, "hostile", NAMES)
        with open(self.file("agent_1")) as f:
            self.url = f.read().strip()
        self.ns = {name: Namespace(self.addCleanup) for name in NAMES}
        self.router = Program(self.addCleanup, "ioppy-router", "--url-file",
                              self.file("router"), "--grants",
                              os.path.join(self.dir, "grants.json"), "--status-file",
                              os.path.join(self.dir, "router.json"), "--status-interval",
                              "0.5")
        self.router.wait_for("router connected to")
        self.agents = {}
        for name in NAMES:
            # agent_4 claims agent_2's address and a default route as
            # prefixes routed behind it.
            extra = ("--route", "10.2.0.2/32") if name == "agent_4" else ()
            self.agents[name] = Program(self.addCleanup, "ioppy-agent", "--url-file",
                                        self.file(name), "--name", name, "--netns",
                                        self.ns[name].name, *extra)
        for name, agent in self.agents.items():
            agent.wait_for(CONNECTED, timeout=60)
            agent.wait_for(r"routes from the router: 3 destinations \(3 direct\)", timeout=30)

    def file(self, name):
        return os.path.join(self.dir, f"{name}.url")

    def tun_received(self, name):
        """
        @return: The packets agent C{name} has written into its TUN so far
            (what its kernel received on tun0).
        """
        out = self.ns[name].run("cat", "/sys/class/net/tun0/statistics/rx_packets").stdout
        return int(out.strip())

    def victims_unharmed(self, what):
        """
        agent_3's pings reach agent_2 (only agent_2's TUN has 10.2.0.2 and
        bbbb::2) and agent_4; agent_2 has its address; the router knows
        the four agents.
        """
        seen = []
        for address, owner in (("10.2.0.2", "agent_2"), ("bbbb::2", "agent_2"),
                               ("10.2.0.4", "agent_4")):
            before = self.tun_received(owner)
            sent, received, output = self.ns["agent_3"].ping(address, count=5, interval=0.1)
            self.assertEqual((sent, received), (5, 5), f"after {what}: {output}")
            # The requests went into the owner's TUN (not agent_1's).
            into = self.tun_received(owner) - before
            self.assertGreaterEqual(into, 5, f"after {what}: {owner}'s TUN got {into}")
            seen.append(f"{address} {received}/{sent} (into {owner}'s TUN: {into})")
        shown = self.ns["agent_2"].run("ip", "-o", "addr", "show").stdout
        self.assertIn("10.2.0.2/24", shown, what)
        self.assertNotIn("10.2.0.202", shown, what)
        joined = re.findall(r"agent (\S+) left", self.router.text())
        self.assertEqual(joined, [], what)
        print(f"\n  victims after {what}: agent_3's pings {', '.join(seen)}; agent_2 keeps "
              "10.2.0.2/24; the router lost no agent", flush=True)

    def test_cannot_forge_into_the_exchange(self):
        """
        Every way into amq.topic under a key agent_1 may not publish is
        refused by the broker: an exchange of its own with amq.topic as
        alternate exchange, a queue of its own dead-lettering into it, an
        exchange binding into it, publishing another's keys, the lossy link
        or another user's user_id.
        """
        forged = "toAgent.agent_3.ip.tun.routes"
        attacks = {
            "alternate exchange": ("declare-exchange", "ioppy.agent.agent_1",
                                   json.dumps({"alternate-exchange": "amq.topic"})),
            "dead-letter exchange": ("declare-queue", "ioppy.agent.agent_1.0d", json.dumps(
                {"x-dead-letter-exchange": "amq.topic",
                 "x-dead-letter-routing-key": forged, "x-message-ttl": 1})),
            "server-named queue, dead-lettering": ("declare-queue", "", json.dumps(
                {"x-dead-letter-exchange": "amq.topic", "x-dead-letter-routing-key": forged})),
            "exchange to exchange": ("bind-exchanges", "amq.topic", "amq.topic", "#"),
            "its own exchange bound in": ("bind-exchange", "ioppy.agent.agent_1", "amq.topic"),
            "from amq.fanout": ("bind-exchanges", "amq.topic", "amq.fanout", ""),
            "tun.start to agent_2": ("publish", "toAgent.agent_2.ip.tun.start"),
            "packets to agent_2": ("publish", "toAgent.agent_2.ip.tun.packet.raw"),
            "routes to agent_3": ("publish", "ioppy.routes.agent_3"),
            "agent_2's tun.started": ("publish", "fromAgent.agent_2.ip.tun.started"),
            "lossy link": ("publish", "routing.lossy.link.start"),
            "through the default exchange": ("publish-to-queue", "ioppy.agent.agent_2"),
            "through amq.direct": ("publish", "toAgent.agent_2.ip.tun.start", "amq.direct"),
            "agent_2's user_id": ("publish-as", "fromAgent.agent_1.ip.tun.packet.raw",
                                  f"{self.session}.agent_2"),
            "its own queue's bindings": ("bind", "ioppy.agent.agent_1",
                                         "fromAgent.agent_2.ip.tun.packet.raw"),
        }
        for what, args in attacks.items():
            said = lab.try_as(self.url, *args)
            print(f"\n  {what}: {said}", flush=True)
            self.assertTrue(said.startswith("refused: "), (what, said))
            self.assertRegex(said, "ACCESS_REFUSED|PRECONDITION_FAILED|NOT_FOUND", what)
        self.victims_unharmed("the forging attempts")

    def test_what_it_may_send_harms_no_one(self):
        """
        What agent_1 may send: a shutdown naming agent_2, copies to other
        agents' control keys in a CC header (RabbitMQ 3.10 does not check
        them; receivers read them as agent_1's packets, which they are), a
        pile of invented component announcements, and agent_4's claim of
        agent_2's address: the victims see none of it.
        """
        shutdown = json.dumps({"component": "agent_2"})
        lab.publish(self.url, "testingtool.component.shutdown", shutdown)
        self.assertEqual(lab.try_as(self.url, "publish-as", "testingtool.component.shutdown",
                                    f"{self.session}.agent_1", shutdown), "accepted")
        start = json.dumps({"ipv4_host": "10.2.0.202", "ipv4_network": "10.2.0.0",
                            "ipv4_netmask": "255.255.255.0", "ipv6_prefix": "bbbb",
                            "ipv6_host": "202", "ipv6_no_forwarding": False,
                            "re_route_packets_if": None, "re_route_packets_prefix": None,
                            "re_route_packets_host": None})
        lab.publish(self.url, "fromAgent.agent_1.ip.tun.packet.raw", start,
                    copy_to="toAgent.agent_2.ip.tun.start,ioppy.routes.agent_3,"
                            "routing.lossy.link.start,fromAgent.agent_2.ip.tun.started")
        # Its own announcement, claiming agent_2's addresses and default
        # routes as prefixes routed behind it.
        claim = json.dumps({"name": "agent_1", "ipv4_host": "10.2.0.1",
                            "ipv4_netmask": "255.255.255.0", "ipv6_prefix": "bbbb",
                            "ipv6_host": "1", "ioppy_direct": True,
                            "ioppy_routes": ["10.2.0.2/32", "bbbb::2/128", "0.0.0.0/0",
                                             "::/0"]})
        lab.publish(self.url, "fromAgent.agent_1.ip.tun.started", claim)
        # 3,000 invented components announcing themselves, each a new name.
        router_pid = self.router.process.pid
        cpu, log = lab.cpu_seconds(router_pid), len(self.router.text())
        _, seconds, count = lab.tools.flood(self.url, "testingtool.component.ready", "ready",
                                            3000 * 32 / 1e6)
        self.assertGreaterEqual(count, 3000)
        self.victims_unharmed("the shutdown, the copies, the claims and the announcements")
        cost, grown = lab.cpu_seconds(router_pid) - cpu, len(self.router.text()) - log
        print(f"\n  {count} invented announcements in {seconds:.2f} s: the router spent "
              f"{cost:.2f} s of CPU, its log grew {grown} bytes", flush=True)
        self.assertLess(grown, 20_000)
        text = self.router.text()
        print("\n  router: " + "\n  router: ".join(
            line.split(" ", 2)[-1] for line in text.splitlines()
            if "ignored" in line or "refused" in line), flush=True)
        self.assertIn("refused agent_4's claim of 10.2.0.2/32: outside agent_4's grant", text)
        for prefix in ("10.2.0.2/32", "bbbb::2/128", "0.0.0.0/0", "::/0"):
            self.assertIn(f"refused agent_1's claim of {prefix}", text)
        # Both shutdowns dropped (the log warns once per interval; the
        # counters have each).
        with open(os.path.join(self.dir, "router.json")) as f:
            self.assertEqual(json.load(f)["drops"].get("not allowed"), 2)
        self.assertRegex(text, r"agents: agent_1, agent_2, agent_3, agent_4")
        self.assertNotIn("invented", text)
        self.assertNotIn("lossy link: dropping", text)
        self.assertNotIn("10.2.0.202", self.agents["agent_2"].text())
