"""
L{ioppy_agent.host.tun.TunPort} on a real TUN device in a namespace of the test's
own: the kernel answers a ping the port writes, and the port reads the reply.
"""

import select
import time

from twisted.internet.testing import MemoryReactor
from twisted.trial.unittest import SynchronousTestCase

from ioppy_agent.host import netlink
from ioppy_agent.model.addressing import make_addresses
from ioppy_agent.host.tun import TunPort, open_tun

from ..lab.packets import echo_request
from .harness import Namespace, require


class RealDeviceTests(SynchronousTestCase):
    """
    The port against the kernel.
    """

    def setUp(self):
        require(self)
        self.ns = Namespace(self.addCleanup)
        self.got = []
        device = open_tun("ioppyt%d")
        self.addCleanup(device.close)
        netlink.move_to_netns(device.name, self.ns.name, "tun0")
        self.addresses = make_addresses("10.77.0.1/24", "bbbb", "1")
        netlink.configure("tun0", self.addresses.all(), 1500, self.ns.name)
        self.port = TunPort(device, self.got.append, MemoryReactor())

    def read_until(self, count, timeout=5.0):
        """
        Let the port read (as the reactor would, when the fd is readable)
        until C{count} packets arrived or C{timeout} passed.
        """
        deadline = time.monotonic() + timeout
        while len(self.got) < count and time.monotonic() < deadline:
            readable, _, _ = select.select([self.port.fileno()], [], [], 0.2)
            if readable:
                self.port.doRead()

    def test_kernel_answers_written_ping(self):
        """
        An echo request written to the TUN reaches the kernel, whose echo
        reply the port reads back as one packet.
        """
        me = self.addresses.ipv4.ip.packed
        peer = bytes([10, 77, 0, 2])
        self.assertTrue(self.port.write_packet(echo_request(peer, me)))
        self.read_until(1)
        replies = [p for p in self.got if p[9] == 1 and p[20] == 0]
        self.assertEqual(len(replies), 1, self.got)
        self.assertEqual((replies[0][12:16], replies[0][16:20]), (me, peer))
        self.assertTrue(replies[0].endswith(b"ioppy-agent"))

    def test_reads_what_host_sends(self):
        """
        A ping sent by the host inside the namespace comes out of the port.
        """
        self.ns.run("ping", "-c", "1", "-W", "1", "10.77.0.2", check=False)
        self.read_until(1)
        requests = [p for p in self.got if p[0] >> 4 == 4 and p[9] == 1 and p[20] == 8]
        self.assertEqual(len(requests), 1, self.got)
        self.assertEqual(requests[0][16:20], bytes([10, 77, 0, 2]))

    def test_non_ip_write_is_a_drop(self):
        """
        Bytes that are not an IP packet are refused by the kernel: counted as
        a drop, not raised.
        """
        self.assertFalse(self.port.write_packet(b"\x00not ip"))
        self.assertEqual(self.port.drops, {"not an IP packet": 1})
        self.assertTrue(self.port.write_packet(echo_request(
            bytes([10, 77, 0, 2]), self.addresses.ipv4.ip.packed)))
        self.read_until(1)
        self.assertEqual(len([p for p in self.got if p[0] >> 4 == 4]), 1)
