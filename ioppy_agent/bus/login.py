"""
L{open_session}: the login, the first channel, and the check that the
session's exchange exists, with each way that can fail named.
"""

from twisted.internet import defer
from twisted.python.failure import Failure
from txamqp.client import Closed

from .endpoint import TLS_ERRORS, tls_reason
from .errors import (ACCESS_REFUSED, NOT_ALLOWED, NOT_FOUND, AccessRefused, ExchangeMissing,
                     LoginRefused, TLSFailed)
from .replies import cause_of, reply_of
from .session import BusSession


@defer.inlineCallbacks
def open_session(client, url, exchange):
    """
    Log in on a connected L{BusProtocol}, open channel 1 and check that the
    exchange exists.

    @return: A L{Deferred} firing with a L{BusSession}.
    @raise LoginRefused: for a wrong user name or password.
    @raise AccessRefused: for a vhost that does not exist or is not allowed.
    @raise ExchangeMissing: if there is no such exchange.
    @raise TLSFailed: if the TLS handshake failed.
    """
    response = b"\0" + url.username.encode("utf-8") + b"\0" + url.password.encode("utf-8")
    try:
        yield client.start(response, mechanism="PLAIN")
        channel = yield client.channel(1)
        yield channel.channel_open()
        yield channel.exchange_declare(exchange=exchange, passive=True)
    except Closed as e:
        code, text = reply_of(e)
        who = f"user {url.username!r} on vhost {url.vhost!r}"
        if code == ACCESS_REFUSED and not client.tuned:
            raise LoginRefused(f"the broker refused the login of {who}: wrong user "
                               f"name or password ({text})") from None
        if code in (ACCESS_REFUSED, NOT_ALLOWED):
            raise AccessRefused(f"the broker refused {who}: {text}") from None
        if code == NOT_FOUND:
            raise ExchangeMissing(f"exchange {exchange!r} does not exist on vhost "
                                  f"{url.vhost!r}: {text}") from None
        cause = cause_of(e)
        if isinstance(cause, Failure) and cause.check(*TLS_ERRORS):
            raise TLSFailed(f"TLS connection to {url.host}:{url.port} refused: "
                            f"{tls_reason(cause.value)}") from None
        if code is None and client.login_sent and not client.tuned and \
                client.lost_reason is None:
            # A broker that does not announce authentication_failure_close
            # answers bad credentials by closing the connection without a word.
            raise LoginRefused(f"the broker refused the login of {who}: wrong user "
                               "name or password") from None
        raise
    return BusSession(client, channel, exchange, url.username)
