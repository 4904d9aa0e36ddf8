"""
What a session does with streams (L{StreamOperations}, which
L{ioppy_agent.bus.session.BusSession} has): declaring one with its
retention, reading it from an offset or a time, publishing straight to it;
and L{offset_at}, where a reader of a stream starts, without reading on.
"""

from twisted.internet import defer

from ..model.actions import DropReason
from . import framing
from .errors import NOT_FOUND, PRECONDITION_FAILED, NotFound, StreamMismatch
from .protocol import WHOLE

# Seconds to wait for a stream's first delivery: none by then, it is empty.
PEEK_TIMEOUT = 5.0


class StreamOperations:
    """
    The stream operations of a session: they use its channel, its consumer
    registry and its declare-and-bind.
    """

    def declare_stream(self, name, bindings, arguments):
        """
        Declare a durable stream (C{x-queue-type} C{stream}, with the
        retention in C{arguments}) bound to each key in C{bindings}.  It is
        the broker's: it outlives this session and the program.

        @raise StreamMismatch: if the stream exists with other settings (the
            broker answers 406).
        @raise ChannelClosed: if the broker refuses for another reason.
        """
        return self._declare(
            name, bindings,
            {PRECONDITION_FAILED: lambda text: StreamMismatch(
                f"the stream {name!r} exists with other settings: {text}")},
            durable=True, arguments=dict(arguments, **{"x-queue-type": "stream"}))

    def consume_stream(self, queue, handler, offset, prefetch):
        """
        Read the stream C{queue} from C{offset} (C{"first"}, C{"next"}, an
        offset, or a L{framing.Timestamp}), C{prefetch} messages in flight;
        C{handler} gets each L{Delivery}, and must L{ack} them.

        @raise NotFound: if there is no such stream.
        @return: A L{Deferred} that fires with the consumer tag.
        """
        def refusal(code, text):
            return NotFound(f"no stream {queue!r}: {text}") if code == NOT_FOUND else None

        return self._start_consumer(self._new_tag(), (handler, WHOLE), prefetch, refusal,
                                    queue=queue, no_ack=False,
                                    arguments={"x-stream-offset": offset})

    def publish_to_queue(self, queue, body, content_type):
        """
        Publish C{body} straight to C{queue}, through the default exchange
        (a reader's end-of-window marker in a stream).
        """
        if self.refusal() is DropReason.NOT_CONNECTED:
            return False
        if self._to_queues is None:
            self._to_queues = framing.Publisher(self.channel.id, "")
        self.client.write_frames(self._to_queues.frames(queue, body, content_type,
                                                        self.client.MAX_LENGTH))
        return True


@defer.inlineCallbacks
def offset_at(session, stream, start, clock, timeout=PEEK_TIMEOUT):
    """
    The offset of the message a reader of C{stream} from C{start}
    (C{"first"}, C{"last"}: the last chunk) is given first.

    @return: A L{Deferred} that fires with the offset, or C{None} if the
        broker sent nothing within C{timeout} seconds (an empty stream).
    @raise NotFound: if there is no such stream.
    """
    first = defer.Deferred()

    def delivered(delivery):
        # The broker may send more before it confirms the cancel: dropped.
        if not first.called:
            first.callback(delivery)

    tag = yield session.consume_stream(stream, delivered, start, 1)
    try:
        delivery = yield first.addTimeout(timeout, clock)
    except defer.TimeoutError:
        delivery = None
    finally:
        if not session.closed:
            yield session.cancel(tag)
    return None if delivery is None else delivery.stream_offset
