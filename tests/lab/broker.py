"""
L{PrivateNode}: a RabbitMQ node of the lab's own, for what must not touch
the machine's broker (stopping it, raising its memory alarm) and for the
bench's run against a broker with other scheduler settings.

It runs the installed RabbitMQ as the C{rabbitmq} user (so it shares the
machine node's Erlang cookie and C{rabbitmqctl} reaches it), under its own
node name, AMQP and distribution ports, data, log and pid files, with no
plugins, listening on 127.0.0.1 only.  It is stopped by the PID the lab
started, and its directory is removed.  With a L{TLSListener} it listens
for AMQP over TLS too, as a participant's broker would.
"""

import json
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time

from .programs import Program
from .system import free_port, run, unique

SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"

# The Erlang VM flags RabbitMQ starts with by default: schedulers that find
# no work sleep at once (no busy-waiting), which leaves the CPU to others but
# costs a wake-up on every message after a pause.
DEFAULT_SCHEDULERS = ()
# Schedulers that spin a long while before they sleep, and wake each other
# eagerly: lower latency after a pause, at the price of spinning cores.
BUSY_WAIT_SCHEDULERS = ("+sbwt", "very_long", "+sbwtdcpu", "very_long", "+sbwtdio",
                        "very_long", "+swt", "very_low")


class TLSListener:
    """
    What a node's TLS listener presents and asks for: TLS 1.3 and 1.2 only,
    the server's certificate and key, and the CA that client certificates
    must come from, if any.
    """

    def __init__(self, cert, key, client_ca=None):
        self.cert, self.key, self.client_ca = cert, key, client_ca

    def config(self, directory):
        """
        Copy the files into the node's C{directory} (the node runs as
        C{rabbitmq} and must read them).

        @return: The lines of C{rabbitmq.conf} for them.
        """
        def copied(path, name):
            target = os.path.join(directory, name)
            shutil.copyfile(path, target)
            return target

        lines = [f"ssl_options.certfile = {copied(self.cert, 'server.pem')}",
                 f"ssl_options.keyfile = {copied(self.key, 'server.key')}",
                 "ssl_options.versions.1 = tlsv1.3", "ssl_options.versions.2 = tlsv1.2"]
        if self.client_ca is None:
            return lines + ["ssl_options.verify = verify_none",
                            "ssl_options.fail_if_no_peer_cert = false"]
        return lines + [f"ssl_options.cacertfile = {copied(self.client_ca, 'clients.pem')}",
                        "ssl_options.verify = verify_peer",
                        "ssl_options.fail_if_no_peer_cert = true"]


class PrivateNode:
    """
    A RabbitMQ node the lab started and owns.

    @ivar name: Its Erlang node name, C{ioppy-t...@localhost}.
    @ivar port: Its AMQP port on 127.0.0.1.
    """

    def __init__(self, cleanup, erl_args=DEFAULT_SCHEDULERS, timeout=120.0, tls=None,
                 wait=True, net_ticktime=None):
        """
        @param erl_args: Extra Erlang VM flags, after RabbitMQ's own.
        @param tls: A L{TLSListener} to listen with too, or C{None}.
        @param wait: Wait for the node to boot (else call L{wait_started}).
        @param net_ticktime: Seconds of silence after which the node takes
            another node of its cluster for down (RabbitMQ's default: 60).
        """
        account = pwd.getpwnam("rabbitmq")
        self.name = f"{unique('rabbit')}@localhost"
        self.port = free_port()
        self.tls_port = None
        self._dir = tempfile.mkdtemp(prefix=unique("node") + "-")
        cleanup(shutil.rmtree, self._dir, True)
        os.chmod(self._dir, 0o755)
        config = os.path.join(self._dir, "rabbitmq.conf")
        lines = [f"listeners.tcp.local = 127.0.0.1:{self.port}", "loopback_users.guest = true"]
        if net_ticktime is not None:
            lines.append(f"net_ticktime = {net_ticktime}")
        if tls is not None:
            self.tls_port = free_port()
            lines += [f"listeners.ssl.local = 127.0.0.1:{self.tls_port}",
                      *tls.config(self._dir)]
        with open(config, "w", encoding="ascii") as f:
            f.write("\n".join(lines) + "\n")
        plugins = os.path.join(self._dir, "enabled_plugins")
        with open(plugins, "w", encoding="ascii") as f:
            f.write("[].\n")
        for sub in ("data", "log"):
            os.mkdir(os.path.join(self._dir, sub))
        for path, _, files in os.walk(self._dir):
            os.chown(path, account.pw_uid, account.pw_gid)
            for name in files:
                os.chown(os.path.join(path, name), account.pw_uid, account.pw_gid)
        env = {
            "HOME": account.pw_dir,
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(free_port()),
            "RABBITMQ_CONFIG_FILE": config,
            "RABBITMQ_ENABLED_PLUGINS_FILE": plugins,
            "RABBITMQ_MNESIA_BASE": os.path.join(self._dir, "data"),
            "RABBITMQ_LOG_BASE": os.path.join(self._dir, "log"),
            "RABBITMQ_PID_FILE": os.path.join(self._dir, "node.pid"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": " ".join(erl_args),
        }
        self.erl_args = tuple(erl_args)
        self.program = Program(
            cleanup, None, env=env, log_dir=self._dir,
            prefix=["setpriv", f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}",
                    "--init-groups"],
            argv=[SERVER])
        self.beam_pid = None
        self._timeout = timeout
        cleanup(self.stop)
        if wait:
            self.wait_started()

    def wait_started(self):
        """
        Wait (at most the constructor's C{timeout}) until the node runs.

        @raise AssertionError: with the node's output, if it does not boot.
        """
        deadline = time.monotonic() + self._timeout
        while self.ctl("await_startup", check=False, timeout=30).returncode != 0:
            if self.program.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"private RabbitMQ node {self.name} did not start:\n"
                                     f"{self.program.text()}")
            time.sleep(1)
        self.beam_pid = self.os_pid()

    def ctl(self, *args, check=True, timeout=60):
        """
        Run C{rabbitmqctl -q -n <this node>}.
        """
        return run("rabbitmqctl", "-q", "-n", self.name, *args, check=check, timeout=timeout)

    def url(self, vhost="", user="guest", password="guest"):
        return f"amqp://{user}:{password}@127.0.0.1:{self.port}/{vhost}"

    def tls_url(self, vhost="", user="guest", password="guest", host="localhost"):
        return f"amqps://{user}:{password}@{host}:{self.tls_port}/{vhost}"

    def os_pid(self):
        """
        @return: The PID of the node's Erlang VM (beam.smp).
        """
        return int(self.ctl("eval", "list_to_integer(os:getpid()).").stdout.strip())

    def signal(self, number):
        """
        Send signal C{number} to the node's Erlang VM: C{SIGKILL} kills the
        node hard, C{SIGSTOP} makes it hang without dying, C{SIGCONT} lets
        it go on.
        """
        if self.beam_pid is not None and os.path.exists(f"/proc/{self.beam_pid}"):
            os.kill(self.beam_pid, number)

    def stop(self):
        """
        Stop the node: SIGTERM to the process the lab started, which stops
        RabbitMQ in order; SIGKILL to it and its Erlang VM after 60 s.  A
        node made to hang is let go on first.
        """
        process = self.program.process
        self.signal(signal.SIGCONT)
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.program.kill()


# The lab's clusters give up a hung node after 8 s instead of RabbitMQ's 60.
NET_TICKTIME = 8


class Cluster:
    """
    A RabbitMQ cluster of L{PrivateNode}s the lab started, joined to the
    first, each with its own node name, ports, data and log directories.

    @ivar nodes: The L{PrivateNode}s, the first being the one the others
        joined.
    """

    def __init__(self, cleanup, size=3, timeout=180.0, net_ticktime=NET_TICKTIME):
        """
        @param net_ticktime: Seconds after which the nodes give up a node
            that hangs; until then the whole cluster waits for it before it
            declares a queue.
        """
        self.nodes = [PrivateNode(cleanup, timeout=timeout, wait=False,
                                  net_ticktime=net_ticktime) for _ in range(size)]
        for node in self.nodes:
            node.wait_started()
        first = self.nodes[0]
        for node in self.nodes[1:]:
            node.ctl("stop_app", timeout=120)
            node.ctl("join_cluster", first.name, timeout=120)
            node.ctl("start_app", timeout=120)
            node.ctl("await_startup", timeout=120)
        running = self.running()
        if len(running) != size:
            raise AssertionError(f"the cluster runs {running}, not {size} nodes")

    def running(self, via=None):
        """
        @return: The names of the nodes running in the cluster, as node
            C{via} (the first, by default) sees them.
        """
        node = via if via is not None else self.nodes[0]
        status = json.loads(node.ctl("cluster_status", "--formatter", "json").stdout)
        return sorted(status["running_nodes"])

    def urls(self, vhost, order):
        """
        @return: C{--url} arguments for the nodes of C{order} (indexes), in
            that order.
        """
        return [arg for i in order for arg in ("--url", self.nodes[i].url(vhost))]


def machine_broker_pid():
    """
    @return: The PID of the machine's RabbitMQ node's Erlang VM.
    """
    return int(run("rabbitmqctl", "-q", "eval", "list_to_integer(os:getpid()).").stdout.strip())
