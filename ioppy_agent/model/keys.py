"""
Every name on the bus, in one place: the routing keys of each message, the
queues, the exchanges and the steering headers.  Keys are built here,
parsed here (L{parse}, which each core dispatches on), and C{ioppy-session}
grants its permissions from the same templates (L{pattern}).

Under C{fromAgent.#} and C{toAgent.#} are only ioppytest's own messages, as
ioppytest's library knows them: its sniffer binds C{fromAgent.#} and takes
a message for a packet by its key.  ioppy's own messages (routes, their
acknowledgement, the counters) are under C{ioppy.#}.

A packet always goes out on C{fromAgent.<sender>.ip.tun.packet.raw}.  One
the sender steers straight to its receivers names their inboxes
(C{ioppy.to.<name>}, L{INBOX}) in its C{CC} header, RabbitMQ's
sender-selected distribution, and says so in the L{DIRECT} header: the
copy the router's headers exchange L{STEER} gets then goes nowhere.  One
without it falls to L{UNSTEERED}, where the router consumes it (see
docs/architecture.md, "How packets travel").  Pure: no I/O.
"""

import re
from functools import lru_cache
from typing import NamedTuple

# The kinds of key, by what they carry.
PACKET_FROM = "packet from"
PACKET_TO = "packet to"
TUN_START = "tun.start"
TUN_STARTED = "tun.started"
ROUTES = "routes"
INBOX = "inbox"
BOUND = "bound"
STATS = "stats"
READY = "component.ready"
SHUTDOWN = "component.shutdown"
LOSSY = "lossy link"

# The keys of one agent each: C{{}} stands for the agent's name.
TEMPLATES = {
    PACKET_FROM: "fromAgent.{}.ip.tun.packet.raw",
    TUN_STARTED: "fromAgent.{}.ip.tun.started",
    PACKET_TO: "toAgent.{}.ip.tun.packet.raw",
    TUN_START: "toAgent.{}.ip.tun.start",
    ROUTES: "ioppy.routes.{}",
    INBOX: "ioppy.to.{}",
    BOUND: "ioppy.bound.{}",
    STATS: "ioppy.stats.{}",
}
# The keys of the whole session.
COMPONENT_READY = "testingtool.component.ready"
COMPONENT_SHUTDOWN = "testingtool.component.shutdown"
LOSSY_LINK_START = "routing.lossy.link.start"
FIXED = {COMPONENT_READY: READY, COMPONENT_SHUTDOWN: SHUTDOWN, LOSSY_LINK_START: LOSSY}
# The component name the packet router announces itself with.
ROUTER_NAME = "packet_router"

# Queues and exchanges.
AGENT_QUEUE = "ioppy.agent.{}"
ROUTER_QUEUE = "ioppy.router"
CAPTURE_QUEUE = "ioppy.router.capture"
RECORD_STREAM = "ioppy.record"
# The headers exchange every packet also passes through (bound from the
# topic exchange), the fanout exchange it drops the packets sent straight
# into (it has no bindings), and the one the others fall to, for the router.
STEER = "ioppy.steer"
SENT_STRAIGHT = "ioppy.direct"
UNSTEERED = "ioppy.unsteered"
# In a session made by C{ioppy-session}, the broker's user of each program:
# C{<vhost>.<name>}, and C{<vhost>.router} for the router.
SESSION_USER = "{}.{}"
SESSION_ROUTER = "router"
# The header of a packet sent straight (with CC), and its value.
DIRECT = "ioppy-direct"
DIRECT_VALUE = "yes"

_SPLIT = {kind: template.split("{}") for kind, template in TEMPLATES.items()}


class Key(NamedTuple):
    """
    A routing key, parsed.

    @ivar kind: One of L{PACKET_FROM}, L{PACKET_TO}, L{TUN_START} ... L{LOSSY}.
    @ivar name: The agent it belongs to, or C{None} for a key of the session.
    """

    kind: str
    name: str = None


def key(kind, name):
    """
    @return: The routing key of C{kind} for agent C{name} (C{"*"} for a
        binding that takes every agent's).
    """
    return TEMPLATES[kind].format(name)


def packet_from(name):
    return key(PACKET_FROM, name)


def packet_to(name):
    return key(PACKET_TO, name)


def tun_start(name):
    return key(TUN_START, name)


def tun_started(name):
    return key(TUN_STARTED, name)


def routes(name):
    return key(ROUTES, name)


def bound(name):
    return key(BOUND, name)


def stats(name):
    return key(STATS, name)


def inbox(name):
    return key(INBOX, name)


def any_of(kind):
    """
    @return: The binding that takes the keys of C{kind} of every agent.
    """
    return key(kind, "*")


@lru_cache(maxsize=4096)
def parse(routing_key):
    """
    @return: The L{Key} C{routing_key} is, or C{None} for a key no ioppy
        program uses.  An agent's name is one word: no dots, not empty.
        Kept for the keys seen last: every packet's key is parsed, and a
        session has few.
    """
    fixed = FIXED.get(routing_key)
    if fixed is not None:
        return Key(fixed)
    for kind, (head, tail) in _SPLIT.items():
        if routing_key.startswith(head) and routing_key.endswith(tail):
            name = routing_key[len(head):len(routing_key) - len(tail)]
            if name and "." not in name and name != "*" and name != "#":
                return Key(kind, name)
    return None


def agent_bindings(name):
    """
    @return: The routing keys agent C{name}'s queue is bound to.
    """
    return (packet_to(name), inbox(name), tun_start(name), routes(name), COMPONENT_READY)


def agent_queue(name, run=None):
    """
    @return: Agent C{name}'s queue, or with C{run} (hex), the queue of this
        run of it.
    """
    queue = AGENT_QUEUE.format(name)
    return queue if run is None else f"{queue}.{run}"


def session_user(vhost, name):
    """
    @return: The user C{ioppy-session} makes for C{name} (an agent, or
        L{SESSION_ROUTER}) in the session of vhost C{vhost}.
    """
    return SESSION_USER.format(vhost, name)


def session_of(url, name):
    """
    @param url: The L{BrokerURL} program C{name} connects with.
    @return: The vhost, if it is the session C{ioppy-session} made for
        C{name} (the user is C{<vhost>.<name>}), else C{None}.
    """
    return url.vhost if url.username == session_user(url.vhost, name) else None


def speaker(vhost, user_id):
    """
    @param user_id: The C{user_id} property of a message, which the broker
        checked against the publishing connection's user, or C{None}.
    @return: The program of session C{vhost} that published it (an agent's
        name, or L{SESSION_ROUTER}), or C{None} for a user not of the
        session, or no user id.
    """
    head = vhost + "."
    if not user_id or not user_id.startswith(head):
        return None
    name = user_id[len(head):]
    return name if name and "." not in name else None


def pattern(template, name=None):
    """
    @param template: A key or resource name, with C{{}} for the agent's name.
    @param name: The agent, or C{None} for any agent (or, for a binding, C{*}).
    @return: A regular expression (not anchored) for the names C{template}
        makes, as RabbitMQ's permissions take them.
    """
    head, brace, tail = template.partition("{}")
    if not brace:
        return re.escape(template)
    middle = re.escape(name) if name is not None else r"[^.]+"
    return re.escape(head) + middle + re.escape(tail)
