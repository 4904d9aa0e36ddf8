"""
Per-participant credentials on the real broker: C{ioppy-session create}
makes a session, the tunnel works with the URL files it writes, and with
agent_1's credentials the broker refuses what only agent_2 may do.
"""

import os
import subprocess
import sys
import time

from ioppy_agent.bus.url import parse_amqp_url

from .. import lab

from .harness import Namespace, Program, require
from .test_observing import CAPTURE, FIELDS, echoes, tshark_fields
from .test_tunnel import CONNECTED, TunnelTestCase

SESSION_COMMAND = os.path.join(os.path.dirname(sys.executable), "ioppy-session")


class SessionTests(TunnelTestCase):
    """
    A session made by C{ioppy-session} on the machine's broker.
    """

    def setUp(self):
        require(self)
        self.session = lab.unique("session")
        self.dir = os.path.abspath(self.mktemp())
        made = self.session_command("create", self.session, "--broker", "amqp://127.0.0.1",
                                    "-p", "agent_1", "-p", "agent_2", "--out", self.dir)
        self.addCleanup(self.session_command, "delete", self.session)
        self.made = made.stdout
        with open(os.path.join(self.dir, "agent_1.url")) as f:
            self.agent1_url = f.read().strip()

    def session_command(self, *args):
        done = subprocess.run([SESSION_COMMAND, *args], capture_output=True, text=True,
                              timeout=300)
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        return done

    @property
    def grants(self):
        return os.path.join(self.dir, "grants.json")

    def file(self, name):
        return os.path.join(self.dir, f"{name}.url")

    def test_limits_leave_room_to_reconnect(self):
        """
        agent_1's user may hold 16 connections at once and no more; an
        agent killed (kill -9) and started again five times in a row
        connects each time, and its pings go on.
        """
        opened, refusal = lab.connections(self.agent1_url, 20)
        print(f"\n  agent_1's credentials: {opened} connections opened, then: {refusal}",
              flush=True)
        self.assertEqual(opened, 16)
        self.assertIn("connection", refusal.lower())
        ns1, ns2 = Namespace(self.addCleanup), Namespace(self.addCleanup)
        router = Program(self.addCleanup, "ioppy-router", "--url-file", self.file("router"),
                         "--grants", self.grants)
        router.wait_for("router connected to")
        agent2 = Program(self.addCleanup, "ioppy-agent", "--url-file", self.file("agent_2"),
                         "--name", "agent_2", "--netns", ns2.name)
        agent2.wait_for(CONNECTED)
        started = time.monotonic()
        for attempt in range(6):
            agent1 = Program(self.addCleanup, "ioppy-agent", "--url-file",
                             self.file("agent_1"), "--name", "agent_1", "--netns", ns1.name)
            agent1.wait_for(CONNECTED, timeout=30)
            if attempt < 5:
                agent1.process.kill()
                agent1.wait(timeout=10)
        print(f"\n  agent_1 killed and connected again 5 times in "
              f"{time.monotonic() - started:.1f} s", flush=True)
        agent1.wait_for(r"routes from the router: 1 destinations \(1 direct\)", timeout=30)
        self.assertPings(ns1, "10.2.0.2")

    def test_tunnel_and_refusals(self):
        """
        With the URL files the tunnel works; with agent_1's credentials,
        publishing as agent_2 and binding agent_2's keys are refused, and an
        agent started with them under agent_2's name exits 3 with the
        broker's reason instead of retrying; no password is printed or
        logged.
        """
        self.assertIn(f"agent_1: {self.file('agent_1')}", self.made)
        ns1, ns2, ns3 = (Namespace(self.addCleanup) for _ in range(3))
        router = Program(self.addCleanup, "ioppy-router", "--url-file", self.file("router"),
                         "--grants", self.grants)
        router.wait_for("router connected to")
        agents = [Program(self.addCleanup, "ioppy-agent", "--url-file", self.file(name),
                          "--name", name, "--netns", ns.name)
                  for name, ns in (("agent_1", ns1), ("agent_2", ns2))]
        for agent in agents:
            agent.wait_for(CONNECTED)
            agent.wait_for(r"routes from the router: 1 destinations \(1 direct\)")
        self.assertPings(ns1, "10.2.0.2")
        self.assertPings(ns2, "bbbb::1")

        refusals = {
            "publish as agent_2": lab.try_as(self.agent1_url, "publish",
                                             "fromAgent.agent_2.ip.tun.packet.raw"),
            "publish to agent_2": lab.try_as(self.agent1_url, "publish",
                                             "toAgent.agent_2.ip.tun.packet.raw"),
            "bind agent_2's packets": lab.try_as(self.agent1_url, "bind",
                                                 "ioppy.agent.agent_1.0a",
                                                 "fromAgent.agent_2.ip.tun.packet.raw"),
            "bind agent_2's inbox": lab.try_as(self.agent1_url, "bind",
                                               "ioppy.agent.agent_1.0c", "ioppy.to.agent_2"),
            "bind every inbox": lab.try_as(self.agent1_url, "bind", "ioppy.agent.agent_1.0a1",
                                           "ioppy.to.*"),
            "bind the steering exchange": lab.try_as(
                self.agent1_url, "bind", "ioppy.agent.agent_1.0d", "", "ioppy.steer"),
            "bind from the steering exchange": lab.try_as(
                self.agent1_url, "bind-exchange", "ioppy.agent.agent_1.0e", "ioppy.steer"),
            "bind what falls unsteered": lab.try_as(
                self.agent1_url, "bind", "ioppy.agent.agent_1.0f", "", "ioppy.unsteered"),
            "publish into the router's drop": lab.try_as(
                self.agent1_url, "publish", "fromAgent.agent_3.ip.tun.packet.raw",
                "ioppy.direct"),
            "publish into the steering exchange": lab.try_as(
                self.agent1_url, "publish", "fromAgent.agent_3.ip.tun.packet.raw",
                "ioppy.steer"),
            "bind every packet": lab.try_as(self.agent1_url, "bind", "ioppy.agent.agent_1.0b",
                                            "fromAgent.#"),
            "agent_2's queue": lab.try_as(self.agent1_url, "bind", "ioppy.agent.agent_2",
                                          "toAgent.agent_2.ip.tun.packet.raw"),
        }
        for what, said in refusals.items():
            print(f"\n  {what}: {said}", flush=True)
            self.assertTrue(said.startswith("refused: ACCESS_REFUSED"), (what, said))
        self.assertEqual(lab.try_as(self.agent1_url, "publish",
                                    "fromAgent.agent_1.ip.tun.packet.raw"), "accepted")

        impostor = Program(self.addCleanup, "ioppy-agent", "--url-file", self.file("agent_1"),
                           "--name", "agent_2", "--netns", ns3.name)
        self.assertEqual(impostor.wait(timeout=30), 3, impostor.text())
        said = [line for line in impostor.text().splitlines() if "ACCESS_REFUSED" in line]
        print(f"\n  impostor (exit 3): {said[0] if said else impostor.text()}", flush=True)
        self.assertIn("ACCESS_REFUSED", impostor.text())
        self.assertEqual(impostor.text().count("connecting to"), 1, "retried")
        self.assertPings(ns1, "10.2.0.2")
        password = parse_amqp_url(self.agent1_url).password
        for program in (router, *agents, impostor):
            self.assertNotIn(password, program.text())
        self.assertNotIn(password, self.made)
        self.assertStops(*agents, router)

    def test_recorder(self):
        """
        The router's credentials may make and read the session's record
        (ioppy-capture marks the end of its window through the default
        exchange); a participant's may not read it: exit 3.
        """
        ns1, ns2 = Namespace(self.addCleanup), Namespace(self.addCleanup)
        router = Program(self.addCleanup, "ioppy-router", "--url-file", self.file("router"),
                         "--grants", self.grants,
                         "--record")
        router.wait_for("router connected to")
        agents = [Program(self.addCleanup, "ioppy-agent", "--url-file", self.file(name),
                          "--name", name, "--netns", ns.name)
                  for name, ns in (("agent_1", ns1), ("agent_2", ns2))]
        for agent in agents:
            agent.wait_for(r"routes from the router: 1 destinations \(1 direct\)")
        since = time.time()
        self.assertPings(ns1, "10.2.0.2", count=3)
        until = time.time()
        out = os.path.join(self.dir, "case.pcapng")
        done = subprocess.run([CAPTURE, "--url-file", self.file("router"), "--since",
                               f"{since:.3f}", "--until", f"{until:.3f}", "-o", out],
                              capture_output=True, text=True, timeout=60)
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual(len(echoes(tshark_fields(out, *FIELDS))), 6, done.stderr)
        refused = subprocess.run([CAPTURE, "--url-file", self.file("agent_1"), "-o",
                                  os.path.join(self.dir, "no.pcapng")],
                                 capture_output=True, text=True, timeout=60)
        print(f"\n  agent_1 reading the record (exit {refused.returncode}): "
              f"{refused.stderr.strip().splitlines()[-1]}", flush=True)
        self.assertEqual(refused.returncode, 3, refused.stderr)
        self.assertIn("ACCESS_REFUSED", refused.stderr)
        self.assertNotIn(parse_amqp_url(self.agent1_url).password, refused.stderr)
        self.assertStops(*agents, router)
