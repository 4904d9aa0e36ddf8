"""
The ports the programs serve on (the metrics, the router's live page):
where, loopback unless told, and listening with an error that says which
option's port could not be had.
"""

from dataclasses import dataclass

from twisted.internet.error import CannotListenError

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class ListenConfig:
    """
    Where to serve: C{port} C{None} for nowhere.
    """

    port: int = None
    address: str = LOOPBACK


class CannotServe(Exception):
    """
    A port could not be listened on; the message says which and why.
    """


def listen_tcp(reactor, config, factory, option):
    """
    Listen on C{config}'s address and port.

    @param option: The option's name, C{"metrics"} for C{--metrics-port}.
    @return: The listening port.
    @raise CannotServe: if the port cannot be listened on.
    """
    try:
        return reactor.listenTCP(config.port, factory, interface=config.address)
    except CannotListenError as e:
        raise CannotServe(f"--{option}-port {config.port} on {config.address}: "
                          f"{e.socketError}") from None
