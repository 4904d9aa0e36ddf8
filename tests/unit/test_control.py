"""
Tests for L{ioppy_agent.model.control}: the control messages against ioppytest's
recorded ones, and what this project adds to them.
"""

import ipaddress
import json

from twisted.trial.unittest import SynchronousTestCase

from ioppy_agent.model import control, wire
from ioppy_agent.model.addressing import default_addresses
from ioppy_agent.model.routes import Peer, Routes

from ..helpers import fixture


class ControlTests(SynchronousTestCase):
    """
    Control messages match ioppytest's.
    """

    def _same_fields(self, message, routing_key, added=()):
        ref = fixture(routing_key)
        self.assertEqual(message.routing_key, ref["routing_key"])
        self.assertEqual(message.content_type, ref["properties"]["content_type"])
        body = json.loads(message.body)
        for key in added:
            del body[key]
        self.assertEqual(body, json.loads(ref["body"]))

    def test_started(self):
        """
        C{tun.started} carries the same fields as ioppytest's, and this
        project's two: C{ioppy_direct} and C{ioppy_routes}.
        """
        message = control.started("agent_1", default_addresses("agent_1"))
        self._same_fields(message, "fromAgent.agent_1.ip.tun.started",
                          added=("ioppy_direct", "ioppy_routes"))
        body = json.loads(message.body)
        self.assertEqual((body["ioppy_direct"], body["ioppy_routes"]), (True, []))

    def test_started_with_routes(self):
        """
        Routed prefixes are announced in full, and the first IPv6 /64 also in
        ioppytest's C{re_route_packets_prefix} form.
        """
        routes = (ipaddress.ip_network("192.168.5.0/24"), ipaddress.ip_network("cccc:1::/64"))
        body = json.loads(control.started("agent_1", default_addresses("agent_1"), routes).body)
        self.assertEqual(body["ioppy_routes"], ["192.168.5.0/24", "cccc:1::/64"])
        self.assertEqual(body["re_route_packets_prefix"], "cccc:1")

    def test_started_info(self):
        """
        The router reads an agent's hosts, link-local address, prefixes and
        IPv4 broadcast from C{tun.started}, ours or ioppytest's.
        """
        ours = control.started("agent_1", default_addresses("agent_1"),
                               (ipaddress.ip_network("cccc::/64"),)).body
        networks, direct, broadcast = control.started_info(ours)
        self.assertEqual([str(n) for n in networks],
                         ["10.2.0.1/32", "bbbb::1/128", "fe80::1/128", "cccc::/64"])
        self.assertEqual((direct, broadcast), (True, bytes([10, 2, 0, 255])))
        networks, direct, _ = control.started_info(
            fixture("fromAgent.agent_1.ip.tun.started")["body"])
        self.assertEqual(([str(n) for n in networks], direct),
                         (["10.2.0.1/32", "bbbb::1/128", "fe80::1/128"], False))
        old = b'{"ipv6_prefix": "bbbb", "ipv6_host": "3", "re_route_packets_prefix": "dddd"}'
        self.assertEqual([str(n) for n in control.started_info(old)[0]],
                         ["bbbb::3/128", "fe80::3/128", "dddd::/64"])
        self.assertRaises(wire.BadMessage, control.started_info, b'{"ipv4_host": "banana"}')

    def test_ready(self):
        """
        C{component.ready} matches.
        """
        self._same_fields(control.component_ready("agent_1"), "testingtool.component.ready")

    def test_shutdown(self):
        """
        C{component.shutdown} matches.
        """
        self._same_fields(control.component_shutdown("agent_1"),
                          "testingtool.component.shutdown")

    def test_component_of(self):
        """
        The component is read from ready and shutdown bodies; a body without
        one is refused.
        """
        self.assertEqual(control.component_of(
            fixture("testingtool.component.ready")["body"]), "agent_1")
        self.assertRaises(wire.BadMessage, control.component_of, b'{"component": 3}')

    def test_lossy(self):
        """
        The number of packets to drop is read; junk is refused.
        """
        self.assertEqual(control.packets_to_drop(
            fixture("routing.lossy.link.start")["body"]), 2)
        for body in (b'{}', b'{"number_of_packets_to_drop": -1}',
                     b'{"number_of_packets_to_drop": "2"}',
                     b'{"number_of_packets_to_drop": true}'):
            self.assertRaises(wire.BadMessage, control.packets_to_drop, body)

    def test_tun_start(self):
        """
        The addresses of ioppytest's C{tun.start}, including the old C{":1"}
        host form, are read.
        """
        self.assertEqual(
            control.tun_start_addresses(fixture("toAgent.agent_1.ip.tun.start")["body"]),
            ("10.2.0.1/255.255.255.0", "bbbb", ":1"))
        self.assertRaises(wire.BadMessage, control.tun_start_addresses,
                          b'{"ipv4_host": "10.2.0.1"}')

    def test_tun_start_ipv4_address(self):
        """
        A C{tun.start} in the original agent's terms, C{ipv4_address} with
        C{ipv4_host} null and no netmask, gives the /24 that agent would
        configure.
        """
        body = (b'{"ipv4_address": "10.2.0.7", "ipv4_host": null, "ipv6_prefix": "bbbb",'
                b' "ipv6_host": "7"}')
        self.assertEqual(control.tun_start_addresses(body),
                         ("10.2.0.7/255.255.255.0", "bbbb", "7"))


class RoutesMessageTests(SynchronousTestCase):
    """
    The routes message, there and back.
    """

    ROUTES = Routes("r1", 3, "direct", {"agent_1": Peer(("10.2.0.1/32",), "direct")},
                    "direct", {"agent_1": ("10.2.0.1/32",)}, ("agent_TT",))

    def test_round_trip(self):
        """
        A routes message reads back as the routes it was made of.
        """
        message = control.routes_message("agent_2", self.ROUTES)
        self.assertEqual(message.routing_key, "ioppy.routes.agent_2")
        self.assertEqual(control.routes_of(message.body), self.ROUTES)

    def test_refused(self):
        """
        Bad observers, addresses, paths and modes are refused, saying why.
        """
        good = json.loads(control.routes_message("agent_2", self.ROUTES).body)
        for change, says in ((dict(observers=["#"]), "not allowed"),
                             (dict(observers=[1]), "list of strings"),
                             (dict(mode="fast"), "unknown mode"),
                             (dict(serial="3"), "serial"),
                             (dict(destinations={"agent_1": {"addresses": ["x"]}}),
                              "not an IP address"),
                             (dict(destinations={"a.b": {"addresses": []}}), "not allowed"),
                             (dict(senders=[]), "objects")):
            body = json.dumps(dict(good, **change)).encode()
            error = self.assertRaises(wire.BadMessage, control.routes_of, body)
            self.assertIn(says, str(error))


class StatsMessageTests(SynchronousTestCase):
    """
    An agent's report of its counters, C{tun.stats}.
    """

    def test_round_trip(self):
        """
        The report carries the counters, times and broker, and reads back;
        it has no interface_name, so ioppytest's sniffer leaves it alone.
        """
        from ioppy_agent.program.stats import Counters
        counters = Counters()
        counters.moved("out", 84)
        counters.dropped("no route")
        message = control.stats("agent_1", counters, 100.5, 90.0, "node1:5672")
        self.assertEqual(message.routing_key, "ioppy.stats.agent_1")
        self.assertNotIn("interface_name", json.loads(message.body))
        self.assertEqual(control.stats_of(message.body),
                         {"packets": {"in": 0, "out": 1}, "bytes": {"in": 0, "out": 84},
                          "drops": {"no route": 1}, "time": 100.5, "connected_since": 90.0,
                          "broker": "node1:5672"})

    def test_bad(self):
        """
        A report with counters that are not whole numbers, or missing, is
        refused.
        """
        good = {"packets": {"in": 1, "out": 2}, "bytes": {"in": 3, "out": 4}, "drops": {}}
        for bad in ({**good, "packets": {"in": 1}}, {**good, "bytes": {"in": -1, "out": 0}},
                    {**good, "packets": {"in": True, "out": 0}},
                    {**good, "drops": {"x": 1.5}}, {**good, "drops": [1]},
                    {**good, "time": "now"}, [1, 2]):
            self.assertRaises(wire.BadMessage, control.stats_of, json.dumps(bad).encode())
        self.assertEqual(control.stats_of(json.dumps(good).encode())["broker"], None)

    def test_other_reasons(self):
        """
        Drop reasons that are not the programs' own are added up as
        C{"other"}: an agent's report cannot add labels to the router's
        metrics.
        """
        report = {"packets": {"in": 1, "out": 2}, "bytes": {"in": 3, "out": 4},
                  "drops": {"no route": 2, "made up": 3, "also made up": 4}}
        self.assertEqual(control.stats_of(json.dumps(report).encode())["drops"],
                         {"no route": 2, "other": 7})
