"""
L{AgentService}: one TUN interface joined to the bus.

It carries out what L{AgentCore} decides.  Packets the host sends into the
TUN are published as C{fromAgent.<name>.ip.tun.packet.raw}, copied (CC) to
their owner's inbox C{ioppy.to.<owner>} once the router has sent routes;
what the agent's queue gets (the router's C{toAgent.<name>.ip.tun.packet.raw},
other agents' packets in its inbox, and the router's control messages) is
written into the TUN or applied.
"""

import os
from dataclasses import dataclass
from typing import Optional, Tuple

from twisted.application.internet import TimerService
from twisted.logger import Logger

from ..bus import BusConfig, BusConnector, NotFound, QueueHeld, QueueLocked
from ..host import netlink
from ..host.pcap import PcapError, PcapWriter
from ..host.tun import TunError, TunPort
from ..model import control, keys
from ..model.actions import Drop, DropReason, Publish, Readdress, Refuse, Reroute, WriteToTun
from ..model.addressing import TunAddresses
from ..program.metrics import MetricsConfig
from ..program.service import BusService, CannotStart
from ..program.stats import ReportConfig, status_of, summary_line
from .core import AgentCore
from .interface import TunInterface

# Seconds before connecting again when the agent's own queue is still held
# by its last connection.
HELD_RETRY = 0.5
# Seconds between looks for the queue the session's router makes.
MISSING_RETRY = 2.0


@dataclass(frozen=True)
class AgentConfig:
    """
    Everything an agent needs to know, already validated.
    """

    name: str
    addresses: TunAddresses
    bus: BusConfig
    report: ReportConfig = ReportConfig()
    metrics: MetricsConfig = MetricsConfig()
    mtu: int = 1500
    tun_name: str = "tun0"
    netns: Optional[str] = None
    pcap: Optional[str] = None
    wire: str = "json"
    prefixes: Tuple = ()
    report_interval: float = 5.0


class AgentService(BusService):
    """
    The agent: a L{TunPort} on one side, a L{BusConnector} on the other,
    L{AgentCore} deciding in between.

    @ivar core: The L{AgentCore}.
    @ivar queue: The queue consumed: the core's, or one of this run's own
        while a hung broker node still holds the core's.
    @ivar port: The L{TunPort}, once the interface is open.
    """

    _log = Logger()
    _geteuid = staticmethod(os.geteuid)

    def __init__(self, reactor, config, process, interface=None,
                 make_connector=BusConnector):
        """
        @param config: An L{AgentConfig}.
        @param interface: A L{TunInterface} (made from C{config} if not given).
        """
        # As many deliveries per reactor turn as the TUN port reads packets,
        # so that writing into the TUN never outruns reading it.
        BusService.__init__(self, reactor, config.bus, config.report, process,
                            f"ioppy-agent {config.name}", make_connector,
                            deliveries_per_read=TunPort.max_packets_per_read,
                            metrics=config.metrics)
        self.name = f"ioppy-agent {config.name}"
        self.config = config
        # In a session made by ioppy-session the agent may declare nothing:
        # the router made its queue, bound, for it to consume alone.
        self.session = keys.session_of(config.bus.url, config.name)
        self.core = AgentCore(config.name, config.addresses, reactor, mtu=config.mtu,
                              wire_format=config.wire, interface_name=config.tun_name,
                              prefixes=config.prefixes, session=self.session)
        self._interface = interface if interface is not None else TunInterface(config)
        self.port = None
        self.pcap = None
        self.queue = self.core.queue
        self._had_session = False
        self._queue_held = False
        self._connected_since = None
        self._run = os.urandom(4).hex()

    @property
    def addresses(self):
        """
        @return: The interface's current L{TunAddresses}.
        """
        return self.core.addresses

    # Starting and stopping.

    def open(self):
        config = self.config
        try:
            if config.pcap:
                self.pcap = PcapWriter(config.pcap, self.reactor)
            device = self._interface.open()
        except (TunError, netlink.NetlinkFailure, PcapError) as e:
            raise CannotStart(str(e)) from None
        self.port = TunPort(device, self._from_tun, self.reactor, mtu=config.mtu,
                            batch_done=self._tun_batch_done)
        addresses = self.addresses
        self._log.info(
            "interface {tun} up{where} with {ipv4}, {ipv6} and {ll}, MTU {mtu}",
            tun=config.tun_name, ipv4=str(addresses.ipv4), ipv6=str(addresses.ipv6),
            ll=str(addresses.link_local), mtu=config.mtu,
            where=f" in network namespace {config.netns}" if config.netns else "")

    def started(self):
        self.port.startReading()
        if self.config.report_interval > 0:
            # A child service, started with the others once the agent has
            # opened its TUN: it reports while the agent runs (nothing while
            # it is not connected), and stops with it.
            reports = TimerService(self.config.report_interval, self._report)
            reports.clock = self.reactor
            reports.setServiceParent(self)

    def _report(self):
        """
        Tell the router what this agent moved, for its metrics.
        """
        session = self.connector.session
        if session is not None:
            url = self.connector.url
            session.publish_message(control.stats(
                self.config.name, self.counters, self.reactor.seconds(),
                self._connected_since, f"{url.host}:{url.port}"))

    def setup(self, session):
        """
        Declare and bind the agent's queue, consume it, and announce the agent.
        """
        url = self.connector.url
        if self.session is not None:
            return self._setup_in_session(session, url)
        own = keys.agent_queue(self.config.name, self._run)
        self.queue = own if self._queue_held else self.core.queue
        d = session.declare_queue(self.queue, self.core.bindings())

        def locked(reason):
            reason.trap(QueueLocked)
            self._held_by_us(f"vhost {url.vhost!r} on {url.host}; choose another --name")
            # This agent had the queue: its last connection still holds it,
            # on a broker node that hangs (a cluster keeps such a node's
            # exclusive queues locked until it gives the node up, a minute or
            # more).  The refusal closed the channel: carry on, on a new
            # connection, with a queue of this run's own.
            self._queue_held = True
            self._log.warn("queue {old} is still held by this agent's last connection "
                           "(on a broker node that does not answer); connecting again "
                           "with {new}", old=self.core.queue, new=own)
            raise QueueHeld(f"queue {self.core.queue!r} is held by this agent's last "
                            "connection", HELD_RETRY)

        def consume(_):
            return session.consume(self.queue, self._from_bus, self.oversize,
                                   prefetch=self.config.bus.prefetch)

        return d.addErrback(locked).addCallback(consume).addCallback(self._announce, session)

    def _setup_in_session(self, session, url):
        """
        Consume the queue the session's router made for this agent, as its
        only consumer.
        """
        self.queue = self.core.queue
        d = session.queue_exists(self.queue)

        def missing(reason):
            reason.trap(NotFound)
            self._log.warn("queue {queue} does not exist yet: the session's router makes "
                           "it (is ioppy-router running, with --grants?); trying again in "
                           "{every:.0f} s", queue=self.queue, every=MISSING_RETRY)
            raise QueueHeld(f"no queue {self.queue!r} yet", MISSING_RETRY)

        def consume(_):
            return session.consume(self.queue, self._from_bus, self.oversize, exclusive=True,
                                   prefetch=self.config.bus.prefetch)

        def locked(reason):
            reason.trap(QueueLocked)
            self._held_by_us(f"session {url.vhost!r} on {url.host}")
            # Its last connection, on a broker node that hangs, still
            # consumes: wait until the broker gives it up.
            self._log.warn("queue {queue} is still consumed by this agent's last "
                           "connection; trying again", queue=self.queue)
            raise QueueHeld(f"queue {self.queue!r} is consumed by this agent's last "
                            "connection", HELD_RETRY)

        d.addErrback(missing).addCallback(consume).addErrback(locked)
        return d.addCallback(self._announce, session)

    def _held_by_us(self, where):
        """
        The agent's queue is held by another connection: before this agent
        ever connected, that is another agent of its name (L{QueueLocked},
        exit status 2); after, it is this agent's own last connection, which
        the caller waits out.
        """
        if not self._had_session:
            raise QueueLocked(f"an agent named {self.config.name!r} is already connected "
                              f"to {where}")

    def _announce(self, _, session):
        url = self.connector.url
        for message in self.core.announcements():
            session.publish_message(message)
        bound = self.core.bound()
        if bound is not None:
            session.publish_message(bound)
        self._log.info("agent {name} connected to {url}, exchange {exchange}",
                       name=self.config.name, url=url.masked(),
                       exchange=self.config.bus.exchange)
        self._had_session = True
        self._connected_since = self.reactor.seconds()
        self._queue_held = False

    def identity(self):
        return "agent", self.config.name

    def describe(self):
        connector = self.connector
        state = connector.state.value
        line = f"agent {self.config.name}: {summary_line(self.counters)}; broker {state}"
        status = dict(status_of(self.counters), name=self.config.name, pid=os.getpid(),
                      interface=self.config.tun_name, netns=self.config.netns,
                      addresses=[str(a) for a in self.addresses.all()],
                      broker=connector.url.masked(), state=state)
        return line, status

    def farewell(self):
        return self.core.farewell()

    def stopping(self):
        if self.port is not None:
            self.port.stopReading()

    def release(self):
        if self.port is not None:
            self.port.close()
            self._log.info("interface {tun} removed", tun=self.config.tun_name)
        if self.pcap is not None:
            self.pcap.close()

    # From the TUN to the bus.

    def _from_tun(self, packet):
        action = self.core.from_tun(packet)
        if type(action) is Drop:
            self.drop(action.reason, action.detail)
            return
        session = self.connector.session
        refusal = DropReason.NOT_CONNECTED if session is None else session.refusal()
        if refusal is not None:
            self.counters.dropped(refusal)
            return
        for message in action.messages:
            session.publish(message.routing_key, message.body, message.content_type,
                            message.timestamp, message.headers)
        self.counters.moved("out", action.size)
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

    # From the bus to the TUN.

    def _from_bus(self, routing_key, body, content_type, user_id=None):
        action = self.core.from_bus(routing_key, body, content_type, user_id)
        kind = type(action)
        if kind is WriteToTun:
            packet = action.packet
            if self.port is not None and self.port.write_packet(packet):
                self.counters.moved("in", len(packet))
                if self.pcap is not None:
                    self.pcap.write(packet)
            else:
                self.counters.dropped("tun write")
        elif kind is Drop:
            self.drop(action.reason, action.detail)
        elif kind is Publish:
            self._publish(action.messages)
        elif kind is Readdress:
            self._readdress(action.addresses)
        elif kind is Reroute:
            self._reroute(action)
        elif kind is Refuse:
            self._log.error("{detail}", detail=action.detail)


    def _publish(self, messages):
        session = self.connector.session
        if session is not None:
            for message in messages:
                session.publish_message(message)

    def _reroute(self, action):
        """
        Carry out new routes: say they are taken, and route the prefixes
        behind other agents' hosts into the TUN.
        """
        self._log.info("routes from the router: {summary}", summary=action.summary)
        # The router lets others send straight to this agent only once it
        # hears that the agent knows their addresses.
        self._publish((self.core.bound(),))
        for networks, remove in ((action.remove_routes, True), (action.add_routes, False)):
            if not networks:
                continue
            if self._geteuid() != 0:
                self._log.error("cannot route {networks} into {tun}: that needs root, and "
                                "the agent runs as uid {uid}",
                                networks=", ".join(map(str, networks)),
                                tun=self.config.tun_name, uid=self._geteuid())
                continue
            try:
                self._interface.route(networks, remove)
            except (netlink.NetlinkFailure, OSError) as e:
                self._log.error("{error}", error=str(e))

    def _readdress(self, addresses):
        """
        Apply the addresses of a C{tun.start} message and announce them.
        """
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
        self._log.info("tun.start: interface {tun} now has {ipv4} and {ipv6}",
                       tun=self.config.tun_name, ipv4=str(addresses.ipv4),
                       ipv6=str(addresses.ipv6))
        self._publish(self.core.readdressed(addresses).messages)
