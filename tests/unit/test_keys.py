"""
Tests for L{ioppy_agent.model.keys}: the one grammar of the bus's names.
"""

import re

from twisted.trial.unittest import SynchronousTestCase

from ioppy_agent.model import keys

from ..helpers import fixture


class BuildTests(SynchronousTestCase):
    """
    Keys built from a kind and a name.
    """

    def test_ioppytest_keys(self):
        """
        The keys ioppytest's library knows are spelt as its fixtures spell
        them.
        """
        self.assertEqual(keys.packet_from("agent_1"), fixture(
            "fromAgent.agent_1.ip.tun.packet.raw")["routing_key"])
        self.assertEqual(keys.tun_started("agent_1"), fixture(
            "fromAgent.agent_1.ip.tun.started")["routing_key"])
        self.assertEqual(keys.tun_start("agent_1"), fixture(
            "toAgent.agent_1.ip.tun.start")["routing_key"])
        self.assertEqual(keys.packet_to("agent_2"), fixture(
            "toAgent.agent_2.ip.tun.packet.raw")["routing_key"])
        for name in ("testingtool.component.ready", "testingtool.component.shutdown",
                     "routing.lossy.link.start"):
            self.assertIn(fixture(name)["routing_key"], keys.FIXED)

    def test_own_keys_outside_ioppytest(self):
        """
        ioppy's own messages are under C{ioppy.}, out of C{fromAgent.#} and
        C{toAgent.#}.
        """
        for make in (keys.routes, keys.bound, keys.stats, keys.inbox):
            key = make("agent_1")
            self.assertTrue(key.startswith("ioppy."), key)
            self.assertTrue(key.endswith(".agent_1"), key)

    def test_names(self):
        """
        Queue and exchange names.
        """
        self.assertEqual(keys.agent_queue("agent_1"), "ioppy.agent.agent_1")
        self.assertEqual(keys.agent_queue("agent_1", "ab12"), "ioppy.agent.agent_1.ab12")
        self.assertEqual(keys.inbox("agent_2"), "ioppy.to.agent_2")
        self.assertEqual(keys.any_of(keys.PACKET_FROM), "fromAgent.*.ip.tun.packet.raw")


class ParseTests(SynchronousTestCase):
    """
    L{keys.parse} reads back every key built, and nothing else.
    """

    def test_round_trip(self):
        """
        Each kind of key, built for a name, parses back to that kind and name.
        """
        for kind in keys.TEMPLATES:
            for name in ("agent_1", "a", "agent-TT"):
                self.assertEqual(keys.parse(keys.key(kind, name)), keys.Key(kind, name))
        for key, kind in keys.FIXED.items():
            self.assertEqual(keys.parse(key), keys.Key(kind))

    def test_not_keys(self):
        """
        Keys of no kind, an empty or dotted name, and bindings' wildcards
        parse to C{None}.
        """
        for key in ("fromAgent..ip.tun.packet.raw", "fromAgent.a.b.ip.tun.packet.raw",
                    "fromAgent.*.ip.tun.packet.raw", "fromAgent.#.ip.tun.packet.raw",
                    "fromAgent.agent_1.ip.tun.packet.to.agent_2",
                    "fromAgent.agent_1.ip.tun.stats", "toAgent.agent_1.ip.tun.routes",
                    "fromAgent.agent_1", "ioppy.routes.", "testingtool.component",
                    "", "."):
            self.assertIsNone(keys.parse(key), key)


class PatternTests(SynchronousTestCase):
    """
    L{keys.pattern}: the regular expressions permissions are made of.
    """

    def test_one_agent(self):
        """
        For a name, the pattern takes that agent's key and no other's.
        """
        template = keys.TEMPLATES[keys.PACKET_FROM]
        pattern = re.compile("^" + keys.pattern(template, "agent_1") + "$")
        self.assertTrue(pattern.match("fromAgent.agent_1.ip.tun.packet.raw"))
        for other in ("fromAgent.agent_10.ip.tun.packet.raw",
                      "fromAgent.agent_1.ip.tun.packetxraw",
                      "fromAgent.agent.1.ip.tun.packet.raw"):
            self.assertIsNone(pattern.match(other), other)

    def test_any_agent(self):
        """
        Without a name, the pattern takes every agent's key, and the
        binding with C{*}, but no name with a dot in it.
        """
        pattern = re.compile("^" + keys.pattern(keys.TEMPLATES[keys.INBOX]) + "$")
        for name in ("ioppy.to.agent_1", "ioppy.to.*"):
            self.assertTrue(pattern.match(name), name)
        self.assertIsNone(pattern.match("ioppy.to.a.b"))
        self.assertEqual(keys.pattern(keys.STEER), r"ioppy\.steer")
