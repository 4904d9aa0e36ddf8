"""
Tests for L{ioppy_agent.model.routes}: addresses in packets, owners of addresses,
and the source check.
"""

import ipaddress

from twisted.trial.unittest import SynchronousTestCase

from ioppy_agent.model.addressing import BadAddress
from ioppy_agent.model.routes import Directory, addresses_of, is_group, network, source_allowed

from .ip import ipv4, ipv6


def packed(text):
    return ipaddress.ip_address(text).packed


class PacketTests(SynchronousTestCase):
    """
    Addresses read from packets.
    """

    def test_addresses(self):
        """
        Version, source and destination of IPv4 and IPv6 packets, as bytes.
        """
        self.assertEqual(addresses_of(ipv4("10.2.0.1", "10.2.0.2")),
                         (4, packed("10.2.0.1"), packed("10.2.0.2")))
        self.assertEqual(addresses_of(ipv6("bbbb::1", "ff02::1")),
                         (6, packed("bbbb::1"), packed("ff02::1")))

    def test_short_or_not_ip(self):
        """
        Packets too short for their header, or not IP, have no addresses.
        """
        self.assertIsNone(addresses_of(ipv4("10.2.0.1", "10.2.0.2")[:19]))
        self.assertIsNone(addresses_of(ipv6("::1", "::2")[:39]))
        self.assertIsNone(addresses_of(b"\x00" * 40))

    def test_groups(self):
        """
        Multicast and broadcast destinations: IPv4 224/3, IPv6 ff00::/8.
        """
        for text, group in (("224.0.0.1", True), ("255.255.255.255", True),
                            ("10.2.0.2", False), ("ff02::16", True), ("fe80::1", False)):
            address = ipaddress.ip_address(text)
            self.assertEqual(is_group(address.version, address.packed), group, text)


class DirectoryTests(SynchronousTestCase):
    """
    Who owns which address.
    """

    def setUp(self):
        self.directory = Directory([
            ("agent_1", ["10.2.0.1/32", "bbbb::1/128", "cccc::/64"]),
            ("agent_2", ["10.2.0.2", "cccc::2:0/112", "192.168.0.0/16"])])

    def owner(self, text):
        address = ipaddress.ip_address(text)
        return self.directory.owner(address.version, address.packed)

    def test_hosts(self):
        """
        Host addresses, /32 and /128, or bare.
        """
        self.assertEqual([self.owner(a) for a in ("10.2.0.1", "bbbb::1", "10.2.0.2")],
                         ["agent_1", "agent_1", "agent_2"])

    def test_longest_prefix(self):
        """
        Prefixes match by the longest one.
        """
        self.assertEqual([self.owner(a) for a in ("cccc::5", "cccc::2:5", "192.168.4.4")],
                         ["agent_1", "agent_2", "agent_2"])

    def test_nobody(self):
        """
        An address nobody owns has no owner.
        """
        self.assertEqual([self.owner(a) for a in ("10.2.0.3", "dddd::1", "8.8.8.8")],
                         [None, None, None])

    def test_interfaces_are_hosts(self):
        """
        An interface address stands for its host, not its subnet.
        """
        directory = Directory([("a", [ipaddress.ip_interface("10.2.0.1/24")])])
        self.assertEqual(directory.owner(4, packed("10.2.0.1")), "a")
        self.assertIsNone(directory.owner(4, packed("10.2.0.9")))

    def test_bad_network(self):
        """
        Text that is no address is refused.
        """
        self.assertRaises(BadAddress, network, "banana")


class SourceTests(SynchronousTestCase):
    """
    The source check.
    """

    directory = Directory([("agent_1", ["10.2.0.1", "bbbb::1", "fe80::1", "cccc::/64"])])

    def allowed(self, packet):
        version, source, _ = addresses_of(packet)
        return source_allowed(self.directory, "agent_1", packet, version, source)

    def test_own_addresses_and_prefixes(self):
        """
        The sender's hosts and routed prefixes are allowed; others are not.
        """
        self.assertTrue(self.allowed(ipv4("10.2.0.1", "10.2.0.2")))
        self.assertTrue(self.allowed(ipv6("cccc::77", "bbbb::2")))
        self.assertFalse(self.allowed(ipv4("10.2.0.3", "10.2.0.2")))
        self.assertFalse(self.allowed(ipv6("bbbb::3", "bbbb::2")))

    def test_unspecified(self):
        """
        The unspecified IPv6 source is allowed for ICMPv6 and hop-by-hop
        packets (duplicate-address detection, MLD), not for others.
        """
        self.assertTrue(self.allowed(ipv6("::", "ff02::1:ff00:1", next_header=58)))
        self.assertTrue(self.allowed(ipv6("::", "ff02::16", next_header=0)))
        self.assertFalse(self.allowed(ipv6("::", "bbbb::2", next_header=17)))
