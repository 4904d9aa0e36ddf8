"""
L{Conversation}: which methods the broker may send now.

AMQP's methods are requests and replies.  A reply (C{queue.declare-ok},
C{basic.cancel-ok}, ...) may come only in answer to the request outstanding
on its channel; a request from the broker only if this client handles it
(C{connection.start} and C{connection.tune} once each, in that order).
Anything else is a L{ProtocolViolation}: a stray reply would otherwise be
taken by txamqp for the answer to the next request it sends.

Pure: this module imports neither Twisted nor txamqp.
"""

from .errors import COMMAND_INVALID, UNEXPECTED_FRAME, ProtocolViolation
from .framing import CHANNEL_CLOSE, CONNECTION_CLOSE, SERVER_METHODS

REPLIES = frozenset(ids for ids, name in SERVER_METHODS.items()
                    if name.endswith("-ok") or name == "basic.get-empty")
CONNECTION_START = (10, 10)
CONNECTION_TUNE = (10, 30)
# The broker's requests this client answers, at any time.
HANDLED = frozenset({CONNECTION_CLOSE, (10, 60), (10, 61), (20, 20), CHANNEL_CLOSE,
                     (60, 30)})


class Conversation:
    """
    The requests outstanding on each channel, and where the login is.
    """

    def __init__(self):
        self._waiting = {}
        self._started = False
        self._tuned = False

    def sent(self, channel, replies):
        """
        The client sent a request on C{channel} that waits for one of
        C{replies} (method ids); an empty set for a request without reply.
        """
        if replies:
            self._waiting.setdefault(channel, []).append(frozenset(replies))

    def channel_gone(self, channel):
        """
        C{channel} was closed: its requests will get no reply.
        """
        self._waiting.pop(channel, None)

    def check(self, channel, ids, name):
        """
        Note that method C{ids} (called C{name}) came on C{channel}.

        @raise ProtocolViolation: if it answers no outstanding request, or
            is a request this client does not take now.
        """
        if ids in REPLIES:
            waiting = self._waiting.get(channel)
            if not waiting or ids not in waiting[0]:
                raise ProtocolViolation(UNEXPECTED_FRAME, f"{name} on channel {channel}, "
                                        "which answers no request", *ids)
            waiting.pop(0)
            return
        if ids == CONNECTION_START:
            allowed, self._started = not self._started, True
        elif ids == CONNECTION_TUNE:
            allowed = self._started and not self._tuned
            self._tuned = True
        else:
            allowed = ids in HANDLED
        if not allowed:
            raise ProtocolViolation(COMMAND_INVALID, f"{name}, which this client does not "
                                    "expect now", *ids)
