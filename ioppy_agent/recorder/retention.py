"""
How far back the recording stream still reaches, from what the router sees
of its offsets: pure, so that one participant pushing the session's packets
out of the record in minutes is noticed without trusting anyone's clock or
reports.

The router looks at the stream every so often: the offset of its first
message (the oldest still kept) and of its last chunk.  When the first
offset has passed a last offset seen at time C{t}, every packet the stream
held at C{t} is gone: the record keeps no more than C{now - t} seconds.
"""

from collections import deque

# Below this the organiser is told: the record keeps less than an hour.
WARN_BELOW = 3600.0


class Reach:
    """
    The record's reach, from the offsets seen.

    @ivar first: The first offset kept, as last seen (C{None}: empty).
    @ivar last: The last chunk's offset, as last seen.
    @ivar kept: At most how many seconds of packets the stream keeps, when
        the router saw packets go; C{None} while it has seen none go within
        C{window} seconds.
    @ivar lost: How many messages the router has seen go from the stream.
    """

    def __init__(self, window=2 * WARN_BELOW):
        self.window = window
        self.first = self.last = None
        self.kept = None
        self.lost = 0
        self._seen = deque()  # (time, last offset), oldest first
        self._gone_at = None  # the latest look whose last chunk has gone since

    def observe(self, now, first, last):
        """
        The stream's first and last offsets at time C{now}, C{None} for an
        empty stream.

        @return: L{kept}.
        """
        seen = self._seen
        if first is not None and self.first is not None:
            if first < self.first:
                # Deleted and made again: its offsets start over.
                seen.clear()
                self._gone_at = None
            else:
                self.lost += first - self.first
        self.first, self.last = first, last
        while seen and first is not None and seen[0][1] < first:
            self._gone_at = seen.popleft()[0]
        while seen and now - seen[0][0] > self.window:
            seen.popleft()
        if last is not None:
            seen.append((now, last))
        gone_at = self._gone_at
        self.kept = None if gone_at is None or now - gone_at > self.window else now - gone_at
        return self.kept

    def short(self, below=WARN_BELOW):
        """
        @return: Whether the record keeps less than C{below} seconds.
        """
        return self.kept is not None and self.kept < below


def top_sender(before, after):
    """
    @param before: Bytes each agent reported sending, at the last look.
    @param after: The same, now.
    @return: C{(name, share)}: the agent that sent the most since, and its
        share of all sent (0 to 1); C{None} if none sent anything.
    """
    sent = {name: after[name] - before.get(name, 0) for name in after
            if after[name] >= before.get(name, 0)}
    total = sum(sent.values())
    if total <= 0:
        return None
    name = max(sorted(sent), key=sent.get)
    return name, sent[name] / total


def shown_duration(seconds):
    """
    @return: C{seconds} as a person says it: C{42 s}, C{7 min}, C{2.5 h}.
    """
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
