"""
The original ioppytest agent's command line, for scripts that use it:

    python -m ioppy_agent connect --url amqp://... --name agent_1
    ioppy-agent connect --url amqp://... --name agent_1

runs the same agent service as C{twistd -n ioppy-agent}, in the foreground,
logging to standard output.  The original's options are accepted:
C{--ipv4-address}, C{--ipv6-prefix}, C{--ipv6-host}, C{--exchange} and
C{--force-bootstrap}, beside every option of the twistd plugin.
"""

import sys

from twisted.logger import globalLogBeginner, textFileLogObserver
from twisted.python import usage

from .. import __version__
from .tap import AgentOptions, make_agent_service


class ConnectOptions(AgentOptions):
    """
    C{connect}: the agent options, plus the original agent's spellings.
    """

    synopsis = "--url amqp://user:pass@host/vhost --name agent_1 [options]"
    optFlags = [
        ["force-bootstrap", None,
         "Accepted for compatibility: the agent always sets its TUN up at start, "
         "without waiting for the testing tool's tun.start."],
    ]
    optParameters = AgentOptions.optParameters + [
        ["ipv4-address", None, None, "The original agent's spelling of --ipv4 (a bare "
                                     "address gets /24)."],
    ]

    def postOptions(self):
        if self["ipv4-address"] is not None:
            if self["ipv4"] is not None:
                raise usage.UsageError("give --ipv4 or --ipv4-address, not both")
            self["ipv4"] = self["ipv4-address"]
        AgentOptions.postOptions(self)


class CommandLine(usage.Options):
    """
    C{ioppy-agent COMMAND}.
    """

    synopsis = "ioppy-agent"
    subCommands = [
        ["connect", None, ConnectOptions,
         "Connect to the bus and run the agent in the foreground."],
    ]

    def opt_version(self):
        """
        Print the version and exit.
        """
        print(f"ioppy-agent {__version__}")
        sys.exit(0)

    def postOptions(self):
        if self.subCommand is None:
            raise usage.UsageError("give a command: connect")


def run(options, reactor):
    """
    Run the agent service on C{reactor} until it stops, the way twistd would.
    """
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)],
                                     redirectStandardIO=False)
    top = make_agent_service(options, reactor=reactor)
    top.privilegedStartService()
    top.startService()
    reactor.addSystemEventTrigger("before", "shutdown", top.stopService)
    reactor.run()


def main(argv=None):
    """
    The C{ioppy-agent} console script and C{python -m ioppy_agent}.
    """
    command_line = CommandLine()
    try:
        command_line.parseOptions(sys.argv[1:] if argv is None else argv)
    except usage.UsageError as e:
        print(command_line, file=sys.stderr)
        print(f"ioppy-agent: {e}", file=sys.stderr)
        return 1
    from twisted.internet import reactor
    run(command_line.subOptions, reactor)
    return 0
