"""
L{BusConnector}: keeps one AMQP session open, connecting again with
jittered exponential back-off whenever it is lost.

Its states are the members of L{State}, and every transition between them
is written in L{TRANSITIONS}: an event that has no transition from the
current state (a connection attempt failing after C{stop}, say) changes
nothing and does nothing.

Twisted's L{ClientService} is not used: its state machine has no transition
for a connection that closes while C{prepareConnection} runs (it raises
C{NoTransition}), and it resets the back-off as soon as TCP connects,
before the broker has accepted the login.
"""

import enum

from twisted.application.internet import backoffPolicy
from twisted.internet import defer
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure

from .. import __version__
from .endpoint import TLS_ERRORS, BrokerEndpoint, tls_reason
from .errors import AccessRefused, FatalBusError, QueueHeld
from .login import open_session
from .protocol import BusProtocol
from .replies import cause_of, reply_of
from .spec import load_spec
from .tls import TLSSettings


class State(enum.Enum):
    """
    Where a L{BusConnector} is; the value is what the status file shows.
    """

    STOPPED = "stopped"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    WAITING = "waiting to reconnect"
    FAILED = "failed"
    STOPPING = "stopping"


# (state, event) to the next state.
TRANSITIONS = {
    (State.STOPPED, "start"): State.CONNECTING,
    (State.CONNECTING, "ready"): State.CONNECTED,
    (State.CONNECTING, "fail"): State.WAITING,
    (State.CONNECTING, "refuse"): State.FAILED,
    (State.CONNECTED, "lose"): State.WAITING,
    (State.CONNECTED, "refuse"): State.FAILED,
    (State.WAITING, "retry"): State.CONNECTING,
    # Stopping closes the session in order; STOPPED once it is closed.
    **{(state, "stop"): State.STOPPING for state in State if state is not State.STOPPED},
    (State.STOPPED, "stop"): State.STOPPED,
    (State.STOPPING, "stopped"): State.STOPPED,
}


def describe(failure, client=None):
    """
    @param client: The L{BusProtocol} of the attempt, if it got that far.
    @return: One line saying why a connection attempt failed, for the log.
    """
    if client is not None and client.lost_reason:
        return client.lost_reason
    cause = cause_of(failure.value)
    if isinstance(cause, Failure):
        failure = cause
        cause = cause.value
    code, text = reply_of(failure.value)
    if code is not None:
        return f"the broker closed the connection: {code} {text}"
    if isinstance(cause, TLS_ERRORS):
        return f"TLS failed: {tls_reason(cause)}"
    return failure.getErrorMessage() or failure.type.__name__


class BusConnector:
    """
    Keeps an AMQP session open: connects, logs in, then calls C{setup} with
    the new L{BusSession} to declare, bind and consume.  When the connection
    is lost, or connecting or set-up fails, it tries the next broker after a
    back-off (Twisted's L{backoffPolicy}), which starts over only once a
    session is fully set up.

    @ivar session: The current L{BusSession}, or C{None} while there is none.
    @ivar state: A L{State}.
    @ivar failures: Failed attempts since the last good session.
    @ivar sessions: Sessions set up since the start.
    """

    _log = Logger()

    def __init__(self, reactor, config, setup, on_fatal, connection_name="ioppy",
                 endpoint=None, timeout=10, retry_policy=None, deliveries_per_read=64):
        """
        @param config: A L{BusConfig}.
        @param setup: Called with each new L{BusSession}; may return a
            L{Deferred}.  If it fails, the connection is dropped and retried,
            unless it fails with a L{FatalBusError}.
        @param on_fatal: Called with the L{FatalBusError} that made the
            connector give up.
        @param endpoint: Connect with this instead (tests).
        @param retry_policy: Failed attempts in a row to seconds to wait.
        @param deliveries_per_read: Deliveries each connection hands over
            before it lets the reactor run again.
        """
        self.config = config
        self.urls = config.urls
        self.exchange = config.exchange
        self.session = None
        self.state = State.STOPPED
        self.failures = 0
        self.sessions = 0
        self._setup = setup
        self._on_fatal = on_fatal
        self._clock = reactor
        self._current = 0
        tls = config.tls if config.tls is not None else TLSSettings()
        self._endpoints = [
            endpoint if endpoint is not None else BrokerEndpoint(
                reactor, u.host, u.port, timeout, tls=tls.for_host(u.host) if u.tls else None)
            for u in self.urls]
        self._factories = [BusFactory(u.vhost, config.heartbeat, reactor, connection_name,
                                      deliveries_per_read) for u in self.urls]
        self._policy = retry_policy or backoffPolicy(initialDelay=0.5, maxDelay=5.0)
        self._attempt = None
        self._retry = None
        self._client = None

    def _move(self, event):
        """
        Take the transition for C{event} from the current state.

        @return: Whether there was one.
        """
        after = TRANSITIONS.get((self.state, event))
        if after is None:
            return False
        self.state = after
        return True

    @property
    def url(self):
        """
        @return: The L{BrokerURL} in use (or tried next).
        """
        return self.urls[self._current]

    def prepare(self):
        """
        Load what connecting needs from disk (the AMQP spec file), while the
        process still has the privileges it started with: after twistd's
        C{--uid} the package's directory may be unreadable.
        """
        load_spec()

    def start(self):
        """
        Start connecting.
        """
        if self._move("start"):
            self._connect()

    def _connect(self):
        self._retry = None
        url = self.url
        self._log.info("connecting to {url}", url=url.masked())
        self._attempt = d = self._endpoints[self._current].connect(
            self._factories[self._current])
        d.addCallback(self._open, url)
        d.addCallbacks(self._ready, self._attempt_failed)

    def _open(self, client, url):
        self._client = client
        d = open_session(client, url, self.exchange)

        def opened(session):
            self.session = session
            return defer.maybeDeferred(self._setup, session).addCallback(lambda _: client)

        def not_ready(reason):
            self.session = None
            if client.transport is not None:
                client.transport.loseConnection()
            return reason

        return d.addCallback(opened).addErrback(not_ready)

    def _ready(self, client):
        self._attempt = None
        if not self._move("ready"):
            return
        self.failures = 0
        self.sessions += 1
        client.ready = True
        client.disconnected.wait().addCallback(self._lost, client)

    def _refusal(self, client):
        """
        @return: The L{AccessRefused} for a permission the broker refused on
            C{client}'s connection, or C{None}.
        """
        if client is None or client.refused is None:
            return None
        url = self.url
        return AccessRefused(f"the broker refused user {url.username!r} on vhost "
                             f"{url.vhost!r} a permission: {client.refused}")

    def _attempt_failed(self, reason):
        self._attempt = None
        client, self._client = self._client, None
        fatal = reason.value if reason.check(FatalBusError) else self._refusal(client)
        if fatal is not None:
            if self._move("refuse"):
                self._on_fatal(fatal)
            return None
        if not self._move("fail"):
            return None
        self.failures += 1
        failed = self.url
        self._current = (self._current + 1) % len(self.urls)
        # A queue held elsewhere (a standby router) is tried again soon, and
        # quietly: the service said once why it waits.
        held = reason.check(QueueHeld) is not None
        log = self._log.debug if held else self._log.warn
        delay = reason.value.retry_after if held else self._policy(self.failures)
        log("connecting to {url} failed: {error}; trying {next} in {delay:.1f} s",
            url=failed.masked(), error=describe(reason, client), delay=delay,
            next="again" if self.url is failed else self.url.masked())
        self._retry = self._clock.callLater(delay, self._try_again)
        return None

    def _lost(self, _, client):
        if self._client is not client:
            return
        self._client = None
        self.session = None
        refused = self._refusal(client)
        if refused is not None:
            if self._move("refuse"):
                self._on_fatal(refused)
            return
        if not self._move("lose"):
            return
        lost = self.url
        self._current = (self._current + 1) % len(self.urls)
        delay = self._policy(1)
        self._log.warn("lost the connection to {url} ({reason}); connecting to {next} in "
                       "{delay:.1f} s", url=lost.masked(),
                       reason=client.lost_reason or "the connection closed", delay=delay,
                       next="it again" if self.url is lost else self.url.masked())
        self._retry = self._clock.callLater(delay, self._try_again)

    def _try_again(self):
        self._retry = None
        if self._move("retry"):
            self._connect()

    @defer.inlineCallbacks
    def stop(self, farewell=(), timeout=1.0):
        """
        Close the session in order (see L{BusSession.close}), and stop
        reconnecting: L{State.STOPPING} meanwhile, L{State.STOPPED} once the
        close has finished.
        """
        self._move("stop")
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        if self._attempt is not None:
            attempt, self._attempt = self._attempt, None
            attempt.cancel()
        session, self.session = self.session, None
        try:
            if session is not None:
                yield session.close(farewell, timeout)
            elif self._client is not None and self._client.transport is not None:
                self._client.transport.loseConnection()
        finally:
            self._move("stopped")


class BusFactory(Factory):
    """
    Builds L{BusProtocol}s for one broker URL.

    @ivar deliveries_per_read: The protocols' L{BusProtocol.max_deliveries_per_read}.
    """

    noisy = False

    def __init__(self, vhost, heartbeat, clock, connection_name,
                 deliveries_per_read=BusProtocol.max_deliveries_per_read):
        self.vhost = vhost
        self.heartbeat = heartbeat
        self.clock = clock
        self.deliveries_per_read = deliveries_per_read
        self.client_properties = {"product": "ioppy-agent", "version": __version__,
                                  "connection_name": connection_name}

    def buildProtocol(self, addr):
        protocol = BusProtocol(load_spec(), self.vhost, self.heartbeat, self.clock,
                               self.client_properties)
        protocol.max_deliveries_per_read = self.deliveries_per_read
        return protocol
