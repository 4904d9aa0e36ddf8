"""
Tests for L{ioppy_agent.host.tun} against an in-memory device.
"""

import errno

from twisted.internet.testing import MemoryReactor
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

import pytun

from ioppy_agent.host import tun
from ioppy_agent.testing import MemoryTunDevice


class TunPortTests(SynchronousTestCase):
    """
    L{tun.TunPort} reads and writes packets.
    """

    def setUp(self):
        self.reactor = MemoryReactor()
        self.device = MemoryTunDevice()
        self.got = []
        self.port = tun.TunPort(self.device, self.got.append, self.reactor, mtu=1500)

    def test_start_reading_registers(self):
        """
        C{startReading} registers the port with the reactor as a reader.
        """
        self.port.startReading()
        self.assertIn(self.port, self.reactor.getReaders())

    def test_reads_all_waiting(self):
        """
        One C{doRead} hands every waiting packet to the handler, in order.
        """
        self.device.inbound.extend([b"\x45one", b"\x60two"])
        self.port.doRead()
        self.assertEqual(self.got, [b"\x45one", b"\x60two"])

    def test_read_cap(self):
        """
        One C{doRead} takes at most C{max_packets_per_read} packets; the rest
        wait for the next reactor turn.
        """
        self.port.max_packets_per_read = 3
        self.device.inbound.extend(bytes([i]) for i in range(5))
        self.port.doRead()
        self.assertEqual(len(self.got), 3)
        self.port.doRead()
        self.assertEqual(len(self.got), 5)

    def test_batch_done_after_each_read(self):
        """
        C{batch_done} is called once after each C{doRead} that handed
        packets to the handler, after the last of them, and not after a read
        that found nothing.
        """
        calls = []
        port = tun.TunPort(self.device, self.got.append, self.reactor,
                           batch_done=lambda: calls.append(len(self.got)))
        port.max_packets_per_read = 2
        self.device.inbound.extend([b"\x45a", b"\x45b", b"\x45c"])
        port.doRead()
        port.doRead()
        port.doRead()
        self.assertEqual(calls, [2, 3])

    def test_batch_done_error_contained(self):
        """
        An exception from C{batch_done} is logged; reading goes on.
        """
        def fail():
            raise RuntimeError("flush failed")

        port = tun.TunPort(self.device, self.got.append, self.reactor, batch_done=fail)
        self.device.inbound.append(b"\x45a")
        with capturedLogs() as events:
            port.doRead()
        self.device.inbound.append(b"\x45b")
        with capturedLogs():
            port.doRead()
        self.assertEqual(self.got, [b"\x45a", b"\x45b"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 2)
        self.assertIn("finishing a batch", events[0]["log_format"])

    def test_read_size_is_mtu(self):
        """
        Reads ask for up to the MTU.
        """
        port = tun.TunPort(self.device, self.got.append, self.reactor, mtu=600)
        self.device.inbound.append(b"x" * 700)
        port.doRead()
        self.assertEqual(len(self.got[0]), 600)

    def test_handler_error_contained(self):
        """
        A handler that raises loses that packet only; it is logged.
        """
        def handler(packet):
            if packet == b"bad":
                raise ValueError(packet)
            self.got.append(packet)

        self.port.handler = handler
        self.device.inbound.extend([b"bad", b"good"])
        with capturedLogs():
            self.port.doRead()
        self.assertEqual(self.got, [b"good"])
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)

    def test_write(self):
        """
        C{write_packet} hands the packet to the device.
        """
        self.assertTrue(self.port.write_packet(b"\x45abc"))
        self.assertEqual(self.device.written, [b"\x45abc"])

    def test_write_errors_are_drops(self):
        """
        EAGAIN, ENOBUFS and EINVAL from the kernel drop that packet only and
        are counted by reason.
        """
        self.device.write_errors.extend([errno.EAGAIN, errno.ENOBUFS, errno.EINVAL])
        for _ in range(3):
            self.assertFalse(self.port.write_packet(b"\x45"))
        self.assertTrue(self.port.write_packet(b"\x45ok"))
        self.assertEqual(self.port.drops, {"kernel queue full": 1, "no buffer space": 1,
                                           "not an IP packet": 1})
        self.assertEqual(self.device.written, [b"\x45ok"])

    def test_unknown_write_error_warns(self):
        """
        An unexpected error is a drop too, logged as a warning.
        """
        self.device.write_errors.append(errno.EPERM)
        with capturedLogs() as events:
            self.assertFalse(self.port.write_packet(b"\x45"))
        self.assertEqual(sum(self.port.drops.values()), 1)
        self.assertTrue(any("failed" in e["log_format"] for e in events))

    def test_close(self):
        """
        C{close} stops reading and closes the device; a second close is
        harmless.
        """
        self.port.startReading()
        self.port.close()
        self.port.close()
        self.assertTrue(self.device.closed)
        self.assertNotIn(self.port, self.reactor.getReaders())
        self.assertEqual(self.port.fileno(), -1)


class OpenTests(SynchronousTestCase):
    """
    L{tun.open_tun} explains why a device cannot be opened.
    """

    def _fail_with(self, code):
        def refuse(**kwargs):
            raise pytun.Error(code, "refused")

        self.patch(pytun, "TunTapDevice", refuse)
        return self.assertRaises(tun.TunError, tun.open_tun, "tun0")

    def test_missing_device_node(self):
        """
        A missing /dev/net/tun names the mknod command.
        """
        self.assertIn("mknod /dev/net/tun c 10 200", str(self._fail_with(errno.ENOENT)))

    def test_not_root(self):
        """
        Permission errors say to run as root or with CAP_NET_ADMIN.
        """
        for code in (errno.EPERM, errno.EACCES):
            self.assertIn("CAP_NET_ADMIN", str(self._fail_with(code)))

    def test_busy(self):
        """
        A name in use points to --tun-name.
        """
        self.assertIn("--tun-name", str(self._fail_with(errno.EBUSY)))

    def test_bad_names(self):
        """
        Names the kernel cannot take are refused before trying.
        """
        for name in ("x" * 16, "", "a/b", "a b"):
            self.assertRaises(tun.TunError, tun.open_tun, name)
