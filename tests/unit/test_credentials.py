"""
Tests for L{ioppy_agent.admin.credentials}: the permissions each user of a
session gets, and the C{ioppy-session} command on a fake C{rabbitmqctl}.
"""

import contextlib
import io
import json
import os
import re
import stat

from twisted.trial.unittest import SynchronousTestCase

from ioppy_agent.admin import credentials
from ioppy_agent.model import keys
from ioppy_agent.bus.url import parse_amqp_url


def allows(pattern, text):
    """
    Whether RabbitMQ would let C{text} through C{pattern} (it searches with
    the regular expression, as C{re.search} does; the patterns are anchored).
    """
    return re.search(pattern, text) is not None


class FakeCtl:
    """
    Records the C{rabbitmqctl} commands, and answers the listings.
    """

    def __init__(self, vhosts=("/",), users=("guest\t[administrator]",)):
        self.calls = []
        self.vhosts = list(vhosts)
        self.users = list(users)

    def __call__(self, *args, stdin=None):
        self.calls.append((args, stdin))
        if args[0] == "list_vhosts":
            return "\n".join(["name", *self.vhosts]) + "\n"
        if args[0] == "list_users":
            return "\n".join(["user\ttags", *self.users]) + "\n"
        if args[0] == "add_vhost":
            self.vhosts.append(args[1])
        if args[0] == "add_user":
            self.users.append(f"{args[1]}\t[]")
        return ""


class GrantTests(SynchronousTestCase):
    """
    Each participant may publish and bind only what it needs.
    """

    def setUp(self):
        self.agent1 = credentials.participant_grant("s42", "agent_1")

    def test_publish(self):
        """
        agent_1 may publish its own keys and the component announcements,
        not another agent's keys nor the router's.
        """
        topic = self.agent1.topic_write
        for key in (keys.packet_from("agent_1"), keys.tun_started("agent_1"),
                    keys.bound("agent_1"), keys.stats("agent_1"), keys.COMPONENT_READY,
                    keys.COMPONENT_SHUTDOWN):
            self.assertTrue(allows(topic, key), key)
        for key in (keys.packet_from("agent_2"), keys.tun_started("agent_10"),
                    keys.packet_to("agent_2"), keys.routes("agent_2"), keys.routes("agent_1"),
                    keys.LOSSY_LINK_START, "fromAgent.agent_1",
                    "fromAgent.agent_1.ip.tun.packet.to.agent_2"):
            self.assertFalse(allows(topic, key), key)

    def test_binds_nothing(self):
        """
        agent_1 may bind nothing (the router binds its queue for it): not
        even what is addressed to it.
        """
        for key in (keys.packet_to("agent_1"), keys.tun_start("agent_1"),
                    keys.routes("agent_1"), keys.COMPONENT_READY, keys.inbox("agent_1"),
                    keys.packet_to("agent_2"), keys.any_of(keys.PACKET_FROM), "fromAgent.#",
                    "#"):
            self.assertFalse(allows(self.agent1.topic_read, key), key)

    def test_inboxes(self):
        """
        agent_1 may name any agent's inbox in a CC header, and neither use
        nor bind from the router's exchanges.
        """
        grant = self.agent1
        for key in ("ioppy.to.agent_2", "ioppy.to.agent_1"):
            self.assertTrue(allows(grant.topic_write, key), key)
        for exchange in ("ioppy.steer", "ioppy.direct", "ioppy.unsteered"):
            for pattern in (grant.configure, grant.write, grant.read):
                self.assertFalse(allows(pattern, exchange), (pattern, exchange))

    def test_declares_nothing(self):
        """
        agent_1 may configure nothing, queue or exchange (an exchange of its
        own with an alternate exchange, a queue of its own with a
        dead-letter exchange, or an exchange bound into amq.topic would
        carry messages there under any key); it consumes its own queue only
        and writes to amq.topic only.
        """
        grant = self.agent1
        # (An empty name is not checked as such: the broker names a queue
        # declared without one before it checks, and "" is amq.default.)
        for name in ("ioppy.agent.agent_1", "ioppy.agent.agent_1.9f2a01bc", "amq.topic",
                     "amq.gen-x", "x"):
            self.assertFalse(allows(grant.configure, name), name)
        self.assertTrue(allows(grant.read, "ioppy.agent.agent_1"))
        for queue in ("ioppy.agent.agent_2", "ioppy.agent.agent_10", "ioppy.router",
                      "ioppy.agent.agent_1.x", "amq.topic", "amq.default", "amq.fanout"):
            self.assertFalse(allows(grant.read, queue), queue)
        self.assertTrue(allows(grant.write, "amq.topic"))
        for name in ("ioppy.agent.agent_1", "amq.default", "amq.direct", "amq.fanout",
                     "amq.headers", "amq.match", "ioppy.steer"):
            self.assertFalse(allows(grant.write, name), name)

    def test_what_the_programs_use(self):
        """
        Every key, queue and exchange the agent and the router use is
        granted to the participant (or the router) that uses it, and to no
        other participant, but for the component announcements every
        participant makes.
        """
        from .uses import agent_uses, router_uses
        shared = {keys.COMPONENT_READY, keys.COMPONENT_SHUTDOWN}
        # Any participant may name any agent's inbox in a CC header.
        shared |= {keys.inbox(n) for n in ("agent_9", "agent_TT")}
        one, two = (credentials.participant_grant("s42", n) for n in ("agent_1", "agent_2"))
        router = credentials.router_grant("s42")
        used = agent_uses("agent_1")
        self.assertEqual((used["configure"], used["topic_read"]), ([], []))
        for what, names in used.items():
            for name in names:
                self.assertTrue(allows(getattr(one, what), name), (what, name))
                if name not in shared and name != "amq.topic":
                    self.assertFalse(allows(getattr(two, what), name), (what, name))
        shared.add(keys.agent_queue("agent_1"))  # the router makes it for agent_1
        for what, names in router_uses().items():
            self.assertTrue(names, what)
            for name in names:
                self.assertTrue(allows(getattr(router, what), name), (what, name))
                if name not in shared and name != "amq.topic":
                    self.assertFalse(allows(getattr(one, what), name), (what, name))

    def test_router(self):
        """
        The router publishes to agents and announces itself, and binds
        anything; it cannot publish as an agent.
        """
        grant = credentials.router_grant("s42")
        self.assertEqual(grant.user, "s42.router")
        self.assertTrue(allows(grant.topic_write, keys.packet_to("agent_1")))
        self.assertTrue(allows(grant.topic_write, keys.routes("agent_1")))
        self.assertTrue(allows(grant.topic_write, keys.COMPONENT_READY))
        self.assertFalse(allows(grant.topic_write, keys.packet_from("agent_1")))
        self.assertTrue(allows(grant.configure, "ioppy.router"))
        # It declares and binds each participant's queue.
        self.assertTrue(allows(grant.configure, "ioppy.agent.agent_1"))


class CommandTests(SynchronousTestCase):
    """
    C{ioppy-session create} and C{delete}, on a fake C{rabbitmqctl}.
    """

    def setUp(self):
        self.ctl = FakeCtl()
        self.out = os.path.abspath(self.mktemp())

    def create(self, *args):
        said = io.StringIO()
        code = credentials.main(["create", "s42", "--broker", "amqp://broker.example.org",
                                 "--out", self.out, *args], ctl=self.ctl, out=said)
        return code, said.getvalue()

    def test_create(self):
        """
        The vhost, the router's user and one user per participant are made
        with their permissions; passwords go on standard input only; each
        URL file (mode 0600) holds that user's URL, and the output says
        which file goes to whom.
        """
        code, said = self.create("-p", "agent_1", "-p", "agent_2")
        self.assertEqual(code, 0)
        commands = [args for args, _ in self.ctl.calls]
        self.assertIn(("add_vhost", "s42"), commands)
        users = [(args[1], stdin) for args, stdin in self.ctl.calls if args[0] == "add_user"]
        self.assertEqual([u for u, _ in users], ["s42.router", "s42.agent_1", "s42.agent_2"])
        for args, _ in self.ctl.calls:
            for _, password in users:
                self.assertNotIn(password, args)
        topic = [args for args in commands if args[0] == "set_topic_permissions"]
        grant = credentials.participant_grant("s42", "agent_1")
        self.assertIn(("set_topic_permissions", "-p", "s42", "s42.agent_1", "amq.topic",
                       grant.topic_write, grant.topic_read), topic)
        passwords = dict(users)
        for name in ("router", "agent_1", "agent_2"):
            path = os.path.join(self.out, f"{name}.url")
            self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
            with open(path) as f:
                url = parse_amqp_url(f.read().strip())
            self.assertEqual((url.host, url.port, url.vhost, url.username, url.password),
                             ("broker.example.org", 5672, "s42", f"s42.{name}",
                              passwords[f"s42.{name}"]))
            self.assertIn(f"{name}: {path}", said)
        self.assertIn("--url-file agent_2.url --name agent_2", said)
        for password in passwords.values():
            self.assertNotIn(password, said)

    def test_limits(self):
        """
        Every user gets connection and channel limits, and the vhost a
        queue limit: the defaults, or what the options say; a limit that is
        no whole number of at least 1 is refused.
        """
        self.create("-p", "agent_1", "-p", "agent_2")
        commands = [args for args, _ in self.ctl.calls]
        self.assertIn(("set_vhost_limits", "-p", "s42", json.dumps({"max-queues": 72})),
                      commands)
        limited = {args[1]: json.loads(args[2]) for args in commands
                   if args[0] == "set_user_limits"}
        self.assertEqual(limited, {user: {"max-connections": 16, "max-channels": 64}
                                   for user in ("s42.router", "s42.agent_1", "s42.agent_2")})
        self.ctl = FakeCtl()
        self.out = os.path.abspath(self.mktemp())
        self.create("-p", "agent_1", "--max-connections", "3", "--max-channels", "5",
                    "--max-queues", "9")
        commands = [args for args, _ in self.ctl.calls]
        self.assertIn(("set_vhost_limits", "-p", "s42", json.dumps({"max-queues": 9})),
                      commands)
        self.assertIn(("set_user_limits", "s42.agent_1",
                       json.dumps({"max-connections": 3, "max-channels": 5})), commands)
        for bad in ("0", "-2", "many"):
            with self.assertRaises(SystemExit):
                with contextlib.redirect_stderr(io.StringIO()):
                    self.create("-p", "agent_1", "--max-connections", bad)

    def test_random_passwords(self):
        """
        Every user gets a password of its own, long and random.
        """
        self.create("-p", "agent_1", "-p", "agent_2")
        passwords = [stdin for args, stdin in self.ctl.calls if args[0] == "add_user"]
        self.assertEqual(len(set(passwords)), 3)
        self.assertTrue(all(len(p) >= 24 for p in passwords))

    def test_existing_vhost_refused(self):
        """
        A session whose vhost exists is not touched: exit 1, nothing made.
        """
        self.ctl.vhosts.append("s42")
        code, _ = self.create("-p", "agent_1")
        self.assertEqual(code, 1)
        self.assertEqual([args[0] for args, _ in self.ctl.calls], ["list_vhosts"])

    def test_bad_names_refused(self):
        """
        A participant name that cannot be an agent's, or a broker URL with
        credentials in it, is refused by the option parser.
        """
        for args in (["create", "s42", "--broker", "amqp://h", "-p", "agent.1"],
                     ["create", "s42", "--broker", "amqp://u:pw@h", "-p", "agent_1"],
                     ["create", "s 42", "--broker", "amqp://h", "-p", "agent_1"]):
            with self.assertRaises(SystemExit):
                credentials.main(args, ctl=self.ctl, out=io.StringIO())
        self.assertEqual(self.ctl.calls, [])

    def test_delete(self):
        """
        C{delete} removes the session's users, not others', then the vhost.
        """
        self.create("-p", "agent_1")
        self.ctl.users.append("s420.agent_1\t[]")
        self.ctl.calls.clear()
        said = io.StringIO()
        self.assertEqual(credentials.main(["delete", "s42"], ctl=self.ctl, out=said), 0)
        deleted = [args[1] for args, _ in self.ctl.calls if args[0] == "delete_user"]
        self.assertEqual(deleted, ["s42.router", "s42.agent_1"])
        self.assertIn(("delete_vhost", "s42"), [args for args, _ in self.ctl.calls])
        self.assertIn("removed session s42: vhost and 2 users", said.getvalue())
