"""
A small network lab for the demo, the integration tests and the benchmarks:
network namespaces, veth uplinks, broker vhosts and users, and the programs
started as users start them (C{twistd -n ...}).

Everything is named with the C{ioppy-t<pid>} prefix and removed by the
cleanup callable each constructor is given (trial's C{addCleanup}, or an
L{contextlib.ExitStack}'s C{callback}), so it goes away also on failure.
Processes are stopped by the PID they were started with.  Every wait and
every command is bounded in time.
"""

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time

BIN = os.path.dirname(sys.executable)
TWISTD = os.path.join(BIN, "twistd")  # the one installed beside this Python
PREFIX = f"ioppy-t{os.getpid()}"
_counter = [0]


def unique(kind):
    """
    @return: A name for a test resource, unique on this machine.
    """
    _counter[0] += 1
    return f"{PREFIX}-{kind}{_counter[0]}"


def run(*args, timeout=60, check=True):
    """
    Run a command, bounded in time.

    @return: The L{subprocess.CompletedProcess}, output as text.
    """
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}): "
                             f"{result.stdout}{result.stderr}")
    return result


def broker_reachable(host="127.0.0.1", port=5672):
    try:
        with socket.create_connection((host, port), timeout=3):
            return True
    except OSError:
        return False


def rabbitmqctl(*args, check=True, timeout=60):
    return run("rabbitmqctl", "-q", *args, check=check, timeout=timeout)


class Namespace:
    """
    A network namespace the test owns.
    """

    def __init__(self, cleanup):
        self.name = unique("ns")
        run("ip", "netns", "add", self.name)
        cleanup(run, "ip", "netns", "del", self.name, check=False)
        run("ip", "netns", "exec", self.name, "ip", "link", "set", "lo", "up")

    def run(self, *args, timeout=60, check=True):
        return run("ip", "netns", "exec", self.name, *args, timeout=timeout, check=check)

    def links(self):
        """
        @return: The interface names in this namespace.
        """
        out = self.run("ip", "-o", "link", "show").stdout
        return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]

    def ping(self, address, count=5, size=56, interval=0.2):
        """
        Ping C{address} from inside the namespace.

        @return: C{(sent, received, output)}
        """
        args = ["ping", "-c", str(count), "-i", str(interval), "-W", "3", "-s", str(size)]
        if ":" in address:
            args.append("-6")
        result = self.run(*args, address, timeout=count * 4 + 10, check=False)
        match = re.search(r"(\d+) packets transmitted, (\d+) received", result.stdout)
        if not match:
            raise AssertionError(f"ping gave no summary: {result.stdout}{result.stderr}")
        return int(match.group(1)), int(match.group(2)), result.stdout


class VHost:
    """
    A broker vhost the test owns, with permissions for guest.
    """

    def __init__(self, cleanup):
        self.name = unique("vhost")
        rabbitmqctl("add_vhost", self.name)
        cleanup(rabbitmqctl, "delete_vhost", self.name, check=False)
        rabbitmqctl("set_permissions", "-p", self.name, "guest", ".*", ".*", ".*")
        self.url = f"amqp://guest:guest@127.0.0.1:5672/{self.name}"

    def queues(self):
        """
        @return: The queue names in this vhost.
        """
        out = rabbitmqctl("list_queues", "-p", self.name, "name").stdout
        return [line.strip() for line in out.splitlines()
                if line.strip() and line.strip() != "name"]

    def add_user(self, cleanup):
        """
        Create a broker user with a random password, allowed on this vhost.

        @return: C{(user, password)}
        """
        user, password = unique("user"), secrets.token_hex(12)
        rabbitmqctl("add_user", user, password)
        cleanup(rabbitmqctl, "delete_user", user, check=False)
        rabbitmqctl("set_permissions", "-p", self.name, user, ".*", ".*", ".*")
        return user, password


class Program:
    """
    One process started by the lab: by default C{twistd -n} with a plugin,
    logging to standard output; everything it prints goes to one log file.

    @ivar shown: The command as a user would type it (without the lab's
        log and pidfile flags).
    """

    def __init__(self, cleanup, plugin, *args, netns=None, env=None, log_dir=".",
                 twistd_args=(), prefix=(), argv=None):
        """
        @param twistd_args: twistd's own options (before the plugin name).
        @param prefix: A command that runs the program (C{setpriv ...}).
        @param argv: Run this command instead of twistd.
        """
        self.log = os.path.abspath(os.path.join(log_dir, unique("log") + ".log"))
        if argv is None:
            self.shown = " ".join(["twistd", "-n", *twistd_args, plugin, *args])
            argv = [TWISTD, "-n", "--pidfile=", "--logfile=-", *twistd_args, plugin, *args]
        else:
            self.shown = " ".join(argv)
        if netns is not None:
            argv = ["ip", "netns", "exec", netns, *argv]
            self.shown = f"ip netns exec {netns} {self.shown}"
        self.command = [*prefix, *argv]
        self._out = open(self.log, "wb")
        self.process = subprocess.Popen(
            self.command, stdout=self._out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, env=dict(os.environ, **(env or {})))
        cleanup(self.kill)

    def text(self):
        """
        @return: What the program printed so far.
        """
        try:
            with open(self.log, encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def wait_for(self, pattern, timeout=20.0):
        """
        Wait until C{pattern} appears in the log.

        @raise AssertionError: if the process ends or time runs out first.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if re.search(pattern, self.text()):
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"{pattern!r} did not appear (exit {self.process.poll()}):\n"
                             f"{self.text()}")

    def wait(self, timeout):
        """
        @return: The exit status, waiting at most C{timeout} seconds.
        """
        return self.process.wait(timeout=timeout)

    def terminate(self, timeout=5.0):
        """
        Send SIGTERM.

        @return: C{(exit_status, seconds_taken)}
        """
        start = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=timeout)
        return code, time.monotonic() - start

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self._out.close()


class Uplink:
    """
    A veth pair from the host into a namespace, and a TCP forwarder on the
    host end to the broker on 127.0.0.1:5672, so that a program running
    inside the namespace reaches the broker as it would across a network.

    @ivar broker: The address the namespace uses for the broker.
    """

    def __init__(self, cleanup, namespace):
        n = _counter[0] = _counter[0] + 1
        tag = f"{os.getpid() % 100000:05d}{n % 100:02d}"
        host_end, ns_end = f"io{tag}h", f"io{tag}n"
        subnet = 16 + (os.getpid() + n) % 200
        self.broker = f"10.254.{subnet}.1"
        run("ip", "link", "add", host_end, "type", "veth", "peer", "name", ns_end)
        cleanup(run, "ip", "link", "del", host_end, check=False)
        run("ip", "link", "set", ns_end, "netns", namespace.name)
        run("ip", "addr", "add", f"{self.broker}/30", "dev", host_end)
        run("ip", "link", "set", host_end, "up")
        namespace.run("ip", "addr", "add", f"10.254.{subnet}.2/30", "dev", ns_end)
        namespace.run("ip", "link", "set", ns_end, "up")
        self.forwarder = Program(cleanup, "portforward", "-p",
                                 f"tcp:5672:interface={self.broker}", "-h", "127.0.0.1",
                                 "-d", "5672")
        deadline = time.monotonic() + 20
        while not broker_reachable(self.broker):
            if time.monotonic() > deadline or self.forwarder.process.poll() is not None:
                raise AssertionError("the forwarder did not start:\n" + self.forwarder.text())
            time.sleep(0.1)


class Daemon:
    """
    A program started in twistd's daemon mode (no C{-n}): twistd forks,
    writes the pidfile and returns.

    @ivar status: twistd's own exit status (0 once the daemon started).
    @ivar pid: The daemon's PID, from its pidfile, or C{None}.
    """

    def __init__(self, cleanup, plugin, *args, directory, twistd_args=()):
        self.pidfile = os.path.join(directory, unique("pid") + ".pid")
        self.log = os.path.join(directory, unique("log") + ".log")
        result = run(TWISTD, f"--pidfile={self.pidfile}", f"--logfile={self.log}",
                     *twistd_args, plugin, *args, check=False, timeout=60)
        self.status = result.returncode
        self.output = result.stdout + result.stderr
        self.pid = None
        if self.status == 0:
            with open(self.pidfile, encoding="ascii") as f:
                self.pid = int(f.read().strip())
        cleanup(self.kill)

    text = Program.text

    def alive(self):
        return self.pid is not None and os.path.exists(f"/proc/{self.pid}")

    def wait_gone(self, timeout):
        """
        @return: Whether the daemon ended within C{timeout} seconds.
        """
        deadline = time.monotonic() + timeout
        while self.alive():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def kill(self):
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
            self.wait_gone(10)


def wait_for_log(source, pattern, timeout=20.0):
    """
    Wait until C{pattern} appears in C{source.text()}.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if re.search(pattern, source.text()):
            return
        time.sleep(0.1)
    raise AssertionError(f"{pattern!r} did not appear:\n{source.text()}")


def publish(url, routing_key, body, exchange="amq.topic"):
    """
    Publish one message, from a separate process (C{python -m
    ioppy_agent.lab publish ...}), and wait for it to be sent.
    """
    run(sys.executable, "-m", "ioppy_agent.lab", "publish", url, routing_key, body,
        exchange, timeout=30)


def _publish_main(reactor, url, routing_key, body, exchange):
    from twisted.internet import defer

    from .amqp import BrokerEndpoint, BusFactory, open_session
    from .url import parse_amqp_url

    @defer.inlineCallbacks
    def go():
        broker = parse_amqp_url(url)
        factory = BusFactory(broker.vhost, 0, reactor, {"connection_name": "ioppy-lab"})
        client = yield BrokerEndpoint(reactor, broker.host, broker.port).connect(factory)
        session = yield open_session(client, broker, exchange)
        session.publish(routing_key, body.encode("utf-8"), "application/json")
        yield session.close()

    return go()


def broker_rate(url, size, wire_format, seconds=5.0):
    """
    @return: Messages per second the broker moves from one publisher to one
        consumer, with bodies shaped like packets of C{size} bytes in
        C{wire_format} (measured in a separate process).
    """
    out = run(sys.executable, "-m", "ioppy_agent.lab", "broker-rate", url, str(size),
              wire_format, str(seconds), timeout=seconds + 60).stdout
    return float(out.split()[-1])


def _broker_rate_main(reactor, url, size, wire_format, seconds):
    """
    Publish as fast as the connection takes it to a queue of our own for
    C{seconds} and count what a second connection consumes meanwhile.
    """
    from twisted.internet import defer

    from . import wire
    from .amqp import BrokerEndpoint, BusFactory, FatalBusError, open_session
    from .url import parse_amqp_url

    broker = parse_amqp_url(url)
    packet = bytes([0x45]) + bytes(int(size) - 1)
    if wire_format == "raw":
        body, content_type = packet, wire.RAW
    else:
        body, content_type = wire.encode_packet(packet, 1764242400.5), wire.JSON
    queue = f"ioppy.lab.rate.{os.getpid()}"
    received = [0]

    @defer.inlineCallbacks
    def connect(name):
        factory = BusFactory(broker.vhost, 0, reactor, {"connection_name": name})
        client = yield BrokerEndpoint(reactor, broker.host, broker.port).connect(factory)
        return (yield open_session(client, broker, "amq.topic"))

    @defer.inlineCallbacks
    def go():
        consumer = yield connect("ioppy-lab consumer")
        yield consumer.declare_queue(queue, [queue], FatalBusError("locked", 1),
                                     max_length=100000)
        yield consumer.consume(queue, lambda *_: received.__setitem__(0, received[0] + 1))
        publisher = yield connect("ioppy-lab publisher")
        start = reactor.seconds()
        end = start + float(seconds)

        def pump():
            while reactor.seconds() < end:
                for _ in range(200):
                    if not publisher.publish(queue, body, content_type):
                        break
                else:
                    reactor.callLater(0, pump)
                    return
                reactor.callLater(0.001, pump)
                return
            done.callback(None)

        done = defer.Deferred()
        pump()
        yield done
        counted = received[0]
        elapsed = reactor.seconds() - start
        yield publisher.close()
        yield consumer.close()
        print(f"{counted / elapsed:.1f}", flush=True)

    return go()


def _tls_proxy_main(reactor, port, cert, key, client_ca=None):
    """
    Terminate TLS on 127.0.0.1:C{port} and forward to the broker on
    127.0.0.1:5672; with C{client_ca}, demand a client certificate signed by
    it.
    """
    from twisted.internet import defer, endpoints, ssl
    from twisted.protocols.portforward import ProxyFactory

    with open(cert, "rb") as c, open(key, "rb") as k:
        certificate = ssl.PrivateCertificate.loadPEM(c.read() + k.read())
    kwargs = {}
    if client_ca:
        with open(client_ca, "rb") as f:
            kwargs = dict(verify=True, requireCertificate=True,
                          caCerts=[ssl.Certificate.loadPEM(f.read()).original])
    options = ssl.CertificateOptions(privateKey=certificate.privateKey.original,
                                     certificate=certificate.original, **kwargs)
    endpoint = endpoints.SSL4ServerEndpoint(reactor, int(port), options,
                                            interface="127.0.0.1")
    d = endpoint.listen(ProxyFactory("127.0.0.1", 5672))
    d.addCallback(lambda _: print("listening", flush=True))
    return d.addCallback(lambda _: defer.Deferred())


class Tunnel:
    """
    A router and agents C{agent_1} and C{agent_2}, their TUNs in two
    namespaces of their own, on a vhost of its own; each program keeps a
    status file in C{log_dir}.

    @ivar programs: C{"router"}, C{"agent_1"}, C{"agent_2"} to L{Program}.
    """

    def __init__(self, cleanup, log_dir, agent_args=(), status_interval=1.0):
        self.vhost = VHost(cleanup)
        self.ns1, self.ns2 = Namespace(cleanup), Namespace(cleanup)
        self.status_files = {name: os.path.join(log_dir, name + ".json")
                             for name in ("router", "agent_1", "agent_2")}
        common = ["--url", self.vhost.url, "--stats-interval", "0",
                  "--status-interval", str(status_interval)]
        router = Program(cleanup, "ioppy-router", *common, "--status-file",
                         self.status_files["router"], log_dir=log_dir)
        router.wait_for("router connected to")
        self.programs = {"router": router}
        for name, ns in (("agent_1", self.ns1), ("agent_2", self.ns2)):
            self.programs[name] = Program(
                cleanup, "ioppy-agent", *common, "--name", name, "--netns", ns.name,
                "--status-file", self.status_files[name], *agent_args, log_dir=log_dir)
            self.programs[name].wait_for(f"agent {name} connected to")
        self.ns1.ping("10.2.0.2", count=3)

    def status(self, name):
        """
        @return: The last status file of program C{name}, or C{{}}.
        """
        try:
            with open(self.status_files[name], encoding="utf-8") as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def stop(self):
        for program in self.programs.values():
            program.terminate(timeout=10)


def free_port():
    """
    @return: A TCP port on 127.0.0.1 that nothing listens on right now.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def uid_of(pid):
    """
    @return: The effective uid of process C{pid}.
    """
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("Uid:"):
                return int(line.split()[2])
    raise AssertionError(f"no Uid line for {pid}")


def command_line(pid):
    """
    @return: Process C{pid}'s command line, as one string.
    """
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().replace(b"\0", b" ").decode("utf-8", "replace")


def _hold_proxy_main(reactor, port, flag):
    """
    Forward 127.0.0.1:C{port} to the broker on 127.0.0.1:5672, except that
    while the file C{flag} exists every byte either way is swallowed: the
    connections stay open but carry nothing, like a dead network path.
    """
    from twisted.internet import defer, endpoints
    from twisted.protocols import portforward

    def relay(protocol, data):
        if not os.path.exists(flag):
            protocol.peer.transport.write(data)

    class Client(portforward.ProxyClient):
        dataReceived = relay

    class ClientFactory(portforward.ProxyClientFactory):
        protocol = Client

    class Server(portforward.ProxyServer):
        clientProtocolFactory = ClientFactory
        dataReceived = relay

    class Factory(portforward.ProxyFactory):
        protocol = Server

    endpoint = endpoints.TCP4ServerEndpoint(reactor, int(port), interface="127.0.0.1")
    d = endpoint.listen(Factory("127.0.0.1", 5672))
    d.addCallback(lambda _: print("listening", flush=True))
    return d.addCallback(lambda _: defer.Deferred())


if __name__ == "__main__":
    from twisted.internet.task import react

    command, *arguments = sys.argv[1:]
    react({"publish": _publish_main, "tls-proxy": _tls_proxy_main,
           "hold-proxy": _hold_proxy_main, "broker-rate": _broker_rate_main}[command],
          arguments)
