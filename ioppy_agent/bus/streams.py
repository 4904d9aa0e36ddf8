"""
L{offset_at}: where a reader of a stream starts, without reading on.
"""

from twisted.internet import defer

from .framing import decode_table

# Seconds to wait for a stream's first delivery: none by then, it is empty.
PEEK_TIMEOUT = 5.0


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
    if delivery is None or delivery.headers is None:
        return None
    try:
        offset = decode_table(delivery.headers).get("x-stream-offset")
    except ValueError:
        return None
    return offset if isinstance(offset, int) and not isinstance(offset, bool) else None
