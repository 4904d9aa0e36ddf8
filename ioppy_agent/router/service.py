"""
L{RouterService}: consumes the agents' packets and announcements and
carries out what L{PacketRouter} decides.

On each connection it declares the exchanges that keep the packets sent
straight out of its queue (L{keys.STEER}, a headers exchange bound from the
session's exchange for every agent's packets, which drops those marked as
sent straight into L{keys.SENT_STRAIGHT} and lets the others fall to
L{keys.UNSTEERED}) and consumes its queue, bound to L{keys.UNSTEERED} and
to the agents' announcements.
"""

import os
from dataclasses import dataclass
from typing import Optional
from urllib.parse import quote

from prometheus_client.core import GaugeMetricFamily
from twisted.internet import defer
from twisted.logger import Logger

from ..bus import BusConfig, BusConnector, QueueHeld, QueueLocked, QueueMismatch, StreamMismatch
from ..host.pcap import PcapError, PcapWriter
from ..model import control, keys, wire
from ..model.actions import Drop, DropReason, Forward
from ..model.grants import Grants
from ..model.routes import addresses_of
from ..program.metrics import MetricsConfig
from ..program.service import BusService, CannotStart
from ..program.stats import ReportConfig, status_of, summary_line
from ..recorder import stream
from ..recorder.stream import RecordConfig
from ..web import WebConfig, WebUnavailable, live
from ..web.view import SessionView
from .core import PacketRouter
from .policy import FanOut, FixedTopology
from .recording import RecordWatch
from .reports import agent_report_metrics
from .topology import Topology

ROUTER_QUEUE = keys.ROUTER_QUEUE
# The router has no TUN to read between deliveries: a whole read at a time.
DELIVERIES_PER_READ = 1024
# Seconds between a standby router's attempts to take the queue.
STANDBY_RETRY = 1.0
# Seconds after connecting before the roll call (the agents that answer the
# router's announcement have answered by then), and between calls while a
# named agent has not answered: the original agent's answer is sometimes
# lost (it publishes from two threads on one connection).
ROLL_CALL_DELAY = 1.0
ROLL_CALL_INTERVAL = 2.0
ROLL_CALLS = 5
BINDINGS = ((keys.UNSTEERED, ""), keys.any_of(keys.TUN_STARTED), keys.any_of(keys.BOUND),
            keys.any_of(keys.STATS), keys.COMPONENT_SHUTDOWN, keys.LOSSY_LINK_START)
# With --pcap-dir: every packet an agent sends, as it enters the bus.
CAPTURE_BINDINGS = (keys.any_of(keys.PACKET_FROM),)


@dataclass(frozen=True)
class RouterConfig:
    """
    Everything a router needs to know, already validated.
    """

    bus: BusConfig
    report: ReportConfig = ReportConfig()
    metrics: MetricsConfig = MetricsConfig()
    topology: Optional[Topology] = None
    pcap_dir: Optional[str] = None
    record: Optional[RecordConfig] = None
    web: WebConfig = WebConfig()
    roll_call: tuple = ()
    grants: Optional[Grants] = None

    @property
    def roll_call_names(self):
        """
        @return: The agents to call the roll of on connecting: those named
            with C{--roll-call}, and the topology's.
        """
        names = set(self.roll_call)
        if self.topology is not None:
            names.update(n for link in self.topology.links for n in link)
            names.update(self.topology.observers)
        return frozenset(names)

    @property
    def pcap_path(self):
        """
        @return: The capture file for this router's vhost in C{pcap_dir}.
        """
        if self.pcap_dir is None:
            return None
        return os.path.join(self.pcap_dir, quote(self.bus.url.vhost, safe="") + ".pcap")


class RouterService(BusService):
    """
    The packet router on the bus.

    @ivar router: The L{PacketRouter}.
    @ivar standing_by: Whether another router holds the router's queue, so
        that this one waits to take over.
    """

    _log = Logger()
    name = "ioppy-router"

    def __init__(self, reactor, config, process, make_connector=BusConnector):
        BusService.__init__(self, reactor, config.bus, config.report, process,
                            "ioppy-router", make_connector,
                            deliveries_per_read=DELIVERIES_PER_READ,
                            metrics=config.metrics)
        self.config = config
        self.pcap = None
        self.standing_by = False
        self._roll_calling = None
        policy = FixedTopology(config.topology) if config.topology else FanOut()
        # In a session made by ioppy-session the participants may declare
        # nothing: the router makes each one's queue, and takes the messages
        # that do not name their sender only from who may send them.
        self.session = keys.session_of(config.bus.url, keys.SESSION_ROUTER)
        self.router = PacketRouter(policy, router_id=os.urandom(6).hex(),
                                   grants=config.grants, session=self.session)
        self.view = SessionView(self.router, self.connector, self.counters,
                                lambda: self.standing_by, config.topology,
                                config.record.describe() if config.record else None)
        self.feed = live.LiveFeed(reactor, self.view.snapshot)
        self.watch = None if config.record is None else RecordWatch(
            reactor, config.record, self.connector, self.router.reports)
        self._recording_said = False

    def open(self):
        if self.config.pcap_dir is not None:
            try:
                self.pcap = PcapWriter(self.config.pcap_path, self.reactor)
            except PcapError as e:
                raise CannotStart(str(e)) from None
        if self.config.web.port is not None:
            # Listened on here, before twistd drops privileges.
            try:
                self.keep_listening(live.listen(self.reactor, self.config.web, self.feed))
            except WebUnavailable as e:
                raise CannotStart(str(e)) from None

    def started(self):
        if self.watch is not None:
            self.watch.start()
        if self.config.web.port is not None:
            self.feed.start()
            self._log.info("live page on http://{address}:{port}/",
                           address=self.config.web.address, port=self.config.web.port)

    def stopping(self):
        self.feed.stop()
        if self.watch is not None:
            self.watch.stop()
        self._cancel_roll_call()

    def _cancel_roll_call(self):
        if self._roll_calling is not None and self._roll_calling.active():
            self._roll_calling.cancel()
        self._roll_calling = None

    def _roll_call(self, left=ROLL_CALLS):
        """
        Ask each agent named for the roll call that has not announced itself
        to do so; again in L{ROLL_CALL_INTERVAL} seconds while one has not,
        C{left} times in all.
        """
        self._roll_calling = None
        session = self.connector.session
        if session is None:
            return
        calls = self.router.roll_call(self.config.roll_call_names)
        for message in calls:
            session.publish_message(message)
        if not calls:
            return
        names = ", ".join(keys.parse(m.routing_key).name for m in calls)
        if left > 1:
            self._log.info("roll call: asked {names} to announce themselves", names=names)
            self._roll_calling = self.reactor.callLater(ROLL_CALL_INTERVAL, self._roll_call,
                                                        left - 1)
        else:
            self._log.warn("roll call: asked {names} {n} times; no answer yet", names=names,
                           n=ROLL_CALLS)

    @defer.inlineCallbacks
    def _record(self, session):
        """
        Declare the session's recording stream, bound to the packet keys: the
        broker then keeps a copy of every packet as it routes it.
        """
        record = self.config.record
        try:
            yield session.declare_stream(record.name, stream.BINDINGS, record.arguments())
        except StreamMismatch as e:
            raise StreamMismatch(
                f"{e}; give the --record-max-age and --record-max-bytes it was made with, "
                f"or delete it (and the packets in it) with: rabbitmqctl delete_queue -p "
                f"{self.connector.url.vhost} {record.name}") from None
        if not self._recording_said:
            self._recording_said = True
            self._log.info("recording every packet in the {what}", what=record.describe())

    @defer.inlineCallbacks
    def _declare(self, session):
        """
        Declare the steering exchanges, the recording stream and the router's
        queue.
        """
        yield session.declare_exchange(keys.UNSTEERED, "fanout")
        yield session.declare_exchange(keys.SENT_STRAIGHT, "fanout")
        yield session.declare_exchange(keys.STEER, "headers",
                                       {"alternate-exchange": keys.UNSTEERED})
        yield session.bind_exchange(keys.SENT_STRAIGHT, keys.STEER, "",
                                    {"x-match": "all", keys.DIRECT: keys.DIRECT_VALUE})
        yield session.bind_exchange(keys.STEER, self.config.bus.exchange,
                                    keys.any_of(keys.PACKET_FROM))
        if self.config.record is not None:
            yield self._record(session)
        if self.session is not None and self.config.grants is not None:
            for name in sorted(self.config.grants.networks):
                queue = keys.agent_queue(name)
                try:
                    yield session.declare_shared_queue(queue, keys.agent_bindings(name))
                except QueueMismatch as e:
                    raise QueueMismatch(
                        f"{e}; delete it (and the packets waiting in it) with: rabbitmqctl "
                        f"delete_queue -p {self.connector.url.vhost} {queue}") from None
        yield session.declare_queue(ROUTER_QUEUE, BINDINGS)

    def setup(self, session):
        url = self.connector.url
        prefetch = self.config.bus.prefetch
        d = self._declare(session)

        def locked(reason):
            # Another router holds the queue (or, after a broker node hung,
            # this router's own last connection still does): stand by, and
            # take over as soon as the queue is free.
            reason.trap(QueueLocked)
            if not self.standing_by:
                self.standing_by = True
                self._log.info("standing by: another ioppy-router is routing vhost "
                               "{vhost!r}; taking over when it goes (trying every "
                               "{every:.0f} s)", vhost=url.vhost, every=STANDBY_RETRY)
            raise QueueHeld(f"queue {ROUTER_QUEUE!r} is held by another router",
                            STANDBY_RETRY)

        def announce(_):
            # Agents answer this with tun.started, so a router that starts (or
            # reconnects) after them learns them, and sends them their routes.
            self.router.connected()
            session.publish_message(control.component_ready(keys.ROUTER_NAME))
            self._log.info("router {took} {url}, exchange {exchange}, routing {policy}",
                           took="took over, connected to" if self.standing_by else
                           "connected to", url=url.masked(),
                           exchange=self.config.bus.exchange,
                           policy=self.router.policy.description)
            self.standing_by = False
            if self.config.roll_call_names:
                self._cancel_roll_call()
                self._roll_calling = self.reactor.callLater(ROLL_CALL_DELAY, self._roll_call)

        d.addErrback(locked)
        if self.config.pcap_dir is not None:
            d.addCallback(lambda _: session.declare_queue(keys.CAPTURE_QUEUE,
                                                          CAPTURE_BINDINGS))
            d.addCallback(lambda _: session.consume(keys.CAPTURE_QUEUE, self._capture,
                                                    self.oversize, prefetch=prefetch))
        d.addCallback(lambda _: session.consume(ROUTER_QUEUE, self._from_bus,
                                                self.oversize, prefetch=prefetch))
        return d.addCallback(announce)

    def identity(self):
        return "router", "router"

    def extra_metrics(self):
        yield GaugeMetricFamily("ioppy_router_standby",
                                "1 while another router holds the router's queue.",
                                value=1 if self.standing_by else 0)
        yield GaugeMetricFamily("ioppy_router_recording",
                                "1 if the session's packets are kept in the record stream.",
                                value=1 if self.config.record is not None else 0)
        yield GaugeMetricFamily("ioppy_router_web_clients",
                                "Live pages open (event streams).",
                                value=len(self.feed.clients))
        agents = self.router.steering.agents
        yield GaugeMetricFamily("ioppy_router_agents", "Agents the router knows.",
                                value=len(agents))
        direct = GaugeMetricFamily("ioppy_router_agent_direct",
                                   "1 if the agent takes packets straight from the broker.",
                                   labels=["agent"])
        addresses = GaugeMetricFamily("ioppy_router_agent_addresses",
                                      "Addresses and prefixes the agent owns.",
                                      labels=["agent"])
        for name, agent in sorted(agents.items()):
            direct.add_metric([name], 1 if agent.direct else 0)
            addresses.add_metric([name], len(agent.networks))
        yield direct
        yield addresses
        yield from agent_report_metrics(self.router.reports)
        if self.watch is not None:
            yield from self.watch.metrics()

    def describe(self):
        connector = self.connector
        agents = self.router.agents
        state = connector.state.value
        line = (f"router: {summary_line(self.counters)}; agents: "
                f"{', '.join(agents) or 'none'}; broker {state}")
        if self.standing_by:
            line += " (standing by)"
        status = dict(status_of(self.counters), pid=os.getpid(), agents=agents,
                      broker=connector.url.masked(), state=state,
                      standby=self.standing_by)
        if self.watch is not None:
            status["record"] = self.watch.status()
        return line, status

    def release(self):
        if self.pcap is not None:
            self.pcap.close()

    def _from_bus(self, routing_key, body, content_type, user_id=None):
        router = self.router
        action = router.route(routing_key, body, content_type, user_id)
        if router.outbox:
            # Routes first: a packet from a sender the router learned from
            # it reaches receivers that know the sender by then.
            session = self.connector.session
            for message in router.take_control():
                if session is not None:
                    session.publish_message(message)
        if type(action) is Forward:
            self._forward(action)
        elif type(action) is Drop:
            self.drop(action.reason, action.detail)

    def _capture(self, routing_key, body, content_type, user_id=None):
        """
        A packet an agent sent, as it entered the bus: into the capture file.
        """
        try:
            packet = wire.packet_of(body, content_type)
        except wire.BadMessage as e:
            packet, why = None, str(e)
        else:
            why = "its data is not an IPv4 or IPv6 packet"
        if packet is not None and addresses_of(packet) is not None:
            self.pcap.write(packet)
        else:
            # Not counted: the router's own queue or the receiver drops it.
            self._log.debug("not captured: a message on {key}: {why}", key=routing_key,
                            why=why)

    def _forward(self, action):
        counters = self.counters
        counters.moved("in", action.size)
        if not action.messages:
            counters.dropped("no peer")
            return
        session = self.connector.session
        for message in action.messages:
            refusal = DropReason.NOT_CONNECTED if session is None else session.refusal()
            if refusal is not None:
                counters.dropped(refusal)
            else:
                session.publish(message.routing_key, message.body, message.content_type)
                counters.moved("out", len(message.body))

