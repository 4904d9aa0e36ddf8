"""
The TUN device and the reactor port that reads and writes it.

The device is opened with python-pytun (C{IFF_TUN | IFF_NO_PI}: each read
is one bare IP packet) and switched to non-blocking mode.  L{TunPort} is an
L{IReadDescriptor}: the reactor calls L{TunPort.doRead} when packets are
waiting, and it hands each one to a callable.
"""

import errno
import fcntl
import os

from twisted.internet import abstract, error
from twisted.python import failure
from twisted.internet.interfaces import IReadDescriptor
from twisted.logger import Logger
from zope.interface import Interface, implementer

import pytun

IFNAMSIZ = 16


class TunError(Exception):
    """
    The TUN device could not be opened or used.  The message says why and
    what to do about it.
    """


class ITunDevice(Interface):
    """
    An open TUN device: one IP packet per read or write.
    """

    def fileno():
        """
        @return: The file descriptor, for the reactor.
        """

    def read(size):
        """
        @return: One packet of at most C{size} bytes.
        @raise BlockingIOError: if no packet is waiting.
        """

    def write(packet):
        """
        Send one packet to the kernel.

        @raise OSError: C{EAGAIN}, C{ENOBUFS}, C{EINVAL} (not IP) and others.
        """

    def close():
        """
        Close the device; a non-persistent interface disappears.
        """


_OPEN_ERRORS = {
    errno.ENOENT: "{path} does not exist; create it with 'mknod {path} c 10 200' "
                  "(and load the tun module)",
    errno.ENODEV: "the kernel has no TUN support; load it with 'modprobe tun'",
    errno.EACCES: "permission denied; run as root (sudo) or give the program "
                  "CAP_NET_ADMIN",
    errno.EPERM: "operation not permitted; run as root (sudo) or give the "
                 "program CAP_NET_ADMIN",
    errno.EBUSY: "interface {name} is already in use by another program; choose "
                 "another with --tun-name",
    errno.EINVAL: "the kernel refused the interface name {name!r}",
}


@implementer(ITunDevice)
class TunDevice:
    """
    A TUN interface opened through python-pytun, in non-blocking mode.

    @ivar name: The interface name the kernel gave it.
    """

    def __init__(self, device):
        self._device = device
        self._fd = device.fileno()
        self.name = device.name

    def fileno(self):
        return self._fd

    def read(self, size):
        return os.read(self._fd, size)

    def write(self, packet):
        return os.write(self._fd, packet)

    def close(self):
        self._device.close()


def open_tun(name, path="/dev/net/tun"):
    """
    Open a TUN interface called C{name} (a C{%d} in it lets the kernel pick a
    free number).

    @return: A L{TunDevice}.
    @raise TunError: with an explanation of what to fix.
    """
    if len(name.encode("utf-8")) >= IFNAMSIZ or not name or "/" in name or " " in name:
        raise TunError(f"interface name {name!r} is not valid: use 1 to "
                       f"{IFNAMSIZ - 1} characters without '/' or spaces")
    try:
        device = pytun.TunTapDevice(name=name, flags=pytun.IFF_TUN | pytun.IFF_NO_PI,
                                    dev=path)
    except OSError as e:
        hint = _OPEN_ERRORS.get(e.errno)
        why = hint.format(path=path, name=name) if hint else str(e)
        raise TunError(f"cannot open TUN interface {name!r}: {why}") from None
    flags = fcntl.fcntl(device.fileno(), fcntl.F_GETFL)
    fcntl.fcntl(device.fileno(), fcntl.F_SETFL, flags | os.O_NONBLOCK)
    return TunDevice(device)


# Errors on writing one packet that lose that packet and nothing else.
_WRITE_DROPS = {
    errno.EAGAIN: "kernel queue full",
    errno.ENOBUFS: "no buffer space",
    errno.EINVAL: "not an IP packet",
    errno.EIO: "interface down",
    errno.EMSGSIZE: "too large",
    errno.EFAULT: "rejected by kernel",
}


@implementer(IReadDescriptor)
class TunPort(abstract.FileDescriptor):
    """
    Reads packets from a L{ITunDevice} when the reactor says they are
    waiting, and writes packets to it.

    @ivar max_packets_per_read: How many packets one L{doRead} takes before
        it returns to the reactor, so that a busy TUN cannot starve the AMQP
        socket.
    @ivar drops: Packets lost on writing, by reason.
    """

    _log = Logger()
    max_packets_per_read = 64

    def __init__(self, device, handler, reactor, mtu=1500, batch_done=None):
        """
        @param device: An open L{ITunDevice}.
        @param handler: Called with each packet read, as C{bytes}.
        @param reactor: An L{IReactorFDSet}.
        @param mtu: The interface MTU; reads take up to C{mtu} bytes, so a
            longer packet is cut (the kernel never sends one).
        @param batch_done: Called with no arguments after each L{doRead} that
            handed at least one packet to C{handler}, or C{None}.
        """
        abstract.FileDescriptor.__init__(self, reactor)
        self.device = device
        self.handler = handler
        self.batch_done = batch_done
        self.read_size = max(mtu, 68)
        self.drops = {}
        self.connected = 1

    def fileno(self):
        return self.device.fileno() if self.device is not None else -1

    def doRead(self):
        """
        Read up to L{max_packets_per_read} packets and hand each to the
        handler.  An exception from the handler is logged and loses only that
        packet.
        """
        read = self.device.read
        handler = self.handler
        size = self.read_size
        handled = 0
        for _ in range(self.max_packets_per_read):
            try:
                packet = read(size)
            except BlockingIOError:
                break
            except InterruptedError:
                continue
            except OSError as e:
                self._log.error("reading the TUN interface failed: {error}",
                                error=e.strerror or e)
                break
            handled += 1
            try:
                handler(packet)
            except Exception:
                self._log.failure("handling a packet read from the TUN failed")
        if handled and self.batch_done is not None:
            try:
                self.batch_done()
            except Exception:
                self._log.failure("finishing a batch of packets read from the TUN failed")
        return None

    def write_packet(self, packet):
        """
        Write one packet to the TUN interface.  A packet the kernel refuses is
        counted in L{drops} and logged at debug level; it is never fatal.

        @return: C{True} if the kernel took the packet.
        """
        try:
            self.device.write(packet)
        except OSError as e:
            reason = _WRITE_DROPS.get(e.errno)
            if reason is None:
                reason = e.strerror or str(e)
                self._log.warn("writing a packet to the TUN failed: {error}", error=reason)
            else:
                self._log.debug("packet dropped by the TUN: {reason}", reason=reason)
            self.drops[reason] = self.drops.get(reason, 0) + 1
            return False
        return True

    def connectionLost(self, reason):
        """
        Close the device: the interface disappears.
        """
        abstract.FileDescriptor.connectionLost(self, reason)
        if self.device is not None:
            self.device.close()
            self.device = None

    def logPrefix(self):
        return "TunPort"

    def close(self):
        """
        Stop reading and close the device now.
        """
        if self.device is not None:
            self.connectionLost(failure.Failure(error.ConnectionDone()))
