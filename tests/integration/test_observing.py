"""
Observing a session: the session recorder (C{ioppy-router --record} and
C{ioppy-capture}) and the router's live page in a real headless browser.
Each test runs the real programs, with real TUNs in namespaces of its own.
"""

import os
import shutil
import signal
import subprocess
import sys
import time

from ioppy_agent.recorder.stream import STREAM

from .. import lab
from .harness import Namespace, Program
from .test_tunnel import TunnelTestCase

CAPTURE = os.path.join(os.path.dirname(sys.executable), "ioppy-capture")


def tshark_fields(path, *fields):
    """
    @return: One tuple of C{fields} per packet of the capture file C{path},
        read by tshark.
    """
    tshark = shutil.which("tshark")
    if tshark is None:
        raise AssertionError("tshark is missing: make test installs it")
    args = [tshark, "-r", path, "-T", "fields"]
    for field in fields:
        args += ["-e", field]
    result = subprocess.run(args, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise AssertionError(f"tshark -r {path} failed: {result.stderr}")
    return [tuple(line.split("\t")) for line in result.stdout.splitlines() if line]


def echoes(packets):
    """
    @param packets: tshark's C{(interface, time, ip.src, icmp.type,
        icmpv6.type)} rows.
    @return: The rows of pings (echo requests and replies, v4 and v6): the
        kernel also sends IPv6 router solicitations and MLD reports of its
        own into a TUN.
    """
    return [p for p in packets if p[3] in ("0", "8") or p[4] in ("128", "129")]


FIELDS = ("frame.interface_name", "frame.time_epoch", "ip.src", "icmp.type", "icmpv6.type")


class RecorderTests(TunnelTestCase):
    """
    Every packet kept in the broker's stream, read back as pcapng.
    """

    def capture(self, *args, timeout=60):
        """
        Run ioppy-capture on the test's vhost.

        @return: C{(status, stderr)}.
        """
        result = subprocess.run([CAPTURE, "--url", self.vhost.url, *args],
                                capture_output=True, text=True, timeout=timeout)
        return result.returncode, result.stderr

    def test_window_read_back(self):
        """
        With --record, the broker keeps every packet the agents send, in the
        JSON and the raw wire format, straight or through the router, also
        while the router is down: ioppy-capture writes a window of them as
        pcapng that tshark reads, one interface per agent, each packet at
        the time it entered the bus; --agent keeps one agent's.
        """
        ns1, ns2 = Namespace(self.addCleanup), Namespace(self.addCleanup)
        router = self.router("--record", "--record-max-age", "1h",
                             "--record-max-bytes", "50MB")
        self.assertIn(f"recording every packet in the stream {STREAM!r}", router.text())
        agent1 = self.agent("agent_1", ns1)
        agent2 = self.agent("agent_2", ns2, "--wire", "raw")
        agent1.wait_for(r"routes from the router: 1 destinations \(1 direct\)")
        before = time.time()
        self.assertPings(ns1, "10.2.0.2", count=4)
        self.assertPings(ns2, "bbbb::1", count=3)
        between = time.time()
        # The router goes; the agents keep their routes, and the broker keeps
        # recording what they send.
        code, _ = router.terminate()
        self.assertEqual(code, 0, router.text())
        self.assertPings(ns1, "10.2.0.2", count=2)
        router = self.router("--record", "--record-max-age", "1h",
                             "--record-max-bytes", "50MB")
        self.assertPings(ns1, "10.2.0.2", count=2)
        after = time.time()

        directory = os.path.abspath(self.mktemp())
        os.mkdir(directory)
        whole = os.path.join(directory, "whole.pcapng")
        status, err = self.capture("--since", f"{before:.3f}", "--until", f"{after:.3f}",
                                   "-o", whole)
        self.assertEqual(status, 0, err)
        packets = tshark_fields(whole, *FIELDS)
        pings = echoes(packets)
        # 8 echo requests from agent_1 and 8 replies from agent_2 (IPv4);
        # 3 requests from agent_2 and 3 replies from agent_1 (IPv6).
        by_agent = {}
        for interface, *_ in pings:
            by_agent[interface] = by_agent.get(interface, 0) + 1
        self.assertEqual(by_agent, {"agent_1": 11, "agent_2": 11}, err)
        self.assertIn(f"wrote {len(packets)} packets", err)
        print(f"\n  {err.strip().splitlines()[-1]}; {len(pings)} of them pings", flush=True)
        stamps = [float(p[1]) for p in packets]
        self.assertTrue(all(before <= t <= after for t in stamps), (before, stamps, after))
        v4 = [p for p in pings if p[2]]
        self.assertEqual(sorted({(p[0], p[2]) for p in v4}),
                         [("agent_1", "10.2.0.1"), ("agent_2", "10.2.0.2")])
        # The window's edge is the time each packet entered the bus.
        first = os.path.join(directory, "first.pcapng")
        status, err = self.capture("--since", f"{before:.3f}", "--until", f"{between:.3f}",
                                   "--agent", "agent_2", "-o", first)
        self.assertEqual(status, 0, err)
        first_packets = tshark_fields(first, *FIELDS)
        self.assertEqual(len(echoes(first_packets)), 7, err)
        self.assertEqual({p[0] for p in first_packets}, {"agent_2"})
        self.assertTrue(all(float(p[1]) <= between for p in first_packets))
        self.assertStops(agent1, agent2, router)
        # The record is the broker's: it outlives the programs.
        self.assertIn(STREAM, self.vhost.queues())

    def test_follow(self):
        """
        --follow writes packets as they come, to standard output, readable
        while the capture runs; SIGINT (Ctrl-C) ends it with status 0.
        """
        ns1, ns2 = Namespace(self.addCleanup), Namespace(self.addCleanup)
        router = self.router("--record")
        agent1 = self.agent("agent_1", ns1)
        agent2 = self.agent("agent_2", ns2)
        agent1.wait_for(r"routes from the router: 1 destinations \(1 direct\)")
        directory = os.path.abspath(self.mktemp())
        os.mkdir(directory)
        path = os.path.join(directory, "live.pcapng")
        with open(path, "wb") as out:
            # Ctrl-C as at a terminal: a shell without job control starts
            # background commands with SIGINT ignored, and CI may be one.
            follow = subprocess.Popen([CAPTURE, "--url", self.vhost.url, "--follow"],
                                      stdout=out, stderr=subprocess.PIPE,
                                      preexec_fn=lambda: signal.signal(signal.SIGINT,
                                                                       signal.SIG_DFL))
            self.addCleanup(lambda: follow.poll() is None and follow.kill())
            time.sleep(1.0)
            self.assertPings(ns1, "10.2.0.2", count=3)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if len(echoes(tshark_fields(path, *FIELDS))) >= 6:
                    break
                time.sleep(0.2)
            self.assertEqual(len(echoes(tshark_fields(path, *FIELDS))), 6)
            follow.send_signal(signal.SIGINT)
            _, err = follow.communicate(timeout=10)
        self.assertEqual(follow.returncode, 0, err)
        self.assertIn(b"wrote ", err)
        self.assertStops(agent1, agent2, router)

    def test_refusals(self):
        """
        ioppy-capture on a vhost with no record says so and exits 1; a
        router asked to record with another retention than the stream has
        exits 1 and says how to go on.
        """
        directory = os.path.abspath(self.mktemp())
        os.mkdir(directory)
        status, err = self.capture("-o", os.path.join(directory, "x.pcapng"), timeout=30)
        self.assertEqual(status, 1, err)
        self.assertIn("nothing is recorded on this vhost (start ioppy-router with --record)",
                      err)
        self.assertNotIn("guest:guest", err)
        router = self.router("--record", "--record-max-age", "1h")
        self.assertStops(router)
        other = Program(self.addCleanup, "ioppy-router", "--url", self.vhost.url,
                        "--record", "--record-max-age", "2h")
        self.assertEqual(other.wait(timeout=20), 1, other.text())
        self.assertIn(f"the stream {STREAM!r} exists with other settings", other.text())
        self.assertIn(f"rabbitmqctl delete_queue -p {self.vhost.name} {STREAM}",
                      other.text())


class LivePageTests(TunnelTestCase):
    """
    The router's live page, in Debian's Chromium, headless.
    """

    def browser(self):
        """
        @return: A Selenium driver of headless Chromium, quit at cleanup.
        """
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
        chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
        if chromium is None or driver is None:
            self.fail("chromium or chromedriver is missing: make test installs them")
        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                         "--window-size=1500,560", "--disable-dev-shm-usage"):
            options.add_argument(argument)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        browser = webdriver.Chrome(service=Service(executable_path=driver), options=options)
        self.addCleanup(browser.quit)
        browser.set_page_load_timeout(20)
        return browser

    def cell(self, browser, agent, name):
        """
        @return: The text of one cell, or C{None} while there is none.  It is
            read inside the page in one script call: the page redraws its
            rows every second, and an element found by one WebDriver call
            may be gone (stale) by the next.
        """
        return browser.execute_script(
            "var cell = document.querySelector(arguments[0]);"
            " return cell ? cell.innerText : null;",
            f'tr[data-agent="{agent}"] td.{name}')

    def test_page(self):
        """
        The page shows the session's agents, their addresses, broker and
        figures, and the link between them; while a ping runs, the packet
        figures change without a reload; nothing fails in the page.
        """
        port = lab.free_port()
        ns1, ns2 = Namespace(self.addCleanup), Namespace(self.addCleanup)
        router = self.router("--web-port", str(port), "--record")
        self.assertIn(f"live page on http://127.0.0.1:{port}/", router.text())
        agent1 = self.agent("agent_1", ns1, "--report-interval", "0.5")
        agent2 = self.agent("agent_2", ns2, "--report-interval", "0.5", "--wire", "raw")
        agent1.wait_for(r"routes from the router: 1 destinations \(1 direct\)")
        browser = self.browser()
        browser.get(f"http://127.0.0.1:{port}/")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (
                self.cell(browser, "agent_1", "packets") not in (None, "\u2013")
                and self.cell(browser, "agent_2", "packets") not in (None, "\u2013")):
            time.sleep(0.2)
        self.assertIn("10.2.0.1/32", self.cell(browser, "agent_1", "addr"))
        self.assertEqual(self.cell(browser, "agent_2", "broker"), "127.0.0.1:5672")
        links = browser.execute_script(
            "return Array.from(document.querySelectorAll('#links li'), li => li.innerText);")
        self.assertEqual(links, ["agent_1 \u2194 agent_2"])
        self.assertIn("recording: stream 'ioppy.record'",
                      browser.execute_script(
                          "return document.getElementById('router').innerText;"))

        seen = [self.cell(browser, "agent_1", "packets")]
        ping = subprocess.Popen(["ip", "netns", "exec", ns1.name, "ping", "-c", "25", "-i",
                                 "0.2", "-W", "3", "10.2.0.2"], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        self.addCleanup(lambda: ping.poll() is None and ping.kill())
        deadline = time.monotonic() + 15
        while ping.poll() is None and time.monotonic() < deadline:
            shown = self.cell(browser, "agent_1", "packets")
            if shown != seen[-1]:
                seen.append(shown)
            time.sleep(0.1)
        output, _ = ping.communicate(timeout=15)
        self.assertIn("25 received", output)
        print(f"\n  agent_1 packets in / out, as the page showed them during the ping: "
              f"{' -> '.join(seen)}", flush=True)
        # Reports come every 0.5 s, the page takes one every second: the
        # figures moved several times in the 5 s of the ping.
        self.assertGreaterEqual(len(seen), 3, seen)
        time.sleep(1.5)
        self.assertRegex(self.cell(browser, "agent_1", "last"), r"^[0-9] s ago$")
        shot = os.path.join(os.path.abspath(self.mktemp()) + ".png")
        browser.save_screenshot(shot)
        print(f"  screenshot: {shot}", flush=True)
        self.assertGreater(os.path.getsize(shot), 10_000)
        errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
        self.assertEqual(errors, [])
        self.assertStops(agent1, agent2, router)
