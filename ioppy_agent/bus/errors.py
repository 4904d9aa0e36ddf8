"""
What can go wrong on the bus, as types.  Every error the bus package raises
or reports is a L{BusError}; those that retrying cannot fix are
L{FatalBusError}s, and the connector stops on them.  The programs turn each
fatal error into an exit status (L{ioppy_agent.program.process.exit_status_of}); the
bus package itself knows nothing of exit statuses.

Pure: this module imports neither Twisted nor txamqp.
"""

# AMQP 0-9-1 reply codes (the spec's "constants" section).
REPLY_SUCCESS = 200
CONTENT_TOO_LARGE = 311
CONNECTION_FORCED = 320
ACCESS_REFUSED = 403
NOT_FOUND = 404
RESOURCE_LOCKED = 405
PRECONDITION_FAILED = 406
FRAME_ERROR = 501
SYNTAX_ERROR = 502
COMMAND_INVALID = 503
CHANNEL_ERROR = 504
UNEXPECTED_FRAME = 505
NOT_ALLOWED = 530
NOT_IMPLEMENTED = 540


class BusError(Exception):
    """
    Something went wrong talking to the broker.  The message says what, and
    never holds a password.
    """


class FatalBusError(BusError):
    """
    The broker refused something that retrying will not fix.
    """


class LoginRefused(FatalBusError):
    """
    The broker refused the user name or password.
    """


class AccessRefused(FatalBusError):
    """
    The broker refused the vhost, or a permission the program needs.
    """


class ExchangeMissing(FatalBusError):
    """
    The exchange the program publishes and binds on does not exist.
    """


class TLSFailed(FatalBusError):
    """
    The TLS handshake failed: the broker's certificate did not verify, or
    the broker refused ours.
    """


class QueueLocked(FatalBusError):
    """
    Another connection holds the exclusive queue the program declares: for
    an agent, another agent of the same name is connected.
    """


class QueueMismatch(FatalBusError):
    """
    The durable queue the program declares exists with other settings: the
    broker keeps the first settings until it is deleted.
    """


class StreamMismatch(QueueMismatch):
    """
    The stream the program declares exists with other settings (its
    retention).
    """


class NotFound(FatalBusError):
    """
    A queue or stream the program reads does not exist.
    """


class QueueHeld(BusError):
    """
    Another connection holds the exclusive queue the program declares, and
    waiting may help: a standby router waits for the active router's
    connection to go.  The connector tries again after C{retry_after}
    seconds, logging each attempt at debug level only.
    """

    def __init__(self, text, retry_after=1.0):
        BusError.__init__(self, text)
        self.retry_after = retry_after


class ProtocolViolation(BusError):
    """
    The broker sent something AMQP 0-9-1 does not allow.  The connection is
    closed with C{reply_code} and made again; nothing else is lost.

    @ivar reply_code: The AMQP reply code to close the connection with.
    @ivar class_id: The class of the method at fault, or 0.
    @ivar method_id: The method at fault, or 0.
    """

    def __init__(self, reply_code, text, class_id=0, method_id=0):
        BusError.__init__(self, text)
        self.reply_code = reply_code
        self.text = text
        self.class_id = class_id
        self.method_id = method_id
