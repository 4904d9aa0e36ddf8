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


def reply_to(packet):
    """
    @return: C{packet} with its source and destination swapped (an IPv4 or
        IPv6 header): what the peer would send back.  The checksums still
        hold, their sums being the same.
    """
    if packet[0] >> 4 == 4:
        return packet[:12] + packet[16:20] + packet[12:16] + packet[20:]
    return packet[:8] + packet[24:40] + packet[8:24] + packet[40:]
