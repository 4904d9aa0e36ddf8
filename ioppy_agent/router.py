"""
The packet router: forwards each agent's packets to the agents that should
see them.

L{PacketRouter} decides (pure, no I/O); L{RouterService} connects it to the
bus.  A packet body is forwarded exactly as it came, without being decoded:
the router checks only its shape (L{wire.check_shape}), and the receiving
agent checks the packet.  Only when it captures packets (C{--pcap-dir})
does the router decode each one, and drop those that do not decode.
"""

import json
import os
from dataclasses import dataclass, field
from typing import Any, Optional
from urllib.parse import quote

from twisted.application import service
from twisted.internet import defer
from twisted.logger import Logger

from . import wire
from .addressing import BadAddress, check_name
from .amqp import DEFAULT_HEARTBEAT, BusConnector, FatalBusError
from .pcap import PcapError, PcapWriter
from .process import EXIT_DUPLICATE, EXIT_FAILURE
from .stats import Counters, Reporter, WarnLimiter, status_of, summary_line

ROUTER_QUEUE = "ioppy.router"
ROUTER_NAME = wire.ROUTER_NAME
CLOSE_TIMEOUT = 1.0

BINDINGS = (wire.ANY_PACKET_FROM_AGENT, wire.ANY_TUN_STARTED, wire.COMPONENT_READY,
            wire.COMPONENT_SHUTDOWN, wire.LOSSY_LINK_START)


class BadTopology(ValueError):
    """
    A topology file that cannot be used.
    """


@dataclass(frozen=True)
class Topology:
    """
    Fixed routes: which agents exchange packets, and which observe all.

    @ivar links: Pairs of agent names that exchange packets both ways.
    @ivar observers: Agents that get a copy of every packet.
    """

    links: frozenset = field(default_factory=frozenset)
    observers: frozenset = field(default_factory=frozenset)

    def peers_of(self, name):
        """
        @return: The agents a packet from C{name} goes to.
        """
        peers = {b for a, b in self.links if a == name}
        peers |= {a for a, b in self.links if b == name}
        peers |= self.observers
        peers.discard(name)
        return peers


def parse_topology(text):
    """
    Parse a topology file::

        {"links": [["agent_1", "agent_2"]], "observers": ["agent_TT"]}

    @raise BadTopology: saying what is wrong.
    """
    try:
        obj = json.loads(text)
    except ValueError as e:
        raise BadTopology(f"not JSON: {e}") from None
    if not isinstance(obj, dict):
        raise BadTopology('the file must hold a JSON object with "links" and '
                          '"observers"')
    unknown = set(obj) - {"links", "observers"}
    if unknown:
        raise BadTopology(f"unknown keys {sorted(unknown)}; only \"links\" and "
                          "\"observers\" are read")
    links = obj.get("links", [])
    observers = obj.get("observers", [])
    if not isinstance(links, list) or not isinstance(observers, list):
        raise BadTopology('"links" and "observers" must be lists')
    pairs = set()
    try:
        for link in links:
            if not (isinstance(link, list) and len(link) == 2):
                raise BadTopology(f"link {link!r} is not a pair of agent names")
            a, b = (check_name(n) for n in link)
            if a == b:
                raise BadTopology(f"link {link!r} joins an agent to itself")
            pairs.add((a, b))
        watchers = frozenset(check_name(n) for n in observers)
    except BadAddress as e:
        raise BadTopology(str(e)) from None
    if not pairs and not watchers:
        raise BadTopology("the topology has no links and no observers")
    return Topology(frozenset(pairs), watchers)


class PacketRouter:
    """
    Decides where each message goes.  Without a topology, every agent it has
    heard of gets every other agent's packets.

    @ivar agents: The agents known, by name.
    @ivar to_drop: Packets still to drop for C{routing.lossy.link.start}.
    """

    _log = Logger()

    def __init__(self, clock, topology=None, capture=None):
        """
        @param capture: Called with each packet routed (for pcap), or C{None}.
        """
        self.topology = topology
        self.agents = set()
        self.to_drop = 0
        self.counters = Counters()
        self._warnings = WarnLimiter(clock, self._log)
        self._capture = capture

    def _bad(self, routing_key, error):
        self.counters.dropped("bad message")
        self._warnings.warn("dropped a message on {key}: {error}", key=routing_key,
                            error=str(error))

    def _learn(self, name):
        if self.topology is None and name != ROUTER_NAME and name not in self.agents:
            try:
                check_name(name)
            except BadAddress:
                return
            self.agents.add(name)
            self._log.info("agent {name} joined; agents: {agents}", name=name,
                           agents=", ".join(sorted(self.agents)))

    def _forget(self, name):
        if name in self.agents:
            self.agents.discard(name)
            self._log.info("agent {name} left; agents: {agents}", name=name,
                           agents=", ".join(sorted(self.agents)) or "none")

    def peers_of(self, name):
        """
        @return: The agents a packet from C{name} goes to, sorted.
        """
        if self.topology is not None:
            return sorted(self.topology.peers_of(name))
        return sorted(self.agents - {name})

    def route(self, routing_key, body, content_type):
        """
        @return: A list of L{wire.Message} to publish for this message.
        """
        if routing_key.endswith(".ip.tun.packet.raw"):
            return self._packet(routing_key, body, content_type)
        if routing_key.endswith(".ip.tun.started"):
            name = wire.agent_of(routing_key)
            if name:
                self._learn(name)
        elif routing_key == wire.COMPONENT_READY:
            self._component(routing_key, body, self._learn)
        elif routing_key == wire.COMPONENT_SHUTDOWN:
            self._component(routing_key, body, self._forget)
        elif routing_key == wire.LOSSY_LINK_START:
            try:
                self.to_drop = wire.packets_to_drop(body)
            except wire.BadMessage as e:
                self._bad(routing_key, e)
            else:
                self._log.info("lossy link: dropping the next {n} packets", n=self.to_drop)
        return []

    def _component(self, routing_key, body, action):
        try:
            action(wire.component_of(body))
        except wire.BadMessage as e:
            self._bad(routing_key, e)

    def _packet(self, routing_key, body, content_type):
        sender = wire.agent_of(routing_key)
        if not sender or not routing_key.startswith("fromAgent."):
            return []
        try:
            if self._capture is None:
                body = wire.check_shape(body, content_type)
            else:
                packet = wire.packet_of(body, content_type)
                body = wire.as_bytes(body)
        except wire.BadMessage as e:
            self._bad(routing_key, e)
            return []
        self._learn(sender)
        if self.to_drop:
            self.to_drop -= 1
            self.counters.dropped("lossy link")
            return []
        self.counters.moved("in", len(body))
        if self._capture is not None:
            self._capture(packet)
        out = [wire.Message(wire.packet_to(peer), body, content_type or wire.JSON)
               for peer in self.peers_of(sender)]
        if not out:
            self.counters.dropped("no peer")
        return out


@dataclass(frozen=True)
class RouterConfig:
    """
    Everything a router needs to know, already validated.
    """

    url: object
    exchange: str = "amq.topic"
    topology: Topology = None
    heartbeat: int = DEFAULT_HEARTBEAT
    tls: Any = None
    fallback_urls: tuple = ()
    stats_interval: float = 60.0
    status_file: Optional[str] = None
    status_interval: float = 5.0
    pcap_dir: Optional[str] = None

    @property
    def pcap_path(self):
        """
        @return: The capture file for this router's vhost in C{pcap_dir}.
        """
        if self.pcap_dir is None:
            return None
        return os.path.join(self.pcap_dir, quote(self.url.vhost, safe="") + ".pcap")


class RouterService(service.Service):
    """
    Consumes the agents' packets and announcements and publishes what the
    L{PacketRouter} decides.
    """

    _log = Logger()
    name = "ioppy-router"

    def __init__(self, reactor, config, process, make_connector=BusConnector):
        self.config = config
        self._reactor = reactor
        self._process = process
        self.pcap = None
        self._open_error = None
        self.router = PacketRouter(reactor, config.topology,
                                   capture=self._capture if config.pcap_dir else None)
        self.connector = make_connector(
            reactor, config.url, config.exchange, self._setup, self._fatal,
            heartbeat=config.heartbeat, connection_name="ioppy-router", tls=config.tls,
            fallback_urls=config.fallback_urls)
        self.reporter = Reporter(reactor, self._describe, config.stats_interval,
                                 config.status_file, config.status_interval)

    def privilegedStartService(self):
        service.Service.privilegedStartService(self)
        self._open()

    def _open(self):
        self.connector.prepare()
        if self.config.pcap_dir and self.pcap is None and self._open_error is None:
            try:
                self.pcap = PcapWriter(self.config.pcap_path, self._reactor)
            except PcapError as e:
                self._open_error = str(e)

    def _capture(self, packet):
        if self.pcap is not None:
            self.pcap.write(packet)

    def startService(self):
        service.Service.startService(self)
        self._open()
        if self._open_error is not None:
            self._process.fail(EXIT_FAILURE, self._open_error)
            return
        self.connector.start()
        self.reporter.start()

    def _describe(self):
        connector = self.connector
        agents = sorted(self.router.agents)
        line = (f"router: {summary_line(self.router.counters)}; agents: "
                f"{', '.join(agents) or 'none'}; broker {connector.state}")
        status = dict(status_of(self.router.counters), pid=os.getpid(), agents=agents,
                      broker=connector.url.masked(), state=connector.state)
        return line, status

    @defer.inlineCallbacks
    def _setup(self, session):
        yield session.declare_queue(ROUTER_QUEUE, BINDINGS, when_locked=FatalBusError(
            f"another ioppy-router is already routing vhost {self.connector.url.vhost!r} "
            f"on {self.connector.url.host}", exit_code=EXIT_DUPLICATE))
        yield session.consume(ROUTER_QUEUE, self._from_bus)
        # Agents answer this with tun.started, so a router that starts (or
        # reconnects) after them learns them before their next packet.
        session.publish_message(wire.component_ready(ROUTER_NAME))
        self._log.info("router connected to {url}, exchange {exchange}{mode}",
                       url=self.connector.url.masked(), exchange=self.config.exchange,
                       mode=" with a fixed topology" if self.config.topology else "")

    def _fatal(self, error):
        self._process.fail(error.exit_code, str(error))

    def _from_bus(self, routing_key, body, content_type):
        out = self.router.route(routing_key, body, content_type)
        session = self.connector.session
        for message in out:
            refusal = "not connected" if session is None else session.refusal()
            if refusal is not None:
                self.router.counters.dropped(refusal)
            else:
                session.publish_message(message)
                self.router.counters.moved("out", len(message.body))

    @defer.inlineCallbacks
    def stopService(self):
        service.Service.stopService(self)
        yield self.connector.stop((), CLOSE_TIMEOUT)
        if self.pcap is not None:
            self.pcap.close()
        self.reporter.stop()
