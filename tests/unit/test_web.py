"""
Tests for L{ioppy_agent.web} and the router's use of it and of the
session recorder: the page's snapshots, the event stream, the options.
"""

import json

from twisted.internet.testing import MemoryReactorClock
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest

from ioppy_agent.model import control, keys
from ioppy_agent.bus import State, StreamMismatch
from ioppy_agent.recorder.stream import BINDINGS as RECORD_BINDINGS, STREAM, RecordConfig
from ioppy_agent.router import ROUTER_QUEUE, RouterConfig, RouterService
from ioppy_agent.router.topology import parse_topology
from ioppy_agent.program.stats import Counters
from ioppy_agent.router.tap import RouterOptions
from ioppy_agent.testing import RecordingConnector, RecordingSession
from ioppy_agent.web import WebConfig, live
from ioppy_agent.web.view import HISTORY

from .test_agent import FakeProcess
from .test_metrics import RefusingReactor
from .test_router import BUS, started


def report(service, session, name, now, packets_out, since=100.0):
    """
    Deliver agent C{name}'s tun.stats to the router.
    """
    counters = Counters()
    for _ in range(packets_out):
        counters.moved("out", 84)
    counters.dropped("no route")
    message = control.stats(name, counters, now, since, "node1:5672")
    session.deliver(ROUTER_QUEUE, message.routing_key, message.body)


class ViewTests(SynchronousTestCase):
    """
    The page's snapshot of a router.
    """

    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.service = self.router()

    def router(self, **config):
        service = RouterService(self.reactor, RouterConfig(bus=BUS, **config), FakeProcess(),
                                make_connector=RecordingConnector)
        service.startService()
        self.session = RecordingSession()
        service.connector.connect(self.session)
        return service

    def test_agents(self):
        """
        Each agent shows its addresses, how it takes packets, and the figures
        of its last report; the router its state and broker, never the
        password.
        """
        self.session.deliver(ROUTER_QUEUE, *started("agent_1"))
        self.session.deliver(ROUTER_QUEUE, *started("agent_2", direct=False))
        report(self.service, self.session, "agent_1", 200.0, 3)
        state = self.service.view.snapshot(201.0)
        self.assertEqual(state["time"], 201.0)
        one, two = state["agents"]
        self.assertEqual((one["name"], one["direct"], one["reported"]), ("agent_1", True, True))
        self.assertIn("10.2.0.1/32", one["addresses"])
        self.assertEqual((one["packets"], one["bytes"], one["drops"], one["broker"],
                          one["connected_since"], one["report_time"]),
                         ({"in": 0, "out": 3}, {"in": 0, "out": 252}, {"no route": 1},
                          "node1:5672", 100.0, 200.0))
        self.assertEqual(one["last_packet"], 200.0)
        self.assertEqual((two["name"], two["direct"], two["reported"]),
                         ("agent_2", False, False))
        self.assertNotIn("packets", two)
        router = state["router"]
        self.assertEqual((router["state"], router["broker"], router["vhost"],
                          router["standby"], router["recording"]),
                         ("connected", "h:5672", "v", False, None))
        self.assertNotIn("p@", json.dumps(state))

    def test_rates(self):
        """
        The rates are worked out between one report and the next; the last
        packet is the last report whose counters moved; at most L{HISTORY}
        points are kept.
        """
        self.session.deliver(ROUTER_QUEUE, *started("agent_1"))
        for now, out in ((200.0, 10), (205.0, 60), (210.0, 60)):
            report(self.service, self.session, "agent_1", now, out)
            agent, = self.service.view.snapshot(now + 0.5)["agents"]
            self.service.view.snapshot(now + 0.7)
        self.assertEqual(agent["rates"], [[205.0, 0.0, 10.0], [210.0, 0.0, 0.0]])
        self.assertEqual(agent["last_packet"], 205.0)
        for step in range(HISTORY + 5):
            report(self.service, self.session, "agent_1", 211.0 + step, 60 + step)
            self.service.view.snapshot(211.5 + step)
        agent, = self.service.view.snapshot(400.0)["agents"]
        self.assertEqual(len(agent["rates"]), HISTORY)

    def test_links(self):
        """
        Without a topology every pair of agents is a link; with one, its
        links, each up only while both ends are connected, and its observers.
        """
        self.session.deliver(ROUTER_QUEUE, *started("agent_1"))
        self.session.deliver(ROUTER_QUEUE, *started("agent_2"))
        self.session.deliver(ROUTER_QUEUE, *started("agent_3"))
        self.assertEqual([link["ends"] for link in self.service.view.snapshot(1.0)["links"]],
                         [["agent_1", "agent_2"], ["agent_1", "agent_3"],
                          ["agent_2", "agent_3"]])
        topology = parse_topology('{"links": [["agent_2", "agent_1"], ["agent_1", "agent_5"]],'
                                  ' "observers": ["agent_TT"]}')
        service = self.router(topology=topology)
        self.session.deliver(ROUTER_QUEUE, *started("agent_1"))
        self.session.deliver(ROUTER_QUEUE, *started("agent_2"))
        state = service.view.snapshot(1.0)
        self.assertEqual(state["links"], [{"ends": ["agent_1", "agent_2"], "up": True},
                                          {"ends": ["agent_1", "agent_5"], "up": False}])
        self.assertEqual(state["observers"], ["agent_TT"])

    def test_agent_leaves(self):
        """
        An agent that leaves is gone from the page, its history with it.
        """
        self.session.deliver(ROUTER_QUEUE, *started("agent_1"))
        report(self.service, self.session, "agent_1", 200.0, 3)
        self.service.view.snapshot(201.0)
        self.session.deliver(ROUTER_QUEUE, keys.COMPONENT_SHUTDOWN, b'{"component": "agent_1"}')
        self.assertEqual(self.service.view.snapshot(202.0)["agents"], [])


class FeedTests(SynchronousTestCase):
    """
    The event stream and the page's resources.
    """

    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.count = 0

        def snapshot(now):
            self.count += 1
            return {"time": now, "n": self.count}

        self.feed = live.LiveFeed(self.reactor, snapshot, max_clients=2)
        self.site = live.site(self.feed, live.load_assets())

    def get(self, path):
        request = DummyRequest(path.split(b"/")[1:] if path != b"/" else [b""])
        resource = self.site.getResourceFor(request)
        body = resource.render(request)
        return request, body

    def test_events(self):
        """
        An open page gets the latest snapshot at once and a new one every
        second, as server-sent events; when it closes it gets no more.
        """
        self.feed.start()
        request, body = self.get(b"/events")
        self.assertEqual(body, live.NOT_DONE_YET)
        self.assertEqual(request.responseHeaders.getRawHeaders(b"content-type"),
                         [b"text/event-stream"])
        first = b"".join(request.written)
        self.assertTrue(first.startswith(b"retry: 2000\n\ndata: "))
        self.assertEqual(json.loads(first.split(b"data: ")[1]), {"time": 0.0, "n": 1})
        self.reactor.advance(1.0)
        self.assertEqual(json.loads(request.written[-1][6:]), {"time": 1.0, "n": 2})
        self.assertTrue(request.written[-1].endswith(b"\n\n"))
        request.processingFailed(Exception("closed"))
        written = len(request.written)
        self.reactor.advance(1.0)
        self.assertEqual(len(request.written), written)
        self.assertEqual(self.feed.clients, [])

    def test_too_many(self):
        """
        Past C{max_clients} open pages, another is answered 503.
        """
        self.get(b"/events")
        self.get(b"/events")
        request, body = self.get(b"/events")
        self.assertEqual((request.responseCode, body), (503, b"too many pages open\n"))

    def test_page_and_state(self):
        """
        The page, its script and its style are served from the package and
        name nothing from elsewhere; /state.json is one snapshot.
        """
        request, page = self.get(b"/")
        self.assertIn(b"<table id=\"agents\">", page)
        for path, kind in ((b"/app.js", b"text/javascript"), (b"/style.css", b"text/css")):
            request, body = self.get(path)
            self.assertTrue(body)
            self.assertTrue(request.responseHeaders.getRawHeaders(b"content-type")[0]
                            .startswith(kind))
            self.assertNotIn(b"http", body)
        self.assertNotIn(b"http", page)
        request, body = self.get(b"/state.json")
        self.assertEqual(json.loads(body)["n"], 1)

    def test_stop(self):
        """
        Stopping ends every open event stream and the snapshots.
        """
        self.feed.start()
        request, _ = self.get(b"/events")
        self.feed.stop()
        self.assertEqual(request.finished, 1)
        count = self.count
        self.reactor.advance(5)
        self.assertEqual(self.count, count)


class RouterWebTests(SynchronousTestCase):
    """
    The router's --web-port and --record.
    """

    def test_listens_on_loopback(self):
        """
        With --web-port the page is served on loopback, and stops with the
        router; the metrics count open pages.
        """
        reactor = MemoryReactorClock()
        service = RouterService(reactor, RouterConfig(bus=BUS, web=WebConfig(8080)),
                                FakeProcess(), make_connector=RecordingConnector)
        service.privilegedStartService()
        service.startService()
        ((port, _, _, interface),) = reactor.tcpServers
        self.assertEqual((port, interface), (8080, "127.0.0.1"))
        self.assertTrue(service.feed._loop.running)
        service.stopService()
        self.assertFalse(service.feed._loop.running)

    def test_port_taken(self):
        """
        A web port that cannot be listened on stops the router with status 1.
        """
        process = FakeProcess()
        service = RouterService(RefusingReactor(), RouterConfig(bus=BUS, web=WebConfig(8080)),
                                process, make_connector=RecordingConnector)
        service.privilegedStartService()
        service.startService()
        ((code, message),) = process.failures
        self.assertEqual(code, 1)
        self.assertIn("--web-port 8080 on 127.0.0.1", message)

    def test_record(self):
        """
        With --record the router declares the stream with its retention,
        bound to the packet keys, before its own queue.
        """
        service = RouterService(MemoryReactorClock(),
                                RouterConfig(bus=BUS, record=RecordConfig("2h", 10 ** 8)),
                                FakeProcess(), make_connector=RecordingConnector)
        service.startService()
        session = RecordingSession()
        service.connector.connect(session)
        self.assertEqual(session.streams, {STREAM: (list(RECORD_BINDINGS),
                                                    RecordConfig("2h", 10 ** 8).arguments())})
        self.assertIn(ROUTER_QUEUE, session.queues)
        self.assertEqual(service.view.snapshot(1.0)["router"]["recording"],
                         "stream 'ioppy.record': kept 2h, at most 100 MB")

    def test_record_mismatch(self):
        """
        A stream made with another retention stops the router with status 1,
        saying how to go on.
        """
        process = FakeProcess()
        service = RouterService(MemoryReactorClock(),
                                RouterConfig(bus=BUS, record=RecordConfig("2h", 10 ** 8)),
                                process, make_connector=RecordingConnector)
        service.startService()
        session = RecordingSession()
        session.stream_error = StreamMismatch("the stream 'ioppy.record' exists with other "
                                              "settings: PRECONDITION_FAILED")
        service.connector.connect(session)
        ((code, message),) = process.failures
        self.assertEqual(code, 1)
        self.assertIn("give the --record-max-age and --record-max-bytes it was made with",
                      message)
        self.assertIn("delete_queue -p v ioppy.record", message)
        self.assertEqual(service.connector.state, State.FAILED)

    def test_options(self):
        """
        --record with its retention, --web-port and --web-address.
        """
        options = RouterOptions()
        options.parseOptions(["--record", "--record-max-age", "12h", "--record-max-bytes",
                              "2GiB", "--web-port", "8080", "--web-address", "::"])
        config = options.config()
        self.assertEqual(config.record, RecordConfig("12h", 2 << 30))
        self.assertEqual(config.web, WebConfig(8080, "::"))
        options = RouterOptions()
        options.parseOptions([])
        self.assertEqual((options.config().record, options.config().web), (None, WebConfig()))
        for args, says in ((["--record-max-age", "1h"], "--record-max-age needs --record"),
                           (["--record", "--record-max-age", "1 hour"], "whole number"),
                           (["--record", "--record-max-bytes", "huge"], "500MB"),
                           (["--web-port", "0"], "outside 1..65535"),
                           (["--web-port", "80", "--web-address", "here"], "IP address")):
            error = self.assertRaises(usage.UsageError, RouterOptions().parseOptions, args)
            self.assertIn(says, str(error))
