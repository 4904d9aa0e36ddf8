"""
What the agent and the router use on the broker, gathered from the
programs themselves (their cores, and the router's service on a recording
session), by the permission each use needs: for the grants' test.
"""

import json
import os
import tempfile

from twisted.internet.task import Clock

from ioppy_agent.model import control, keys, wire
from ioppy_agent.model.addressing import default_addresses
from ioppy_agent.agent.core import AgentCore
from ioppy_agent.bus import BusConfig
from ioppy_agent.model.grants import Grants
from ioppy_agent.recorder.stream import RecordConfig
from ioppy_agent.router import RouterConfig, RouterService
from ioppy_agent.model.routes import DIRECT, Peer, Routes
from ioppy_agent.program.stats import Counters
from ioppy_agent.testing import RecordingConnector, RecordingSession
from ioppy_agent.bus.url import parse_amqp_url

from .ip import ipv4
from .test_agent import FakeProcess

EXCHANGE = "amq.topic"


def agent_uses(name):
    """
    @return: C{{permission: names}} for agent C{name} with direct routes, in
        a session made by C{ioppy-session}: it consumes the queue the router
        made and bound for it, and declares and binds nothing.
    """
    core = AgentCore(name, default_addresses(name), Clock())
    routes = Routes("r1", 1, DIRECT, {"agent_9": Peer(("10.2.0.9/32",), DIRECT)}, DIRECT,
                    {"agent_9": ("10.2.0.9/32",)}, ("agent_TT",))
    core.from_bus(keys.routes(name), control.routes_message(name, routes).body, None)
    published = [m.routing_key for m in (*core.announcements(), *core.farewell(),
                                         core.bound())]
    published.append(control.stats(name, Counters(), 0.0, None, "h:1").routing_key)
    for packet in (ipv4("10.2.0.1", "10.2.0.9"), ipv4("10.2.0.1", "10.2.0.77")):
        for message in core.from_tun(packet).messages:
            published.append(message.routing_key)
            published += dict(message.headers or ()).get("CC", ())
    return {
        "configure": [],
        "write": [EXCHANGE],
        "read": [core.queue],
        "topic_write": sorted(set(published)),
        "topic_read": [],
    }


def router_uses():
    """
    @return: C{{permission: names}} for the router of session C{s42} that
        records and captures, steering two agents and forwarding an original
        agent's packet.
    """
    bus = BusConfig(urls=(parse_amqp_url("amqp://s42.router:p@h/s42"),))
    owners = Grants.default(["agent_1", "agent_2", "agent_3"])
    config = RouterConfig(bus=bus, pcap_dir=tempfile.mkdtemp(), record=RecordConfig(),
                          grants=owners)
    service = RouterService(Clock(), config, FakeProcess(), make_connector=RecordingConnector)
    service.privilegedStartService()
    service.startService()
    session = RecordingSession()
    service.connector.connect(session)
    for name, direct in (("agent_1", True), ("agent_2", True), ("agent_3", False)):
        body = json.loads(control.started(name, default_addresses(name)).body)
        body["ioppy_direct"] = direct
        session.deliver(keys.ROUTER_QUEUE, keys.tun_started(name), json.dumps(body).encode())
    session.deliver(keys.ROUTER_QUEUE, keys.packet_from("agent_3"),
                    wire.encode_packet(ipv4("10.2.0.3", "10.2.0.1"), 1.0))
    service.stopService()
    os.remove(config.pcap_path)
    os.rmdir(config.pcap_dir)
    queues = [*session.queues, *session.streams, *session.shared]
    queue_bindings = [b for bs in (*session.queues.values(), *session.shared.values())
                      for b in bs] + [b for bs, _ in session.streams.values() for b in bs]
    sources = {b[0] for b in queue_bindings if not isinstance(b, str)}
    sources |= {source for _, source, _, _ in session.exchange_bindings}
    destinations = {destination for destination, _, _, _ in session.exchange_bindings}
    return {
        "configure": queues + list(session.exchanges),
        "write": queues + sorted(destinations) + [EXCHANGE],
        "read": queues + sorted(sources) + [EXCHANGE],
        "topic_write": sorted({key for key, _, _ in session.published}),
        "topic_read": [b for b in queue_bindings if isinstance(b, str)] + [
            key for _, source, key, _ in session.exchange_bindings if source == EXCHANGE],
    }
