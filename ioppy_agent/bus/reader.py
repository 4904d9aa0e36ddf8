"""
L{FrameReader}: the broker's byte stream turned into methods and whole
deliveries, with whatever AMQP 0-9-1 does not allow refused.

The reader trusts nothing it is sent.  A frame larger than the negotiated
C{frame_max} is refused as soon as its 7-byte header arrives, before its
payload is buffered; a body is kept only up to C{max_body} (a larger one is
skipped as it streams past, never stored, and reported as oversize; see
L{ioppy_agent.bus.content}); the bytes waiting for the rest of a frame are
held as a list of reads and joined once, so a slow frame costs no copy per
read.  Frames out of order,
on channels that were never opened, of unknown types, or carrying methods a
broker does not send raise L{ProtocolViolation} with the reply code to
close the connection with.

Pure: this module imports neither Twisted nor txamqp; it is tested on bytes.
"""

from .content import Contents, Delivery
from .errors import (CHANNEL_ERROR, COMMAND_INVALID, FRAME_ERROR, NOT_IMPLEMENTED,
                     UNEXPECTED_FRAME, ProtocolViolation)
from .framing import (CHANNEL_CLOSE, CHANNEL_CLOSE_OK, CONNECTION_CLOSE, CONNECTION_CLOSE_OK,
                      CONTENT_METHODS, FRAME_BODY, FRAME_END, FRAME_HEAD, FRAME_HEADER,
                      FRAME_HEARTBEAT, FRAME_MAX, FRAME_METHOD, MAX_BODY, METHOD_IDS, OVERHEAD,
                      SERVER_METHODS, method_name)

__all__ = ["Delivery", "FrameReader", "MethodFrame"]


class MethodFrame:
    """
    A method frame, for the caller to decode.

    @ivar frame: The whole frame, header and end octet included.
    """

    __slots__ = ("channel", "class_id", "method_id", "frame")

    def __init__(self, channel, class_id, method_id, frame):
        self.channel = channel
        self.class_id = class_id
        self.method_id = method_id
        self.frame = frame

    @property
    def name(self):
        return method_name(self.class_id, self.method_id)

    def __repr__(self):
        return f"<MethodFrame {self.name} on channel {self.channel}>"


def _violation(code, text, ids=(0, 0)):
    return ProtocolViolation(code, text, *ids)


class FrameReader:
    """
    Turns the broker's bytes into L{MethodFrame}s and L{Delivery}s.

    Feed it each read with L{feed}, then call L{next_event} until it returns
    C{None}; it parses only as far as asked, so a caller can stop after a
    number of deliveries and come back for the rest.  Heartbeat frames are
    checked and consumed.

    Channel 0 is always open; other channels count as open once the caller
    says so (L{open_channel}, when it sends C{channel.open}).  While a
    channel is closing (the caller sent C{channel.close}, or with channel 0
    C{connection.close}), every frame on it but the two closing methods is
    skipped, as the spec requires.

    @ivar frame_max: The largest frame accepted, header and end octet
        included: the negotiated value once the connection is tuned.
    @ivar max_body: The largest body kept.
    @ivar skipped: Frames skipped on closing channels.
    """

    def __init__(self, frame_max=FRAME_MAX, max_body=MAX_BODY):
        self.frame_max = frame_max
        self.contents = Contents(max_body)
        self.skipped = 0
        self._buf = b""
        self._pos = 0
        self._chunks = []
        self._held = 0
        self._needed = 0
        self._open = {0}
        self._closing = set()
        # The channels whose frames are read as usual: open, and neither
        # they nor the connection closing (one look-up per frame).
        self._normal = {0}

    @property
    def max_body(self):
        """
        The largest body kept; a larger one is skipped as it comes.
        """
        return self.contents.max_body

    @max_body.setter
    def max_body(self, size):
        self.contents.max_body = size

    # Channels.

    def open_channel(self, channel):
        """
        Accept frames on C{channel} from now on.
        """
        self._open.add(channel)
        self._closing.discard(channel)
        if 0 not in self._closing:
            self._normal.add(channel)

    def closing_channel(self, channel):
        """
        Skip frames on C{channel} (all channels, for 0) until it is closed,
        except C{close} and C{close-ok}.
        """
        self._closing.add(channel)
        self.contents.drop(channel)
        if channel == 0:
            self._normal.clear()
        else:
            self._normal.discard(channel)

    def close_channel(self, channel):
        """
        Refuse frames on C{channel} from now on (for 0, nothing changes: a
        closed connection reads nothing).
        """
        if channel:
            self._open.discard(channel)
            self._closing.discard(channel)
            self._normal.discard(channel)
            self.contents.drop(channel)

    def awaiting_content(self, channel):
        """
        @return: Whether C{channel} is in the middle of a message's content.
        """
        return channel in self.contents

    # Bytes.

    @property
    def buffered(self):
        """
        @return: How many bytes are held, not yet parsed.
        """
        return len(self._buf) - self._pos + self._held

    def feed(self, data):
        """
        Take one read.  The bytes of an incomplete frame are kept as a list
        and joined once the frame is complete.
        """
        if not data:
            return
        if self._pos >= len(self._buf) and not self._chunks:
            self._buf, self._pos = data, 0
            return
        self._chunks.append(data)
        self._held += len(data)
        if self._held >= self._needed:
            self._join()

    def _join(self):
        self._buf = self._buf[self._pos:] + b"".join(self._chunks)
        self._pos = 0
        self._chunks = []
        self._held = 0
        self._needed = 0

    def next_event(self):
        """
        Parse frames until one gives a L{MethodFrame} or a complete
        L{Delivery}.

        @return: The event, or C{None} when the bytes held run out.
        @raise ProtocolViolation: for anything the protocol does not allow;
            the reader is then of no further use.
        """
        if self._chunks:
            if self._held < self._needed:
                return None
            self._join()
        buf = self._buf
        end = len(buf)
        pos = self._pos
        normal = self._normal
        contents = self.contents
        limit = self.frame_max - OVERHEAD
        while True:
            if end - pos < 7:
                if end > pos:
                    self._needed = 7 - (end - pos)
                self._pos = pos
                return None
            kind, channel, size = FRAME_HEAD.unpack_from(buf, pos)
            if size > limit:
                raise _violation(FRAME_ERROR, f"a frame of {size + OVERHEAD} bytes, more "
                                              f"than the negotiated frame_max {self.frame_max}")
            last = pos + 7 + size
            if last >= end:
                self._needed = last + 1 - end
                self._pos = pos
                return None
            if buf[last] != FRAME_END:
                raise _violation(FRAME_ERROR, f"a frame that does not end with {FRAME_END:#x}")
            start, frame, pos = pos + 7, pos, last + 1
            if channel not in normal and not self._unusual(kind, channel, buf, frame, size):
                continue
            if kind == FRAME_BODY:
                event = contents.body(channel, buf, start, last)
            elif kind == FRAME_METHOD:
                if buf[start + 1] == 60 and buf[start + 3] == 60 and not buf[start] \
                        and not buf[start + 2] and size >= 4 and channel \
                        and channel not in contents:
                    delivery = contents.deliver(channel, buf, start + 4, last, end, limit)
                    if delivery is not None:
                        self._pos = contents.next_frame
                        return delivery
                    continue
                event = self._method(channel, buf, frame, start, last)
            elif kind == FRAME_HEADER:
                event = contents.header(channel, buf, start, last)
            elif kind == FRAME_HEARTBEAT:
                if channel or size:
                    raise _violation(FRAME_ERROR, "a heartbeat frame with a channel or a "
                                                  "payload")
                continue
            else:
                raise _violation(FRAME_ERROR, f"a frame of unknown type {kind}")
            if event is not None:
                self._pos = pos
                return event

    def _unusual(self, kind, channel, buf, frame, size):
        """
        A frame on a channel that is closing, or was never opened.

        @return: C{True} to read it as usual (a closing method), C{False} to
            skip it.
        @raise ProtocolViolation: for a channel never opened.
        """
        if channel in self._closing or (channel and 0 in self._closing):
            if self._closing_frame(kind, channel, buf, frame, size):
                return True
            self.skipped += 1
            return False
        raise _violation(CHANNEL_ERROR, f"a frame of type {kind} on channel {channel}, which "
                                        "was never opened")

    def _closing_frame(self, kind, channel, buf, pos, size):
        """
        @return: C{True} if a frame on a closing channel is one of the
            closing methods, which are read as usual; C{None} to skip it.
        """
        if kind != FRAME_METHOD or size < 4:
            return None
        ids = METHOD_IDS.unpack_from(buf, pos + 7)
        if channel == 0 and ids in (CONNECTION_CLOSE, CONNECTION_CLOSE_OK):
            return True
        if channel and channel in self._closing and ids in (CHANNEL_CLOSE, CHANNEL_CLOSE_OK):
            return True
        return None

    def _method(self, channel, buf, pos, start, last):
        if last - start < 4:
            raise _violation(FRAME_ERROR, "a method frame too short for its method ids")
        ids = METHOD_IDS.unpack_from(buf, start)
        if ids not in SERVER_METHODS:
            raise _violation(NOT_IMPLEMENTED, f"{method_name(*ids)}, which AMQP 0-9-1 "
                                              "brokers do not send", ids)
        if channel in self.contents:
            raise _violation(UNEXPECTED_FRAME, f"{method_name(*ids)} on channel {channel} "
                                               "while a message's content was expected", ids)
        if (channel == 0) != (ids[0] == 10):
            raise _violation(CHANNEL_ERROR, f"{method_name(*ids)} on channel {channel}: "
                                            "channel 0 is for connection methods only", ids)
        if ids in CONTENT_METHODS:
            # basic.deliver is read by Contents.deliver; it comes here only on channel 0
            # or inside another message's content, refused above.
            raise _violation(COMMAND_INVALID, f"{method_name(*ids)}, which answers nothing "
                                              "this client does", ids)
        return MethodFrame(channel, ids[0], ids[1], buf[pos:last + 1])
