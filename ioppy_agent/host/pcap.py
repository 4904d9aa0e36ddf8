"""
Packet capture in the classic pcap format, link type "raw IP", which
tshark, tcpdump and Wireshark read.

Each packet is written with one C{write} call on an unbuffered file, so a
reader sees the file valid up to the last whole packet while it grows.
"""

import struct

from twisted.logger import Logger

PCAP_MAGIC = 0xA1B2C3D4
LINKTYPE_RAW = 101  # "raw IP": the packet starts with its IP header; pcapng too
SNAPLEN = 65535


class PcapError(Exception):
    """
    The capture file cannot be written.
    """


class PcapWriter:
    """
    Appends packets to a pcap file with their capture time.
    """

    _log = Logger()

    def __init__(self, path, clock):
        """
        Create (or truncate) C{path} and write the file header.

        @raise PcapError: if the file cannot be created.
        """
        self.path = path
        self._clock = clock
        try:
            self._file = open(path, "wb", buffering=0)
            self._file.write(struct.pack("<IHHiIII", PCAP_MAGIC, 2, 4, 0, 0, SNAPLEN,
                                         LINKTYPE_RAW))
        except OSError as e:
            raise PcapError(f"cannot write the capture file {path}: "
                            f"{e.strerror or e}") from None
        self.broken = False

    def write(self, packet):
        """
        Append one packet.  A failed write (disk full, say) is logged once
        and ends the capture; it never stops the tunnel.
        """
        if self.broken:
            return
        now = self._clock.seconds()
        seconds = int(now)
        record = struct.pack("<IIII", seconds, int((now - seconds) * 1e6),
                             len(packet), len(packet))
        try:
            self._file.write(record + packet)
        except OSError as e:
            self.broken = True
            self._log.error("capture to {path} stopped: {error}", path=self.path,
                            error=e.strerror or str(e))

    def close(self):
        self._file.close()
