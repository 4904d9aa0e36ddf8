"""
Tests for L{ioppy_agent.host.pcap}.
"""

import errno
import os
import struct

from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from ioppy_agent.host.pcap import LINKTYPE_RAW, PcapError, PcapWriter


def read_pcap(path):
    """
    @return: The link type and C{(seconds, microseconds, packet)} records.
    """
    with open(path, "rb") as f:
        data = f.read()
    magic, major, minor, _, _, snaplen, linktype = struct.unpack("<IHHiIII", data[:24])
    assert (magic, major, minor, snaplen) == (0xA1B2C3D4, 2, 4, 65535)
    records, offset = [], 24
    while offset < len(data):
        seconds, micros, included, original = struct.unpack("<IIII", data[offset:offset + 16])
        records.append((seconds, micros, data[offset + 16:offset + 16 + included]))
        offset += 16 + included
    return linktype, records


class PcapWriterTests(SynchronousTestCase):
    """
    L{PcapWriter} writes pcap files of raw IP packets.
    """

    def test_records(self):
        """
        Each packet is a record with its capture time; the file is readable
        after each write, before it is closed.
        """
        clock = Clock()
        clock.advance(1764242400.25)
        path = self.mktemp()
        writer = PcapWriter(path, clock)
        writer.write(b"\x45first")
        self.assertEqual(read_pcap(path), (LINKTYPE_RAW, [(1764242400, 250000, b"\x45first")]))
        clock.advance(1)
        writer.write(b"\x60second")
        writer.close()
        self.assertEqual(read_pcap(path)[1][1], (1764242401, 250000, b"\x60second"))

    def test_cannot_create(self):
        """
        A file that cannot be created is a L{PcapError} naming it.
        """
        path = os.path.join(self.mktemp(), "no", "such.pcap")
        e = self.assertRaises(PcapError, PcapWriter, path, Clock())
        self.assertIn(path, str(e))

    def test_write_failure_ends_capture(self):
        """
        A failed write is logged once and ends the capture; nothing raises.
        """
        class Full:
            def write(self, data):
                raise OSError(errno.ENOSPC, "No space left on device")

        writer = PcapWriter(self.mktemp(), Clock())
        writer._file.close()
        writer._file = Full()
        with capturedLogs() as events:
            writer.write(b"\x45")
            writer.write(b"\x45")
        self.assertTrue(writer.broken)
        self.assertEqual(len(events), 1)
