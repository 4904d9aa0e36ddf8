"""
Tests for L{ioppy_agent.model.addressing}.
"""

import ipaddress

from twisted.trial.unittest import SynchronousTestCase

from ioppy_agent.model.addressing import (BadAddress, check_name, default_addresses,
                                          make_addresses, name_number, parse_ipv4)


class NameTests(SynchronousTestCase):
    """
    Agent names are checked because they go into routing keys.
    """

    def test_accepted(self):
        """
        Letters, digits, C{_} and C{-} are accepted.
        """
        for name in ("agent_1", "agent-TT", "A", "x" * 64):
            self.assertEqual(check_name(name), name)

    def test_refused(self):
        """
        Topic wildcards, dots, spaces, empty and over-long names are refused
        with a message that says what is allowed.
        """
        for name in ("#", "*", "a.b", "", "a b", "x" * 65, "agent/1", "é", None):
            e = self.assertRaises(BadAddress, check_name, name)
            self.assertIn("letters, digits", str(e))

    def test_number(self):
        """
        The number at the end of a name is found.
        """
        self.assertEqual(name_number("agent_12"), 12)
        self.assertIsNone(name_number("agent_TT"))


class DefaultAddressTests(SynchronousTestCase):
    """
    L{default_addresses} derives addresses from C{agent_N}.
    """

    def test_numbered(self):
        """
        C{agent_2} gets 10.2.0.2/24, bbbb::2/64 and fe80::2/64.
        """
        a = default_addresses("agent_2")
        self.assertEqual([str(x) for x in a.all()],
                         ["10.2.0.2/24", "bbbb::2/64", "fe80::2/64"])

    def test_overrides(self):
        """
        Given values replace the derived ones.
        """
        a = default_addresses("agent_2", "192.0.2.7/28", "cccc:1", "a")
        self.assertEqual([str(x) for x in a.all()],
                         ["192.0.2.7/28", "cccc:1::a/64", "fe80::a/64"])

    def test_no_number(self):
        """
        A name without a number and no addresses is a clear error.
        """
        e = self.assertRaises(BadAddress, default_addresses, "agent_TT")
        self.assertIn("--ipv4", str(e))

    def test_no_number_with_addresses(self):
        """
        A name without a number works when the addresses are given.
        """
        a = default_addresses("agent_TT", "10.2.0.99/24", None, "99")
        self.assertEqual(str(a.ipv6), "bbbb::99/64")

    def test_number_out_of_range(self):
        """
        C{agent_300} cannot get 10.2.0.300.
        """
        self.assertRaises(BadAddress, default_addresses, "agent_300")
        self.assertRaises(BadAddress, default_addresses, "agent_0")


class ParseTests(SynchronousTestCase):
    """
    Address text is checked.
    """

    def test_bare_ipv4_gets_24(self):
        """
        A bare IPv4 address gets /24.
        """
        self.assertEqual(parse_ipv4("10.2.0.5"), ipaddress.IPv4Interface("10.2.0.5/24"))

    def test_bad_ipv4(self):
        """
        Junk, and network or broadcast addresses, are refused.
        """
        for text in ("10.2.0", "banana", "10.2.0.1/33", "10.2.0.0/24", "10.2.0.255/24"):
            self.assertRaises(BadAddress, parse_ipv4, text)

    def test_old_api_leading_colon(self):
        """
        ioppytest's old API sends the IPv6 host as C{":1"}; the colon is
        stripped.
        """
        self.assertEqual(str(make_addresses("10.2.0.1/24", "bbbb", ":1").ipv6), "bbbb::1/64")

    def test_bad_ipv6(self):
        """
        Prefix and host that do not make an IPv6 address are refused.
        """
        for prefix, host in (("zzzz", "1"), ("bbbb", "1::2"), ("", "1"), ("bbbb", "")):
            self.assertRaises(BadAddress, make_addresses, "10.2.0.1/24", prefix, host)

    def test_started_fields(self):
        """
        The fields announced in C{tun.started} use ioppytest's names and forms.
        """
        self.assertEqual(default_addresses("agent_1").started_fields(), {
            "ipv4_host": "10.2.0.1", "ipv4_network": "10.2.0.0",
            "ipv4_netmask": "255.255.255.0", "ipv6_prefix": "bbbb", "ipv6_host": ":1",
            "ipv6_no_forwarding": False})
