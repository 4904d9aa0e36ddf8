"""
Reaching the broker: a client endpoint that looks the broker's name up
without threads (C{/etc/hosts}, then DNS, with twisted.names), connects over
TCP and, for C{amqps://}, wraps the connection in TLS; and the words for
TLS failures.
"""

import socket

from OpenSSL.SSL import Error as OpenSSLError
from service_identity import VerificationError
from twisted.internet import defer
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, wrapClientTLS
from twisted.internet.error import DNSLookupError
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.names import cache, client, dns, hosts
from twisted.names.error import AuthoritativeDomainError, DNSQueryTimeoutError, DomainError
from twisted.names.resolve import ResolverChain
from zope.interface import implementer

# What a failed TLS handshake or certificate check raises.
TLS_ERRORS = (OpenSSLError, VerificationError)


def tls_reason(error):
    """
    @return: A readable reason from a pyOpenSSL error or a service_identity
        verification error.
    """
    if isinstance(error, VerificationError):
        return f"the broker's certificate is not for this host ({error})"
    reasons = [part[2] for part in (error.args[0] if error.args else [])
               if isinstance(part, tuple) and len(part) == 3]
    return "; ".join(r for r in reasons if r) or str(error)


class HostsThenDNS:
    """
    A twisted.names resolver that reads C{/etc/hosts} first and asks the
    servers of C{/etc/resolv.conf} only for names not there (the DNS client
    is made on first use).  Unlike the reactor's default resolver
    (C{getaddrinfo} in a thread pool), it uses no threads.
    """

    def __init__(self, reactor, hosts_file=b"/etc/hosts", resolv="/etc/resolv.conf"):
        self._reactor = reactor
        self._hosts = hosts.Resolver(file=hosts_file)
        self._resolv = resolv
        self._dns = None

    def _chain(self):
        if self._dns is None:
            self._dns = ResolverChain([
                cache.CacheResolver(reactor=self._reactor),
                client.Resolver(resolv=self._resolv, reactor=self._reactor)])
        return self._dns

    def _lookup(self, method, name, timeout):
        d = getattr(self._hosts, method)(name, timeout)

        def not_in_hosts(reason):
            reason.trap(DomainError, DNSLookupError)
            return getattr(self._chain(), method)(name, timeout)

        return d.addErrback(not_in_hosts)

    def lookupAddress(self, name, timeout=None):
        return self._lookup("lookupAddress", name, timeout)

    def lookupIPV6Address(self, name, timeout=None):
        return self._lookup("lookupIPV6Address", name, timeout)


@defer.inlineCallbacks
def resolve(resolver, host):
    """
    Look up C{host}'s IPv4 address, else its IPv6 address.

    @return: A L{Deferred} firing with the address as text.
    @raise DNSLookupError: if there is neither.
    """
    for lookup, kind in ((resolver.lookupAddress, dns.A),
                         (resolver.lookupIPV6Address, dns.AAAA)):
        try:
            answers, _, _ = yield lookup(host, timeout=(1, 3, 5))
        except (DNSLookupError, DomainError, AuthoritativeDomainError,
                defer.TimeoutError, DNSQueryTimeoutError):
            continue
        for record in answers:
            if record.type == kind:
                if kind == dns.A:
                    return record.payload.dottedQuad()
                return socket.inet_ntop(socket.AF_INET6, record.payload.address)
    raise DNSLookupError(f"{host} has no IPv4 or IPv6 address")


@implementer(IStreamClientEndpoint)
class BrokerEndpoint:
    """
    TCP to the broker, with TLS if given client TLS options: an address is
    used as it is; a host name is looked up with L{resolve} at each
    connection attempt.
    """

    def __init__(self, reactor, host, port, timeout=10, resolver=None, tls=None):
        self._reactor = reactor
        self._host = host
        self._port = port
        self._timeout = timeout
        self._resolver = resolver
        self._tls = tls

    @defer.inlineCallbacks
    def connect(self, factory):
        address = self._host
        if not (isIPAddress(address) or isIPv6Address(address)):
            if self._resolver is None:
                self._resolver = HostsThenDNS(self._reactor)
            address = yield resolve(self._resolver, address)
        kind = TCP4ClientEndpoint if isIPAddress(address) else TCP6ClientEndpoint
        endpoint = kind(self._reactor, address, self._port, timeout=self._timeout)
        if self._tls is not None:
            endpoint = wrapClientTLS(self._tls, endpoint)
        return (yield endpoint.connect(factory))
