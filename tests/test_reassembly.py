"""Sequence-order reading of one TCP direction (``reassembly.InOrder``) and the choice of the
conversations it reads exactly (``reassembly.readable_in_order``). Both engines' reports on
impaired captures are compared in ``test_tcp_variants`` and ``test_levers_identical``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pyshark_tools.core.tcpgaps import SequenceGaps
from pyshark_tools.engine.reassembly import Holes, InOrder, readable_in_order

SYN, ACK, FIN = 0x02, 0x10, 0x01


def test_in_order_segments_come_out_as_they_are() -> None:
    stream = InOrder()
    assert stream.feed(1000, b"", SYN) == []
    assert stream.feed(1001, b"EHLO a\r\n", ACK) == [b"EHLO a\r\n"]
    assert stream.feed(1009, b"MAIL", ACK) == [b"MAIL"]


def test_a_copy_adds_nothing_and_the_first_copy_wins() -> None:
    stream = InOrder()
    stream.feed(0, b"", SYN)
    assert stream.feed(1, b"abcd", ACK) == [b"abcd"]
    assert stream.feed(1, b"abcd", ACK) == []
    assert stream.feed(3, b"XY", ACK) == []  # inside what was read: ignored
    # partly new: only the new bytes, the old ones stay as first read
    assert stream.feed(3, b"XYef", ACK) == [b"ef"]


def test_an_early_segment_waits_for_the_gap_before_it() -> None:
    stream = InOrder()
    stream.feed(0, b"", SYN)
    assert stream.feed(5, b"EFGH", ACK) == []
    assert stream.feed(9, b"IJ", ACK) == []
    assert stream.feed(5, b"efgh", ACK) == []  # a later copy of a waiting one: first wins
    assert stream.feed(1, b"ABCD", ACK) == [b"ABCD", b"EFGH", b"IJ"]
    assert stream.waiting == {}


def test_sequence_numbers_wrap() -> None:
    stream = InOrder()
    stream.feed(0xFFFFFFFE, b"", SYN)
    assert stream.feed(0xFFFFFFFF, b"ab", ACK) == [b"ab"]
    assert stream.feed(3, b"de", ACK) == []
    assert stream.feed(1, b"cc", ACK) == [b"cc", b"de"]
    assert stream.feed(0xFFFFFFFF, b"ab", ACK) == []


@dataclass
class _Index:
    """The index columns :func:`readable_in_order` reads."""

    stream: np.ndarray
    direction: np.ndarray
    seq: np.ndarray
    seglen: np.ndarray
    flags: np.ndarray

    def __len__(self) -> int:
        return len(self.stream)


def _index(packets: list[tuple[int, int, int, int, int]]) -> _Index:
    """(stream, direction, seq, length, flags) per packet, in capture order."""
    cols = list(zip(*packets, strict=True))
    return _Index(np.array(cols[0], np.int64), np.array(cols[1], np.int8),
                  np.array(cols[2], np.uint32), np.array(cols[3], np.int64),
                  np.array(cols[4], np.int64))


def _handshake(stream: int) -> list[tuple[int, int, int, int, int]]:
    return [(stream, 0, 100, 0, SYN), (stream, 1, 500, 0, SYN | ACK), (stream, 0, 101, 0, ACK)]


def test_copies_and_reordering_are_read_in_order() -> None:
    retransmitted = [*_handshake(0), (0, 1, 501, 50, ACK), (0, 1, 501, 50, ACK),
                     (0, 0, 101, 10, ACK)]
    reordered = [*_handshake(1), (1, 0, 111, 10, ACK), (1, 0, 101, 10, ACK),
                 (1, 0, 121, 0, FIN | ACK)]
    index = _index(retransmitted + reordered)
    no_hole = Holes(0, 0, -1)
    assert readable_in_order(index, [0, 1]) == {0: no_hole, 1: no_hole}
    assert readable_in_order(index, [1]) == {1: no_hole}  # only candidates are answered


def _gaps(packets: list[tuple[int, int, int, int, int]]) -> SequenceGaps:
    """tshark's rows of the same packets, counted the reference engine's way."""
    gaps = SequenceGaps()
    for stream, direction, seq, length, flags in packets:
        gaps.add(stream, "ab"[direction], {"tcp.seq_raw": str(seq), "tcp.len": str(length),
                                           "tcp.flags": f"0x{flags:03x}"})
    return gaps


def test_holes_are_counted_as_the_reference_counts_them() -> None:
    lost = [*_handshake(0), (0, 0, 111, 10, ACK), (0, 0, 121, 0, ACK)]  # 101..111 never seen
    lost_at_end = [*_handshake(1), (1, 0, 101, 10, ACK), (1, 0, 131, 0, ACK)]  # ACK past data
    two = [*_handshake(2), (2, 1, 601, 10, ACK), (2, 1, 621, 10, ACK), (2, 0, 151, 5, ACK)]
    packets = lost + lost_at_end + two
    found = readable_in_order(_index(packets), [0, 1, 2])
    # where the first hole opens: bytes after the direction's first sequence number
    assert found == {0: Holes(1, 0, 1), 1: Holes(1, 0, 11), 2: Holes(1, 2, 1)}
    gaps = _gaps(packets)
    assert [gaps.holes(s) for s in (0, 1, 2)] == [h.dir0 + h.dir1 for h in found.values()]


def test_partial_overlaps_and_older_bytes_stay_with_tshark() -> None:
    overlap = [*_handshake(2), (2, 0, 101, 10, ACK), (2, 0, 105, 20, ACK)]
    before_first = [(3, 0, 200, 10, ACK), (3, 0, 190, 10, ACK)]  # no SYN: older bytes
    fine = [*_handshake(4), (4, 0, 101, 10, ACK), (4, 0, 101, 10, ACK)]
    index = _index(overlap + before_first + fine)
    assert set(readable_in_order(index, [2, 3, 4])) == {4}
    assert readable_in_order(index, []) == {}


def test_new_bytes_acknowledged_before_they_came_are_marked() -> None:
    # tshark calls such a segment a spurious retransmission and does not dissect it
    stream = InOrder()
    stream.feed(0, b"", SYN)
    stream.feed(1, b"abcd", ACK)
    stream.acknowledge(5)
    stream.feed(1, b"abcd", ACK)  # a copy of read bytes: nothing to tell
    assert not stream.spurious
    stream.feed(9, b"ijkl", ACK)  # early, not acknowledged
    assert not stream.spurious
    stream.acknowledge(13)  # the receiver claims all of it ...
    assert stream.feed(5, b"efgh", ACK) == [b"efgh", b"ijkl"]  # ... before these came
    assert stream.spurious and stream.spurious_now
    stream.feed(13, b"mnop", ACK)  # in order, not acknowledged yet
    assert stream.spurious and not stream.spurious_now  # (the first mark stays)


def test_each_piece_names_the_segment_that_carried_it() -> None:
    stream = InOrder()
    stream.feed(0, b"", SYN, 1, 10)
    assert stream.feed(5, b"EFGH", ACK, 2, 20) == []
    assert stream.feed(1, b"ABCD", ACK, 3, 30) == [b"ABCD", b"EFGH"]
    assert stream.sources == [(3, 30, 1), (2, 20, 5)]  # (frame, stamp, sequence number)
