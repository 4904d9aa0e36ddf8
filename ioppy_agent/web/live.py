"""
The live page's twisted.web side: the page and its assets, C{/state.json}
(one snapshot), and C{/events}, a server-sent event stream that carries a
snapshot every second to each open page.
"""

import importlib.resources

import orjson
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from ..program.listening import listen_tcp
from . import WebUnavailable

# Seconds between snapshots; open event streams at most.
INTERVAL = 1.0
MAX_CLIENTS = 64
ASSETS = {b"": ("index.html", b"text/html; charset=utf-8"),
          b"app.js": ("app.js", b"text/javascript; charset=utf-8"),
          b"style.css": ("style.css", b"text/css; charset=utf-8")}


class LiveFeed:
    """
    Takes a snapshot every L{INTERVAL} seconds, whether or not a page is
    open (the view works rates out between snapshots), and sends it to every
    open event stream.

    @ivar clients: The open event-stream requests.
    @ivar latest: The last snapshot, as JSON bytes.
    """

    _log = Logger()

    def __init__(self, clock, snapshot, interval=INTERVAL, max_clients=MAX_CLIENTS):
        """
        @param snapshot: Takes the time, returns the page's state (a dict).
        """
        self._clock = clock
        self._snapshot = snapshot
        self._interval = interval
        self.max_clients = max_clients
        self.clients = []
        self.latest = None
        self._loop = LoopingCall(self._tick)
        self._loop.clock = clock

    def start(self):
        self._loop.start(self._interval, now=True)

    def stop(self):
        if self._loop.running:
            self._loop.stop()
        for request in list(self.clients):
            request.finish()
        self.clients = []

    def current(self):
        """
        @return: A snapshot taken now, as JSON bytes.
        """
        self.latest = orjson.dumps(self._snapshot(self._clock.seconds()))
        return self.latest

    def _tick(self):
        try:
            event = b"data: " + self.current() + b"\n\n"
        except Exception:
            self._log.failure("the live page's snapshot failed")
            return
        for request in self.clients:
            request.write(event)

    def subscribe(self, request):
        """
        Keep C{request} open as an event stream.

        @return: C{False} if there are too many already.
        """
        if len(self.clients) >= self.max_clients:
            return False
        self.clients.append(request)
        request.notifyFinish().addBoth(lambda _: self._gone(request))
        request.write(b"retry: 2000\n\ndata: " + (self.latest or self.current()) + b"\n\n")
        return True

    def _gone(self, request):
        if request in self.clients:
            self.clients.remove(request)


class _Asset(Resource):
    isLeaf = True

    def __init__(self, body, content_type):
        Resource.__init__(self)
        self._body = body
        self._type = content_type

    def render_GET(self, request):
        request.setHeader(b"content-type", self._type)
        request.setHeader(b"cache-control", b"no-cache")
        return self._body


class _FromFeed(Resource):
    isLeaf = True

    def __init__(self, feed):
        Resource.__init__(self)
        self._feed = feed


class _State(_FromFeed):
    def render_GET(self, request):
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        return self._feed.current()


class _Events(_FromFeed):
    def render_GET(self, request):
        request.setHeader(b"content-type", b"text/event-stream")
        request.setHeader(b"cache-control", b"no-store")
        # A reverse proxy must pass the events on as they come.
        request.setHeader(b"x-accel-buffering", b"no")
        if not self._feed.subscribe(request):
            request.setResponseCode(503)
            return b"too many pages open\n"
        return NOT_DONE_YET


def load_assets():
    """
    @return: The page's files, read from the package (done before twistd
        drops privileges).
    """
    folder = importlib.resources.files("ioppy_agent.web").joinpath("static")
    return {path: (folder.joinpath(name).read_bytes(), kind)
            for path, (name, kind) in ASSETS.items()}


def site(feed, assets):
    """
    @return: The L{Site} of the page, its assets, the state and the events.
    """
    root = Resource()
    for path, (body, kind) in assets.items():
        root.putChild(path, _Asset(body, kind))
    root.putChild(b"state.json", _State(feed))
    root.putChild(b"events", _Events(feed))
    web = Site(root)
    web.noisy = False
    return web


def listen(reactor, config, feed):
    """
    Serve the page on C{config}'s address and port.

    @return: The listening port.
    @raise WebUnavailable: if the port cannot be listened on, or the page's
        files cannot be read.
    """
    try:
        assets = load_assets()
    except OSError as e:
        raise WebUnavailable(f"the live page's files cannot be read: {e}") from None
    return listen_tcp(reactor, config, site(feed, assets), "web")
