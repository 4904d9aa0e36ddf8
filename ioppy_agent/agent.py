"""
The agent: one TUN interface joined to the bus.

Packets the host sends into the TUN go to
C{fromAgent.<name>.ip.tun.packet.raw}; packets consumed from
C{toAgent.<name>.ip.tun.packet.raw} are written into the TUN.
"""

import os
from dataclasses import dataclass
from typing import Any, Optional

from twisted.application import service
from twisted.internet import defer
from twisted.logger import Logger

from . import netlink, wire
from .addressing import BadAddress, TunAddresses, make_addresses
from .amqp import DEFAULT_HEARTBEAT, BusConnector, FatalBusError
from .pcap import PcapError, PcapWriter
from .process import EXIT_DUPLICATE, EXIT_FAILURE
from .stats import Counters, Reporter, WarnLimiter, status_of, summary_line
from .tun import TunError, TunPort, open_tun
from .url import BrokerURL

# How long the orderly disconnect may wait for the broker, in seconds.
CLOSE_TIMEOUT = 1.0


@dataclass(frozen=True)
class AgentConfig:
    """
    Everything an agent needs to know, already validated.
    """

    name: str
    url: BrokerURL
    addresses: TunAddresses
    exchange: str = "amq.topic"
    mtu: int = 1500
    tun_name: str = "tun0"
    netns: Optional[str] = None
    heartbeat: int = DEFAULT_HEARTBEAT
    tls: Any = None
    fallback_urls: tuple = ()
    stats_interval: float = 60.0
    status_file: Optional[str] = None
    status_interval: float = 5.0
    pcap: Optional[str] = None
    wire: str = "json"

    @property
    def queue(self):
        """
        @return: The name of the agent's own queue.
        """
        return f"ioppy.agent.{self.name}"


class Interface:
    """
    Opens and configures the TUN interface, in this network namespace or
    another one.  The netlink and opening functions are injectable for tests.
    """

    def __init__(self, config, open_tun=open_tun, links=netlink):
        self.config = config
        self._open_tun = open_tun
        self._links = links

    def open(self):
        """
        @return: The open device, configured and up.
        @raise TunError: or L{netlink.NetlinkFailure}, with the reason.
        """
        config = self.config
        if config.netns:
            netlink.require_netns(config.netns, self._links.netns_exists)
        # In another namespace the final name may be free there but taken here,
        # so the device is created under a kernel-chosen name and renamed on
        # arrival.
        device = self._open_tun("ioppy%d" if config.netns else config.tun_name)
        try:
            if config.netns:
                self._links.move_to_netns(device.name, config.netns, config.tun_name)
                device.name = config.tun_name
            self.configure(config.addresses)
        except Exception:
            device.close()
            raise
        return device

    def configure(self, addresses):
        """
        Give the interface C{addresses}, the MTU, and bring it up.
        """
        self._links.configure(self.config.tun_name, addresses.all(), self.config.mtu,
                              self.config.netns)


class AgentService(service.Service):
    """
    The agent: a L{TunPort} on one side, a L{BusConnector} on the other.

    The TUN is opened in L{privilegedStartService} (which twistd runs before
    dropping privileges), or in L{startService} if that did not run.

    @ivar counters: Packets and bytes moved, and drops by reason.
    """

    _log = Logger()
    _geteuid = staticmethod(os.geteuid)

    def __init__(self, reactor, config, process, interface=None,
                 make_connector=BusConnector):
        """
        @param reactor: The reactor (L{IReactorFDSet}, L{IReactorTime} and
            L{IReactorTCP}).
        @param config: An L{AgentConfig}.
        @param process: A L{ioppy_agent.process.ProcessControl}.
        @param interface: An L{Interface} (made from C{config} if not given).
        @param make_connector: Builds the L{BusConnector}.
        """
        self.name = f"ioppy-agent {config.name}"
        self.config = config
        self.addresses = config.addresses
        self._reactor = reactor
        self._process = process
        self._interface = interface if interface is not None else Interface(config)
        self.connector = make_connector(
            reactor, config.url, config.exchange, self._setup, self._fatal,
            heartbeat=config.heartbeat, connection_name=f"ioppy-agent {config.name}",
            tls=config.tls, fallback_urls=config.fallback_urls)
        self.port = None
        self.pcap = None
        self._open_error = None
        self.counters = Counters()
        self.reporter = Reporter(reactor, self._describe, config.stats_interval,
                                 config.status_file, config.status_interval)
        self._warnings = WarnLimiter(reactor, self._log)
        self._key_out = wire.packet_from(config.name)
        self._key_in = wire.packet_to(config.name)
        self._key_start = wire.tun_start(config.name)
        self._raw = config.wire == "raw"

    def privilegedStartService(self):
        service.Service.privilegedStartService(self)
        self._open()

    def _open(self):
        self.connector.prepare()
        try:
            if self.config.pcap and self.pcap is None:
                self.pcap = PcapWriter(self.config.pcap, self._reactor)
            device = self._interface.open()
        except (TunError, netlink.NetlinkFailure, PcapError) as e:
            self._open_error = str(e)
            return
        self.port = TunPort(device, self._from_tun, self._reactor, mtu=self.config.mtu,
                            batch_done=self._tun_batch_done)
        self._log.info(
            "interface {tun} up{where} with {ipv4}, {ipv6} and {ll}, MTU {mtu}",
            tun=self.config.tun_name, ipv4=str(self.addresses.ipv4),
            ipv6=str(self.addresses.ipv6), ll=str(self.addresses.link_local),
            mtu=self.config.mtu,
            where=f" in network namespace {self.config.netns}" if self.config.netns else "")

    def startService(self):
        service.Service.startService(self)
        if self.port is None and self._open_error is None:
            self._open()
        if self._open_error is not None:
            self._process.fail(EXIT_FAILURE, self._open_error)
            return
        self.port.startReading()
        self.connector.start()
        self.reporter.start()

    def _describe(self):
        """
        @return: The summary line and status of the agent, for the reporter.
        """
        connector = self.connector
        line = (f"agent {self.config.name}: {summary_line(self.counters)}; broker "
                f"{connector.state}")
        status = dict(status_of(self.counters), name=self.config.name, pid=os.getpid(),
                      interface=self.config.tun_name, netns=self.config.netns,
                      addresses=[str(a) for a in self.addresses.all()],
                      broker=connector.url.masked(), state=connector.state)
        return line, status

    def _from_tun(self, packet):
        """
        Publish one packet read from the TUN.
        """
        session = self.connector.session
        refusal = "not connected" if session is None else session.refusal()
        if refusal is not None:
            self.counters.dropped(refusal)
            return
        if self._raw:
            session.publish(self._key_out, packet, wire.RAW)
        else:
            session.publish(self._key_out, wire.encode_packet(
                packet, self._reactor.seconds(), self.config.tun_name), wire.JSON)
        self.counters.moved("out", len(packet))
        if self.pcap is not None:
            self.pcap.write(packet)

    def _tun_batch_done(self):
        """
        Send the packets just read from the TUN without waiting a reactor
        turn.
        """
        session = self.connector.session
        if session is not None:
            session.flush()

    @defer.inlineCallbacks
    def _setup(self, session):
        """
        Declare and bind the agent's queue, consume it, and announce the agent.
        """
        config = self.config
        yield session.declare_queue(
            config.queue, [self._key_in, self._key_start, wire.COMPONENT_READY],
            when_locked=FatalBusError(
                f"an agent named {config.name!r} is already connected to vhost "
                f"{self.connector.url.vhost!r} on {self.connector.url.host}; choose "
                "another --name",
                exit_code=EXIT_DUPLICATE))
        yield session.consume(config.queue, self._from_bus)
        session.publish_message(wire.started(config.name, self.addresses))
        session.publish_message(wire.component_ready(config.name))
        self._log.info("agent {name} connected to {url}, exchange {exchange}",
                       name=config.name, url=self.connector.url.masked(),
                       exchange=config.exchange)

    def _fatal(self, error):
        self._process.fail(error.exit_code, str(error))

    def _from_bus(self, routing_key, body, content_type):
        """
        Handle one message from the agent's queue.
        """
        if routing_key == self._key_in:
            try:
                packet = wire.packet_of(body, content_type)
            except wire.BadMessage as e:
                self.counters.dropped("unknown content type"
                                      if isinstance(e, wire.UnknownContentType)
                                      else "bad message")
                self._warnings.warn("dropped a message on {key}: {error}",
                                    key=routing_key, error=str(e))
                return
            if packet[0] >> 4 not in (4, 6):
                self.counters.dropped("not IP")
                self._warnings.warn("dropped a message on {key}: its data is not an "
                                    "IPv4 or IPv6 packet", key=routing_key)
                return
            if len(packet) > self.config.mtu:
                self.counters.dropped("larger than MTU")
                self._warnings.warn("dropped a {size}-byte packet: larger than the "
                                    "MTU {mtu}", size=len(packet), mtu=self.config.mtu)
                return
            if self.port is not None and self.port.write_packet(packet):
                self.counters.moved("in", len(packet))
                if self.pcap is not None:
                    self.pcap.write(packet)
            else:
                self.counters.dropped("tun write")
        elif routing_key == self._key_start:
            self._readdress(body)
        elif routing_key == wire.COMPONENT_READY:
            self._component_ready(body)

    def _component_ready(self, body):
        """
        When the packet router announces itself, announce this agent again,
        so that a router started after the agents learns them at once.
        """
        try:
            component = wire.component_of(body)
        except wire.BadMessage:
            return
        session = self.connector.session
        if component == wire.ROUTER_NAME and session is not None:
            session.publish_message(wire.started(self.config.name, self.addresses))

    def _readdress(self, body):
        """
        Apply the addresses of a C{tun.start} message and announce them.
        """
        try:
            addresses = make_addresses(*wire.tun_start_addresses(body))
        except (wire.BadMessage, BadAddress) as e:
            self._log.error("cannot apply tun.start: {error}", error=str(e))
            return
        if self._geteuid() != 0:
            self._log.error(
                "cannot apply tun.start ({ipv4}, {ipv6}): changing addresses needs "
                "root, and the agent runs as uid {uid} (twistd --uid); the "
                "interface keeps {old}", ipv4=str(addresses.ipv4), ipv6=str(addresses.ipv6),
                uid=self._geteuid(), old=str(self.addresses.ipv4))
            return
        try:
            self._interface.configure(addresses)
        except (netlink.NetlinkFailure, OSError) as e:
            self._log.error("cannot apply tun.start: {error}", error=str(e))
            return
        self.addresses = addresses
        self._log.info("tun.start: interface {tun} now has {ipv4} and {ipv6}",
                       tun=self.config.tun_name, ipv4=str(addresses.ipv4),
                       ipv6=str(addresses.ipv6))
        session = self.connector.session
        if session is not None:
            session.publish_message(wire.started(self.config.name, addresses))

    @defer.inlineCallbacks
    def stopService(self):
        """
        Disconnect in order: stop reading the TUN, cancel the consumer,
        announce the shutdown, close channel and connection, then remove the
        interface.
        """
        service.Service.stopService(self)
        if self.port is not None:
            self.port.stopReading()
        try:
            yield self.connector.stop([wire.component_shutdown(self.config.name)],
                                      CLOSE_TIMEOUT)
        finally:
            if self.port is not None:
                self.port.close()
                self._log.info("interface {tun} removed", tun=self.config.tun_name)
            if self.pcap is not None:
                self.pcap.close()
            self.reporter.stop()
