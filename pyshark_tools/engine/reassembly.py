"""TCP payload put back in sequence order, for conversations the native reader reads although
their segments were retransmitted, duplicated or reordered.

tshark (with ``tcp.reassemble_out_of_order``) shows a TLS record in the frame whose segment
completes it in sequence order: a segment sent again adds nothing (the first copy wins), one
that arrives early waits for the bytes before it. :class:`InOrder` applies those rules to one
direction of a conversation. :func:`readable_in_order` picks, ahead of the reading, the
conversations those rules read exactly: no segment overlaps another only in part, and none
starts before its direction's first packet. A hole (bytes no captured segment holds) stops
its direction's reading there, as it stops tshark's. The others (a partial overlap) stay
with tshark, kept whole.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

__all__ = ["Holes", "InOrder", "readable_in_order"]

_SEQ_SPACE = 1 << 32
_HALF = 1 << 31
_SYN = 0x02
_FIN = 0x01


class Holes(NamedTuple):
    """The holes of a conversation's two directions (gaps no captured segment fills, counted
    as ``tcpgaps.SequenceGaps`` counts them), and where the first one opens: bytes from its
    direction's first sequence number (-1: no hole)."""

    dir0: int
    dir1: int
    first_at: int


class InOrder:
    """One TCP direction's payload in sequence order: :meth:`feed` returns the bytes a
    segment makes available, one piece per segment they came from (a segment that waited
    for a gap comes out, whole, when the gap fills)."""

    __slots__ = ("acked", "next", "origin", "sources", "spurious", "spurious_now", "waiting")

    def __init__(self) -> None:
        self.next: int | None = None  # sequence number of the next byte expected
        self.waiting: dict[int, bytes] = {}  # sequence number -> payload (first copy)
        #: sequence number -> (frame, stamp) of each waiting segment
        self.origin: dict[int, tuple[int, int]] = {}
        #: (frame, stamp, sequence number) of each piece the last feed returned
        self.sources: list[tuple[int, int, int]] = []
        self.acked: int | None = None  # the furthest acknowledgement the receiver sent
        #: a segment brought bytes not read yet that the receiver had acknowledged before
        #: it arrived: tshark calls it a spurious retransmission and does not dissect it
        self.spurious = False
        #: ... and the last segment fed was such a one
        self.spurious_now = False

    def acknowledge(self, ack: int) -> None:
        """The receiver acknowledged up to ``ack`` (a packet of the other direction)."""
        if self.acked is None or 0 < (ack - self.acked) % _SEQ_SPACE < _HALF:
            self.acked = ack

    # long: runs per TCP segment: the copy, early, wrapped and overlapping cases of sequence-order
    #   reading side by side
    def feed(self, seq: int, payload: bytes, flags: int, frame: int = 0,
             stamp: int = 0) -> list[bytes]:
        """The in-order pieces this segment releases (empty for a copy or an early one);
        :attr:`sources` says which segment each came from."""
        self.sources = []
        self.spurious_now = False
        if self.next is None:
            self.next = (seq + 1) & 0xFFFFFFFF if flags & _SYN else seq
            if flags & _SYN:
                return []
        if not payload:
            return []
        end = seq + len(payload)
        if self.acked is not None and (self.acked - end) % _SEQ_SPACE < _HALF \
                and 0 < (end - self.next) % _SEQ_SPACE < _HALF:
            self.spurious = self.spurious_now = True  # new bytes, acknowledged before they came
        offset = (seq - self.next) % _SEQ_SPACE
        if offset >= _HALF:
            offset -= _SEQ_SPACE
        if offset > 0:  # early: wait for the bytes before it (the first copy stays)
            if seq not in self.waiting:
                self.waiting[seq] = payload
                self.origin[seq] = (frame, stamp)
            return []
        if offset + len(payload) <= 0:
            return []  # sent again: those bytes were read
        out = [payload[-offset:] if offset else payload]
        self.sources.append((frame, stamp, self.next))
        self.next = (self.next + len(out[0])) & 0xFFFFFFFF
        while self.waiting:
            ready = None
            for start in self.waiting:
                gap = (start - self.next) % _SEQ_SPACE
                if gap == 0 or gap >= _HALF:
                    ready = start
                    break
            if ready is None:
                break
            data = self.waiting.pop(ready)
            came = self.origin.pop(ready)
            skip = (self.next - ready) % _SEQ_SPACE
            if skip < len(data):
                out.append(data[skip:])
                self.sources.append((*came, self.next))
                self.next = (self.next + len(data) - skip) & 0xFFFFFFFF
        return out


def readable_in_order(index, candidates: Iterable[int]) -> dict[int, Holes]:
    """Of ``candidates`` (conversations of the :mod:`~pyshark_tools.engine.scan` index whose
    segments are not all in order), those :class:`InOrder` reads as tshark does, each with
    its :class:`Holes`. Per direction, sorted by sequence number, every
    segment ends at or before the furthest byte of those before it or starts at or after it
    (copies, early segments and holes; no partial overlap), and none starts before the
    direction's first packet. A hole stops the reading of its direction, in both engines:
    tshark waits for the missing bytes to the end of the capture."""
    import numpy as np

    wanted = np.fromiter(candidates, dtype=np.int64)
    if not len(wanted) or not len(index):
        return {}
    rows = np.flatnonzero(np.isin(index.stream, wanted))
    if not len(rows):
        return {}
    group = index.stream[rows].astype(np.int64) * 2 + index.direction[rows]
    order = np.argsort(group, kind="stable")  # capture order inside each direction
    rows, group = rows[order], group[order]
    seq = index.seq[rows].astype(np.int64)
    flags = index.flags[rows].astype(np.int64)
    size = index.seglen[rows].astype(np.int64) + ((flags & (_SYN | _FIN)) != 0)
    first = np.ones(len(group), bool)
    first[1:] = group[1:] != group[:-1]
    starts = np.flatnonzero(first)
    base = np.repeat(seq[starts], np.diff(np.append(starts, len(group))))
    rel = (seq - base) % _SEQ_SPACE
    rel = np.where(rel >= _HALF, rel - _SEQ_SPACE, rel)
    ends = rel + size
    by_seq = np.lexsort((ends, rel, group))
    g, lo, hi = group[by_seq], rel[by_seq], ends[by_seq]
    head = np.ones(len(g), bool)
    head[1:] = g[1:] != g[:-1]
    # the furthest byte of the segments before each one, in its direction
    reach = _running_max_by_group(hi, head)
    prev = np.empty(len(g), np.int64)
    prev[0] = 0
    prev[1:] = reach[:-1]
    later = ~head
    hole = np.zeros(len(g), bool)
    hole[later] = lo[later] > prev[later]
    bad = np.zeros(len(g), bool)
    bad[later] = (lo[later] < prev[later]) & (hi[later] > prev[later])
    bad |= lo < 0
    bad_streams = set((g[bad] // 2).tolist())
    holes: dict[int, list[int]] = {}
    found, at, counts = np.unique(g[hole], return_index=True, return_counts=True)
    opens = prev[hole][at]  # (sorted by sequence: the first hole of each direction)
    for grp, count, where in zip(found.tolist(), counts.tolist(), opens.tolist(), strict=True):
        entry = holes.setdefault(grp // 2, [0, 0, where])
        entry[grp % 2] = count
        entry[2] = min(entry[2], where)
    return {stream: Holes(*holes[stream]) if stream in holes else Holes(0, 0, -1)
            for stream in wanted.tolist() if stream not in bad_streams}


def _running_max_by_group(values, head):
    """The running maximum of ``values``, restarting where ``head`` is set."""
    import numpy as np

    out = values.copy()
    big = int(values.max() - values.min()) + 1 if len(values) else 0
    # lift each group above every earlier one, take the running max, put them back
    offset = np.cumsum(head) * big
    return np.maximum.accumulate(out + offset) - offset
