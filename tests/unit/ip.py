"""
IP packets for the unit tests: headers good enough for routing decisions.
"""

import ipaddress
import struct


def ipv4(source, destination, payload=b"ping"):
    """
    @return: An IPv4 packet (protocol ICMP) from C{source} to C{destination}.
    """
    return (struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(payload), 0, 0, 64, 1, 0)
            + ipaddress.IPv4Address(source).packed + ipaddress.IPv4Address(destination).packed
            + payload)


def ipv6(source, destination, next_header=58, payload=b"ping"):
    """
    @return: An IPv6 packet from C{source} to C{destination}.
    """
    return (struct.pack("!IHBB", 6 << 28, len(payload), next_header, 64)
            + ipaddress.IPv6Address(source).packed + ipaddress.IPv6Address(destination).packed
            + payload)
