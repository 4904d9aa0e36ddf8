"""
pcapng, as tshark and Wireshark read it: a section header, one interface
description per agent (link type raw IP, named after the agent), and an
enhanced packet block per packet with the time it entered the bus, in
microseconds.  An agent's interface is described just before its first
packet, so a file written while the session runs (C{--follow}) is valid up
to its last block.
"""

import struct

from .. import __version__
from ..host.pcap import LINKTYPE_RAW

SNAPLEN = 0  # no limit
_SHB, _IDB, _EPB = 0x0A0D0D0A, 0x00000001, 0x00000006
_BYTE_ORDER = 0x1A2B3C4D
_OPT_END, _OPT_COMMENT = 0, 1
_SHB_USERAPPL = 4
_IF_NAME, _IF_DESCRIPTION, _IF_TSRESOL = 2, 3, 9


def _option(code, value):
    if isinstance(value, str):
        value = value.encode("utf-8")
    return struct.pack("<HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def _block(kind, body):
    length = 12 + len(body)
    return struct.pack("<II", kind, length) + body + struct.pack("<I", length)


class PcapngWriter:
    """
    Writes one pcapng section to a binary file.

    @ivar interfaces: Agent name to its interface id, in the order they
        first sent.
    @ivar packets: Packets written.
    """

    def __init__(self, out, flush=False, comment=None):
        """
        @param out: A binary file; the section header is written at once.
        @param flush: Flush after every packet (for a live reader on a pipe).
        @param comment: A comment for the section (what was captured).
        """
        self._out = out
        self._flush = flush
        self.interfaces = {}
        self.packets = 0
        options = _option(_SHB_USERAPPL, f"ioppy-capture {__version__}")
        if comment:
            options += _option(_OPT_COMMENT, comment)
        options += _option(_OPT_END, b"")
        out.write(_block(_SHB, struct.pack("<IHHq", _BYTE_ORDER, 1, 0, -1) + options))
        if flush:
            out.flush()

    def _interface(self, agent):
        options = (_option(_IF_NAME, agent)
                   + _option(_IF_DESCRIPTION, f"packets agent {agent} sent into the bus")
                   + _option(_IF_TSRESOL, b"\x06") + _option(_OPT_END, b""))
        self._out.write(_block(_IDB, struct.pack("<HHI", LINKTYPE_RAW, 0, SNAPLEN) + options))
        number = self.interfaces[agent] = len(self.interfaces)
        return number

    def write(self, agent, time, packet):
        """
        Write one packet that C{agent} sent at C{time} (seconds since the
        epoch).
        """
        number = self.interfaces.get(agent)
        if number is None:
            number = self._interface(agent)
        micros = int(round(time * 1e6))
        body = (struct.pack("<IIIII", number, micros >> 32, micros & 0xFFFFFFFF,
                            len(packet), len(packet))
                + packet + b"\0" * (-len(packet) % 4))
        self._out.write(_block(_EPB, body))
        self.packets += 1
        if self._flush:
            self._out.flush()
