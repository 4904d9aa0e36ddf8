"""
The agent against a misbehaving broker (L{tests.lab.hostile}), run as users
run it: each protocol violation is logged, the connection closed with the
right reply code and made again, with the TUN kept; memory and CPU stay
bounded whatever the broker sends; and the orderly stop never takes a stray
frame for its reply.
"""

import json
import time

from twisted.trial.unittest import SynchronousTestCase

from ..lab import Namespace, Program, free_port, tool
from .harness import require

# Bounds for what one attack may cost the agent.
RSS_GROWTH_MB = 20
CPU_SECONDS = 5.0


def rss_mb(pid):
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def cpu_seconds(pid):
    import os
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class HostileTestCase(SynchronousTestCase):
    """
    An agent whose TUN is in a namespace of the test's own, connected to a
    hostile broker of its own.
    """

    def setUp(self):
        require(self)
        self.ns = Namespace(self.addCleanup)

    def start(self, attack, *agent_args):
        """
        Start the broker with C{attack} and the agent; wait until the agent
        consumes.
        """
        port = free_port()
        argv, env = tool("hostile-broker", str(port), attack)
        self.broker = Program(self.addCleanup, None, argv=argv, env=env)
        self.broker.wait_for('"event": "listening"')
        self.agent = Program(self.addCleanup, "ioppy-agent", "--url",
                             f"amqp://guest:guest@127.0.0.1:{port}/", "--name", "agent_1",
                             "--netns", self.ns.name, "--stats-interval", "0", *agent_args)
        self.wait_event("ready", n=1)
        self.ifindex = self.tun_ifindex()
        pid = self.agent.process.pid
        self.rss, self.cpu = rss_mb(pid), cpu_seconds(pid)
        self.addCleanup(self.assertClean)

    def tun_ifindex(self):
        return int(self.ns.run("cat", "/sys/class/net/tun0/ifindex").stdout)

    def events(self):
        out = []
        for line in self.broker.text().splitlines():
            if line.startswith("{"):
                out.append(json.loads(line))
        return out

    def wait_event(self, event, timeout=20.0, **fields):
        """
        Wait for the broker to report C{event} with C{fields}.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for found in self.events():
                if found["event"] == event and all(found.get(k) == v
                                                   for k, v in fields.items()):
                    return found
            if self.agent.process.poll() is not None and event != "closed":
                break
            time.sleep(0.05)
        raise AssertionError(f"no {event} {fields} from the broker:\n{self.broker.text()}\n"
                             f"agent:\n{self.agent.text()}")

    def assertBounded(self):
        """
        The agent's memory and CPU since it connected stayed within bounds.
        """
        pid = self.agent.process.pid
        grown, spent = rss_mb(pid) - self.rss, cpu_seconds(pid) - self.cpu
        self.assertLess(grown, RSS_GROWTH_MB, f"RSS grew by {grown:.1f} MB")
        self.assertLess(spent, CPU_SECONDS, f"{spent:.2f} CPU seconds")
        return grown, spent

    def assertClean(self):
        """
        No traceback in the agent's log.
        """
        text = self.agent.text()
        self.assertNotIn("Traceback", text)
        self.assertNotIn("Unhandled Error", text)

    def assertRecovers(self, attack, code, says, *agent_args):
        """
        C{attack} is refused with C{code}, logged with C{says}; the agent
        connects again with the same TUN and a packet crosses the new
        connection.
        """
        self.start(attack, *agent_args)
        closed = self.wait_event("closed", n=1)
        self.assertEqual(closed["code"], code, closed)
        self.assertIn(says, closed["text"])
        self.agent.wait_for("the broker broke the AMQP protocol: it sent " + says)
        self.wait_event("ready", n=2)
        self.wait_event("published", n=2, echo_reply=True)
        self.assertEqual(self.tun_ifindex(), self.ifindex)
        self.assertIsNone(self.agent.process.poll())
        return self.assertBounded()


class ViolationTests(HostileTestCase):
    """
    Each violation: logged, closed with its code, connected again.
    """

    def test_huge_frame(self):
        """
        A frame header announcing 4 GiB, with bytes trickling after it, is
        refused at its header (501): nothing is buffered for it.
        """
        self.assertRecovers("huge-frame", 501, "a frame of 4294967288 bytes, more than the "
                                               "negotiated frame_max 131072")

    def test_absurd_body(self):
        """
        A content header announcing 1 TiB is refused (501).
        """
        self.assertRecovers("absurd-body", 501, "a content header announcing 1099511627776 "
                                                "bytes")

    def test_stray_header(self):
        """
        A content header with no delivery before it is refused (505).
        """
        self.assertRecovers("stray-header", 505, "a content header on channel 1 with no "
                                                 "message before it")

    def test_unknown_frame_type(self):
        """
        An unknown frame type is refused (501), without a traceback.
        """
        self.assertRecovers("unknown-frame-type", 501, "a frame of unknown type 9")

    def test_unknown_method(self):
        """
        An unknown method is refused (540), without a traceback.
        """
        self.assertRecovers("unknown-method", 540, "method 60.99, which AMQP 0-9-1 brokers "
                                                   "do not send")

    def test_unopened_channel(self):
        """
        A frame on a channel never opened is refused (504).
        """
        self.assertRecovers("unopened-channel", 504, "a frame of type 1 on channel 7, which "
                                                     "was never opened")


class RecoveryTests(HostileTestCase):
    """
    What is not a violation, but must not stop the tunnel.
    """

    def test_huge_body(self):
        """
        A 50 MiB message is skipped as it streams past, not stored; it is
        counted and warned about, the connection stays, and the packet after
        it arrives.
        """
        self.start("huge-body")
        self.wait_event("published", n=1, echo_reply=True)
        self.agent.wait_for("dropped a 52428800-byte message on "
                            "toAgent.agent_1.ip.tun.packet.raw: too large to be a packet")
        self.assertNotIn("closed", [e["event"] for e in self.events()])
        grown, spent = self.assertBounded()
        self.assertLess(grown, 5)

    def test_channel_closed(self):
        """
        After the broker closes the channel, the agent logs the broker's
        reason, closes the connection (200) and sets up a new session.
        """
        self.start("channel-close")
        self.agent.wait_for("the broker closed channel 1: 404 NOT_FOUND - no exchange 'gone'")
        self.assertEqual(self.wait_event("closed", n=1)["code"], 200)
        self.wait_event("ready", n=2)
        self.wait_event("published", n=2, echo_reply=True)
        self.assertEqual(self.tun_ifindex(), self.ifindex)

    def test_silent_broker(self):
        """
        A broker that goes silent is dropped after two heartbeats, and the
        log says why.
        """
        self.start("silence", "--heartbeat", "2")
        self.agent.wait_for(r"lost the connection to \S+ \(nothing heard from the broker "
                            r"for 4\.\d s \(heartbeat 2 s\)\)", timeout=10)
        self.wait_event("ready", n=2)

    def test_flood(self):
        """
        2000 packets in one burst from the broker are written into the TUN a
        batch at a time, with the TUN read in between: the kernel's replies
        all come back instead of overflowing tun0's 500-packet queue.
        """
        self.start("flood", "--wire", "raw")
        deadline = time.monotonic() + 30
        replies = 0
        while time.monotonic() < deadline:
            replies = len([e for e in self.events() if e["event"] == "published"
                           and e["n"] == 1 and e["echo_reply"]])
            if replies >= 2000:
                break
            time.sleep(0.2)
        self.assertGreaterEqual(replies, 1980)
        self.assertBounded()


class StopTests(HostileTestCase):
    """
    The orderly stop.
    """

    def test_goodbye(self):
        """
        SIGTERM closes the connection with reply code 200.
        """
        self.start("silence")
        code, seconds = self.agent.terminate(timeout=10)
        self.assertEqual(code, 0, self.agent.text())
        closed = self.wait_event("closed", n=1)
        self.assertEqual((closed["code"], closed["text"]), (200, "goodbye"))

    def test_stray_reply_at_stop(self):
        """
        A broker that answers basic.cancel with a stray header and a reply to
        nothing: the agent logs the violation and still stops, exit status
        0, within 3 s, and removes its TUN.
        """
        self.start("stray-reply-at-stop")
        code, seconds = self.agent.terminate(timeout=10)
        self.assertEqual(code, 0, self.agent.text())
        self.assertLess(seconds, 3)
        self.assertIn("the broker broke the AMQP protocol: it sent a content header on "
                      "channel 1 with no message before it", self.agent.text())
        self.assertNotIn("tun0", self.ns.links())
