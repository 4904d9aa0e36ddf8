"""
Packets built byte by byte, for the tests and the hostile broker to send.
"""

import struct


def checksum(data):
    """
    @return: The Internet checksum of C{data}.
    """
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def echo_request(source, destination, ident=0x1D, seq=1, payload=b"ioppy-agent"):
    """
    @param source: The source address, 4 bytes.
    @param destination: The destination address, 4 bytes.
    @return: An IPv4 ICMP echo request, checksums filled in.
    """
    icmp = struct.pack("!BBHHH", 8, 0, 0, ident, seq & 0xFFFF) + payload
    icmp = icmp[:2] + struct.pack("!H", checksum(icmp)) + icmp[4:]
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), 0, 0, 64, 1, 0,
                         bytes(source), bytes(destination))
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    return header + icmp
