"""
C{ioppy-session}: the organiser's command that makes a session on the
broker, with credentials for each participant that allow what that
participant needs and nothing more, and removes it again.

    ioppy-session create interop42 --broker amqp://broker.example.org \\
        --participant agent_1 --participant agent_2 --observer agent_TT --out ./interop42
    ioppy-session delete interop42

C{create} makes the vhost C{interop42}, the user C{interop42.router} for
the router and C{interop42.<name>} for each participant, each with a random
password, sets their permissions, and writes one C{--url-file} per user
(mode 0600) to hand over.  C{delete} removes the users and the vhost.

It drives C{rabbitmqctl} on the broker's host: RabbitMQ's own tool, always
installed with the broker, needing no plugin (the HTTP management API needs
C{rabbitmq_management} enabled, which the machines here do not have) and
talking to the node as its administrator.  Passwords go to it on standard
input, never on a command line.

What each user may do (RabbitMQ checks the regular permissions on queues
and exchanges, and the topic permissions on the routing key of each publish
and each binding to a topic exchange), made from the names in
L{ioppy_agent.model.keys}:

  - participant C{agent_N}: nothing to configure (RabbitMQ's configure
    permission covers exchanges as well as queues, and an exchange or a
    queue of a participant's own, with an alternate exchange, a
    dead-letter exchange or an exchange binding into the session's
    exchange, would carry messages there under keys its topic
    permissions do not give it); read (consume) only its own queue
    C{ioppy.agent.agent_N}, which the router declares and binds for it;
    write only to the session's exchange, and publish there only its own
    C{fromAgent.agent_N.ip.tun.packet.raw} and C{.started},
    C{ioppy.bound.agent_N}, C{ioppy.stats.agent_N} and the component
    announcements, naming any agent's inbox in a C{CC} header (RabbitMQ
    3.10 does not check C{CC} keys; later releases check them as publish
    keys).  It binds nothing;
  - the router: its queues C{ioppy.router} and C{ioppy.router.capture},
    the session's recording stream C{ioppy.record} (which ioppy-capture
    reads with the router's URL file), each participant's queue, and its
    exchanges C{ioppy.steer}, C{ioppy.direct}, C{ioppy.unsteered}; publish
    C{toAgent.*}, C{ioppy.routes.*} and its announcement; bind anything.

C{create} also writes C{grants.json}: the addresses and prefixes each
participant may own (C{agent_N}: C{10.2.0.N}, C{bbbb::N} and C{fe80::N},
and what C{--grant} adds), for the router's C{--grants}.

The pure part (L{grants}, L{url_for}) is separate from running
C{rabbitmqctl} (L{Rabbitmqctl}), which the tests replace.
"""

import argparse
import json
import os
import re
import secrets
import subprocess
import sys
from dataclasses import dataclass
from urllib.parse import quote

from ..bus import DEFAULT_EXCHANGE
from ..bus.url import BadURL, parse_amqp_url
from ..model import keys
from ..model.addressing import BadAddress, check_name
from ..model.grants import BadGrants, Grants

ROUTER = keys.SESSION_ROUTER
GRANTS_FILE = "grants.json"


@dataclass(frozen=True)
class Grant:
    """
    One user's permissions on the session's vhost: regular expressions, as
    RabbitMQ takes them.
    """

    user: str
    configure: str
    write: str
    read: str
    topic_write: str
    topic_read: str


def _alternatives(*patterns):
    return "^(" + "|".join(patterns) + ")$"


# The keys each publishes (C{{}} is its name).
PARTICIPANT_PUBLISHES = (keys.PACKET_FROM, keys.TUN_STARTED, keys.BOUND, keys.STATS)
ROUTER_PUBLISHES = (keys.PACKET_TO, keys.TUN_START, keys.ROUTES)


# Nothing: RabbitMQ's regular expression that matches no name.
NOTHING = "^$"


def participant_grant(session, name, exchange=DEFAULT_EXCHANGE):
    """
    @return: The L{Grant} of participant C{name}.
    """
    return Grant(
        user=keys.session_user(session, name),
        configure=NOTHING,
        write=_alternatives(re.escape(exchange)),
        read=_alternatives(keys.pattern(keys.AGENT_QUEUE, name)),
        topic_write=_alternatives(
            *(keys.pattern(keys.TEMPLATES[kind], name) for kind in PARTICIPANT_PUBLISHES),
            keys.pattern(keys.TEMPLATES[keys.INBOX]),
            keys.pattern(keys.COMPONENT_READY), keys.pattern(keys.COMPONENT_SHUTDOWN)),
        topic_read=NOTHING)


def router_grant(session, exchange=DEFAULT_EXCHANGE):
    """
    @return: The L{Grant} of the session's router.
    """
    queues = tuple(keys.pattern(q) for q in (keys.ROUTER_QUEUE, keys.CAPTURE_QUEUE,
                                             keys.RECORD_STREAM, keys.AGENT_QUEUE))
    exchanges = tuple(keys.pattern(e) for e in (keys.STEER, keys.SENT_STRAIGHT,
                                                keys.UNSTEERED))
    resources = (*queues, *exchanges, re.escape(exchange))
    # amq.default: ioppy-capture marks the end of what it reads by publishing
    # straight to the recording stream.
    return Grant(user=keys.session_user(session, ROUTER),
                 configure=_alternatives(*queues, *exchanges),
                 write=_alternatives(*resources, r"amq\.default"),
                 read=_alternatives(*resources),
                 topic_write=_alternatives(
                     *(keys.pattern(keys.TEMPLATES[kind]) for kind in ROUTER_PUBLISHES),
                     keys.pattern(keys.COMPONENT_READY)),
                 topic_read=".*")


def grants(session, participants, exchange=DEFAULT_EXCHANGE):
    """
    @return: C{(name, Grant)} for the router and each participant.
    """
    out = [(ROUTER, router_grant(session, exchange))]
    out += [(name, participant_grant(session, name, exchange)) for name in participants]
    return out


def url_for(broker, user, password, vhost):
    """
    @param broker: A L{BrokerURL} saying where the broker is.
    @return: The URL user C{user} connects with.
    """
    host = f"[{broker.host}]" if ":" in broker.host else broker.host
    scheme = "amqps" if broker.tls else "amqp"
    return (f"{scheme}://{quote(user, safe='')}:{quote(password, safe='')}@{host}:"
            f"{broker.port}/{quote(vhost, safe='')}")


class CommandFailed(Exception):
    """
    C{rabbitmqctl} failed; the message holds what it said.
    """


class Rabbitmqctl:
    """
    Runs C{rabbitmqctl} against one node.
    """

    def __init__(self, node=None, run=subprocess.run):
        self._node = ("-n", node) if node else ()
        self._run = run

    def __call__(self, *args, stdin=None):
        """
        @return: What it printed.
        @raise CommandFailed: if it exits with an error.
        """
        try:
            done = self._run(["rabbitmqctl", "-q", *self._node, *args], input=stdin,
                             capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise CommandFailed(f"rabbitmqctl {args[0]}: {e}") from None
        if done.returncode != 0:
            said = (done.stderr or done.stdout).strip().splitlines()
            raise CommandFailed(f"rabbitmqctl {args[0]} failed: "
                                f"{said[-1] if said else done.returncode}")
        return done.stdout


@dataclass(frozen=True)
class Limits:
    """
    What one user of a session may hold on the broker, and the whole
    vhost's queues, so that no participant's pile of connections, channels
    or queues exhausts the broker for the others.  The defaults leave room
    for honest reconnects: a connection that died without closing stays on
    the broker until its heartbeats time out (20 s with the programs'
    default --heartbeat), while the program connects again within seconds.

    @ivar connections: Connections per user (an agent holds one; the
        router one, a standby router one, each ioppy-capture one).
    @ivar channels: Channels per user, all its connections together (each
        program opens one per connection).
    @ivar queues: Queues in the vhost, or C{None} for
        L{QUEUES_PER_PARTICIPANT} per participant and L{QUEUES_SPARE} more
        (ioppytest's tools declare queues of their own).
    """

    connections: int = 16
    channels: int = 64
    queues: int = None

    def queues_for(self, participants):
        if self.queues is not None:
            return self.queues
        return QUEUES_PER_PARTICIPANT * len(participants) + QUEUES_SPARE


QUEUES_PER_PARTICIPANT = 4
QUEUES_SPARE = 64


def _write_private(path, text):
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as f:
        f.write(text)


def create(ctl, session, participants, broker, out_dir, exchange=DEFAULT_EXCHANGE,
           password=lambda: secrets.token_urlsafe(24), limits=Limits(), owners=None):
    """
    Make the session: vhost, users, permissions, limits, one URL file per
    user in C{out_dir}, and the grants file (L{GRANTS_FILE}) for the router.

    @param owners: The L{Grants} of addresses (each participant's defaults
        if not given).
    @return: C{(name, path)} of each URL file written.
    """
    if owners is None:
        owners = Grants.default(participants)
    existing = ctl("list_vhosts", "name").split()
    if session in existing:
        raise CommandFailed(f"vhost {session!r} exists already; delete the session first "
                            f"(ioppy-session delete {session}) or choose another name")
    os.makedirs(out_dir, mode=0o700, exist_ok=True)
    ctl("add_vhost", session)
    ctl("set_vhost_limits", "-p", session,
        json.dumps({"max-queues": limits.queues_for(participants)}))
    written = []
    for name, grant in grants(session, participants, exchange):
        secret = password()
        ctl("add_user", grant.user, stdin=secret)
        ctl("set_permissions", "-p", session, grant.user, grant.configure, grant.write,
            grant.read)
        ctl("set_topic_permissions", "-p", session, grant.user, exchange, grant.topic_write,
            grant.topic_read)
        ctl("set_user_limits", grant.user, json.dumps(
            {"max-connections": limits.connections, "max-channels": limits.channels}))
        path = os.path.join(out_dir, f"{name}.url")
        _write_private(path, url_for(broker, grant.user, secret, session) + "\n")
        written.append((name, path))
    _write_private(os.path.join(out_dir, GRANTS_FILE), owners.dumps())
    return written


def delete(ctl, session):
    """
    Remove the session's users and its vhost.

    @return: The users removed.
    """
    prefix = session + "."
    users = [line.split("\t")[0] for line in ctl("list_users").splitlines()]
    removed = [u for u in users if u.startswith(prefix)]
    for user in removed:
        ctl("delete_user", user)
    if session in ctl("list_vhosts", "name").split():
        ctl("delete_vhost", session)
    return removed


def _name(text):
    try:
        return check_name(text)
    except BadAddress as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _broker(text):
    try:
        url = parse_amqp_url(text)
    except BadURL as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    if "@" in text:
        raise argparse.ArgumentTypeError("give the broker without user or password "
                                         "(amqp://host[:port]); each user gets its own")
    return url


def _grant(text):
    name, sep, nets = text.partition("=")
    if not sep or not nets:
        raise argparse.ArgumentTypeError(f"{text!r}: give NAME=PREFIX[,PREFIX...], as in "
                                         "agent_1=2001:db8:1::/48")
    return _name(name), tuple(n.strip() for n in nets.split(",") if n.strip())


def _count(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return value


def parser():
    top = argparse.ArgumentParser(
        prog="ioppy-session",
        description="Make or remove a session on the broker: a vhost, and credentials "
                    "for the router and each participant that allow only what each needs.")
    top.add_argument("--node", default=None,
                     help="the RabbitMQ node to run rabbitmqctl against (default: the "
                          "local node)")
    commands = top.add_subparsers(dest="command", required=True)
    make = commands.add_parser("create", help="make the session and write the URL files")
    make.add_argument("session", type=_name, help="the session's name, also its vhost")
    make.add_argument("--participant", "-p", type=_name, action="append", default=[],
                      dest="participants", help="an agent name; once per participant")
    make.add_argument("--observer", type=_name, action="append", default=[],
                      help="an agent that sees every packet (agent_TT): a participant's "
                           "credentials; the router's --topology makes it an observer")
    make.add_argument("--grant", type=_grant, action="append", default=[],
                      metavar="NAME=PREFIX[,PREFIX...]",
                      help="more addresses or --route prefixes participant NAME may own, "
                           "beside its default 10.2.0.N, bbbb::N and fe80::N; repeatable")
    make.add_argument("--broker", type=_broker, required=True,
                      help="where participants reach the broker: amqp://host[:port] or "
                           "amqps://host[:port]")
    make.add_argument("--exchange", default=DEFAULT_EXCHANGE, help="the topic exchange")
    make.add_argument("--out", default=None,
                      help="directory for the URL files (default: ./<session>)")
    make.add_argument("--max-connections", type=_count, default=Limits.connections,
                      help="connections each user may hold (default: %(default)s)")
    make.add_argument("--max-channels", type=_count, default=Limits.channels,
                      help="channels each user may hold (default: %(default)s)")
    make.add_argument("--max-queues", type=_count, default=None,
                      help=f"queues in the session's vhost (default: "
                           f"{QUEUES_PER_PARTICIPANT} per participant and {QUEUES_SPARE} "
                           "more)")
    remove = commands.add_parser("delete", help="remove the session's users and vhost")
    remove.add_argument("session", type=_name)
    return top


def main(argv=None, ctl=None, out=sys.stdout):
    args = parser().parse_args(argv)
    ctl = ctl if ctl is not None else Rabbitmqctl(args.node)
    try:
        if args.command == "delete":
            removed = delete(ctl, args.session)
            print(f"removed session {args.session}: vhost and {len(removed)} users", file=out)
            return 0
        names = list(dict.fromkeys(args.participants + args.observer))
        if not names:
            raise CommandFailed("name at least one --participant")
        out_dir = args.out or args.session
        limits = Limits(args.max_connections, args.max_channels, args.max_queues)
        extra = {}
        for name, nets in args.grant:
            extra[name] = extra.get(name, ()) + nets
        written = create(ctl, args.session, names, args.broker, out_dir, args.exchange,
                         limits=limits, owners=Grants.default(names, extra))
    except (CommandFailed, BadGrants) as e:
        print(f"ioppy-session: {e}", file=sys.stderr)
        return 1
    print(f"session {args.session}: vhost {args.session} on {args.broker.host}; hand over "
          "each file to its participant only:", file=out)
    for name, path in written:
        if name == ROUTER:
            how = (f"twistd -n ioppy-router --url-file {os.path.basename(path)} "
                   f"--grants {GRANTS_FILE}")
        else:
            how = f"sudo twistd -n ioppy-agent --url-file {os.path.basename(path)} --name {name}"
        print(f"  {name}: {path}  ({how})", file=out)
    return 0


def console():
    """
    The C{ioppy-session} console script.
    """
    sys.exit(main())
