"""
What one participant's traffic can cost the others, on a session made by
C{ioppy-session} with its real credentials: a stalled receiver's queue is
bounded on the broker, and a flood that pushes the session's packets out of
the record is reported to the organiser.
"""

import json
import os
import re
import signal
import sys
import time

from .. import lab
from ..lab.system import rabbitmqctl
from .harness import Namespace, Program, make_session, require
from .test_tunnel import CONNECTED, TunnelTestCase

# Each flood message: as big as the agents take a message (a participant
# may publish anything to another's inbox); the megabytes of one flood.
FLOOD_SIZE = 1_000_000
FLOOD_MB = 1000
# What the agents' queues keep ready at most, in bytes (and a thousand
# messages).
QUEUE_BYTES = 64 << 20
# What the broker may have on its way to a receiver whose socket is full,
# in messages: RabbitMQ's credit flow lets a process send this many on
# before the next one takes them (its default credit).
IN_FLIGHT = 400
# The broker's own slack while flooded, in MB.
SLACK_MB = 60


def broker_memory_mb():
    """
    @return: What the machine's broker's Erlang VM has allocated, in MB.
    """
    out = rabbitmqctl("eval", "erlang:garbage_collect(), erlang:memory(total).").stdout
    return int(out.strip()) / 1e6


def queue_state(vhost, queue):
    """
    @return: C{(messages ready, unacknowledged, bytes ready, bytes
        unacknowledged)} of C{queue}.
    """
    out = rabbitmqctl("list_queues", "-p", vhost, "name", "messages_ready",
                      "messages_unacknowledged", "message_bytes_ready",
                      "message_bytes_unacknowledged").stdout
    for line in out.splitlines():
        parts = line.split("\t")
        if parts[0] == queue:
            return tuple(int(p) for p in parts[1:])
    raise AssertionError(f"no queue {queue} in {out}")


class ParticipantBoundsTests(TunnelTestCase):
    """
    Three participants and a router (recording, with a small retention) on
    one session.
    """

    def setUp(self):
        require(self)
        self.session, self.dir = make_session(self, "bounds", ("agent_1", "agent_2", "agent_3"))
        self.status = os.path.join(self.dir, "router.json")

    def file(self, name):
        return os.path.join(self.dir, f"{name}.url")

    def start(self, *router_args, agent_args=()):
        self.router = Program(self.addCleanup, "ioppy-router", "--url-file",
                              self.file("router"), "--grants",
                              os.path.join(self.dir, "grants.json"), "--status-file",
                              self.status, "--status-interval", "0.5", *router_args)
        self.router.wait_for("router connected to")
        self.ns, self.agents = {}, {}
        for name in ("agent_1", "agent_2", "agent_3"):
            self.ns[name] = Namespace(self.addCleanup)
            self.agents[name] = Program(self.addCleanup, "ioppy-agent", "--url-file",
                                        self.file(name), "--name", name, "--netns",
                                        self.ns[name].name, "--report-interval", "1",
                                        *agent_args)
        for agent in self.agents.values():
            agent.wait_for(CONNECTED, timeout=60)
            agent.wait_for(r"routes from the router: 2 destinations \(2 direct\)", timeout=30)

    def pings(self, source, address, count=5):
        sent, received, output = self.ns[source].ping(address, count=count, interval=0.1)
        self.assertEqual((sent, received), (count, count), output)

    def stall(self):
        """
        Stop agent_2 and flood its inbox with agent_1's credentials.

        @return: The broker's memory before, while stalled and after agent_2
            went on, and agent_2's queue while stalled.
        """
        with open(self.file("agent_1")) as f:
            url = f.read().strip()
        agent2 = self.agents["agent_2"].process
        before = broker_memory_mb()
        os.kill(agent2.pid, signal.SIGSTOP)
        try:
            sent, seconds, _ = lab.tools.flood(url, "ioppy.to.agent_2", FLOOD_SIZE, FLOOD_MB)
            stalled = broker_memory_mb()
            queue = queue_state(self.session, "ioppy.agent.agent_2")
            # The others are not held up meanwhile.
            self.pings("agent_3", "10.2.0.1")
        finally:
            os.kill(agent2.pid, signal.SIGCONT)
        time.sleep(3)
        after = broker_memory_mb()
        print(f"\n  {sent:.0f} MB in {seconds:.1f} s to a stopped agent_2: broker "
              f"{before:.0f} -> {stalled:.0f} -> {after:.0f} MB; its queue: {queue[0]} ready "
              f"({queue[2] / 1e6:.1f} MB), {queue[1]} unacknowledged ({queue[3] / 1e6:.1f} MB)",
              flush=True)
        self.assertGreater(sent, FLOOD_MB * 0.9)
        return before, stalled, after, queue

    def test_stalled_receiver(self):
        """
        agent_2 stopped (SIGSTOP) while agent_1 sends 1000 MB to its inbox in
        1 MB messages: agent_2's queue keeps no more than 64 MiB ready, the
        broker holds no more than that and what it has in flight to agent_2
        (L{IN_FLIGHT} messages), and the others' pings keep going; with acknowledgements
        (the default: at most the prefetch, 1024, in flight) and without
        (C{--prefetch 0}: the broker stops delivering while the receiver's
        socket is full).
        """
        for args in ((), ("--prefetch", "0")):
            self.start(agent_args=args)
            before, stalled, after, (ready, unacked, ready_bytes, unacked_bytes) = \
                self.stall()
            self.assertLessEqual(ready, 1000, args)
            self.assertLessEqual(ready_bytes, QUEUE_BYTES + FLOOD_SIZE, args)
            self.assertLessEqual(unacked, 1024, args)
            self.assertLess(stalled - before,
                            (QUEUE_BYTES + IN_FLIGHT * FLOOD_SIZE) / 1e6 + SLACK_MB, args)
            self.pings("agent_3", "10.2.0.2")
            self.pings("agent_1", "10.2.0.2")
            for agent in self.agents.values():
                agent.terminate()
            self.router.terminate()

    def test_record_pushed_out(self):
        """
        With a record of 4 MB, a flood from agent_1 pushes the session's
        packets out of it in seconds: the router says so, and its status
        file counts what went and names agent_1 as the one who filled it.
        """
        self.start("--record", "--record-max-bytes", "4MB", "--record-check", "1")
        self.pings("agent_3", "10.2.0.2")
        blast = ("import socket, time\n"
                 "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                 "end = time.time() + 4\n"
                 "while time.time() < end:\n"
                 "    try:\n"
                 "        s.sendto(bytes(1400), ('10.2.0.2', 9))\n"
                 "    except OSError:\n"
                 "        pass\n")
        self.ns["agent_1"].run(sys.executable, "-c", blast, timeout=60, check=False)
        said = r"the record keeps only the last .* of packets.*"
        self.router.wait_for(said, timeout=30)
        line = re.search(said, self.router.text()).group(0)
        # Who filled it, from the agents' reports (every second here): in
        # the status file at each look while the record is short.
        deadline = time.monotonic() + 30
        record = {}
        while time.monotonic() < deadline:
            with open(self.status) as f:
                record = json.load(f).get("record", {})
            if (record.get("top_sender") or {}).get("agent") == "agent_1":
                break
            time.sleep(0.5)
        self.assertEqual((record.get("top_sender") or {}).get("agent"), "agent_1", record)
        self.assertGreater(record["dropped"], 0)
        self.assertLess(record["kept_seconds"], 60)
        print(f"\n  {line}\n  status: {record}", flush=True)
        self.pings("agent_3", "10.2.0.2")
