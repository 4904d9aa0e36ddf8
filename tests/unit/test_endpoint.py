"""
Tests for L{ioppy_agent.bus.endpoint}: reaching the broker by name or
address without threads.
"""

from twisted.internet import defer
from twisted.internet.error import DNSLookupError
from twisted.internet.protocol import Factory
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.names import dns
from twisted.trial.unittest import SynchronousTestCase

from ioppy_agent.bus.endpoint import BrokerEndpoint, HostsThenDNS, resolve


class FakeResolver:
    """
    Answers A and AAAA look-ups from two dicts.
    """

    def __init__(self, a=None, aaaa=None):
        self.a = a or {}
        self.aaaa = aaaa or {}
        self.asked = []

    def _answer(self, table, kind, record, host):
        from twisted.names.error import DomainError
        self.asked.append((kind, host))
        if host not in table:
            return defer.fail(DomainError(host))
        rr = dns.RRHeader(host, kind, payload=record(table[host]))
        return defer.succeed(([rr], [], []))

    def lookupAddress(self, host, timeout=None):
        return self._answer(self.a, dns.A, dns.Record_A, host)

    def lookupIPV6Address(self, host, timeout=None):
        return self._answer(self.aaaa, dns.AAAA, dns.Record_AAAA, host)


class EndpointTests(SynchronousTestCase):
    """
    L{BrokerEndpoint} connects by address, looking names up without threads.
    """

    def test_ipv4_name(self):
        """
        A name with an A record is connected to over IPv4.
        """
        reactor = MemoryReactorClock()
        resolver = FakeResolver(a={"broker.example": "192.0.2.5"})
        BrokerEndpoint(reactor, "broker.example", 5673, resolver=resolver).connect(Factory())
        self.assertEqual(reactor.tcpClients[0][:2], ("192.0.2.5", 5673))

    def test_ipv6_fallback(self):
        """
        A name with only an AAAA record is connected to over IPv6.
        """
        reactor = MemoryReactorClock()
        resolver = FakeResolver(aaaa={"broker.example": "2001:db8::5"})
        BrokerEndpoint(reactor, "broker.example", 5672, resolver=resolver).connect(Factory())
        self.assertEqual(reactor.tcpClients[0][:2], ("2001:db8::5", 5672))
        self.assertEqual([k for k, _ in resolver.asked], [dns.A, dns.AAAA])

    def test_unknown_name(self):
        """
        A name with no address fails with L{DNSLookupError}.
        """
        d = BrokerEndpoint(MemoryReactorClock(), "nowhere.example", 5672,
                           resolver=FakeResolver()).connect(Factory())
        self.failureResultOf(d, DNSLookupError)

    def test_address_not_looked_up(self):
        """
        An IP address is used as it is.
        """
        reactor = MemoryReactorClock()
        resolver = FakeResolver()
        BrokerEndpoint(reactor, "::1", 5672, resolver=resolver).connect(Factory())
        self.assertEqual((reactor.tcpClients[0][:2], resolver.asked), (("::1", 5672), []))


class HostsThenDNSTests(SynchronousTestCase):
    """
    L{HostsThenDNS} answers from the hosts file, and asks DNS only for other
    names.
    """

    def setUp(self):
        self.hosts = self.mktemp()
        with open(self.hosts, "w") as f:
            f.write("127.0.0.1 localhost\n::1 localhost ip6-localhost\n")
        self.resolver = HostsThenDNS(Clock(), hosts_file=self.hosts.encode())

    def test_from_hosts_file(self):
        """
        A name in the hosts file is answered without making a DNS client.
        """
        self.assertEqual(self.successResultOf(resolve(self.resolver, "localhost")),
                         "127.0.0.1")
        self.assertIsNone(self.resolver._dns)

    def test_other_names_ask_dns(self):
        """
        A name not in the hosts file goes to DNS.
        """
        dns_server = FakeResolver(a={"broker.example": "192.0.2.9"})
        self.resolver._chain = lambda: dns_server
        self.assertEqual(self.successResultOf(resolve(self.resolver, "broker.example")),
                         "192.0.2.9")
        self.assertEqual(dns_server.asked, [(dns.A, "broker.example")])
