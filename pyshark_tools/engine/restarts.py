"""One conversation per TCP connection, also where tshark numbers two as one ``tcp.stream``.

A connection restarted on the same addresses and ports (a quick source-port reuse, a server
restart) is a new TCP connection: its SYN comes after the first one's FIN+ACK or RST, or its
SYN-ACK carries a new server sequence number. tshark 4.4 numbers such a restart as a new
``tcp.stream``; tshark 4.0 keeps both in one (a SYN-ACK with another sequence number only
moves 4.0's base, a SYN with the old sequence number is taken for a retransmission), and a
report keyed by that number would merge two handshakes into one verdict.

:class:`ConnectionSplitter` applies 4.4's rule (measured against both versions, see
``scan.Numbering``) inside each ``tcp.stream`` of the rows tshark prints, whatever version
printed them: the first connection keeps the ``tcp.stream`` number as its conversation
number, every later one gets a number after the highest ``tcp.stream`` of the pass (in order
of first frame), and the ``tcp.stream`` stays a column. The reference engine uses it with
tshark before 4.2 only: 4.2 and later number connections so themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ConnectionSplitter", "restart_suspected"]

_FIN, _SYN, _RST, _ACK = 0x01, 0x02, 0x04, 0x10


@dataclass
class _Connection:
    """The state of the current connection of one ``tcp.stream``."""

    key: int  # provisional conversation key (the tcp.stream, or negative for a restart)
    first_src: str
    base_first: int | None = None  # base sequence number of the first sender's direction
    base_other: int | None = None
    closed: bool = False  # a RST or FIN+ACK seen since the last SYN


class ConnectionSplitter:
    """Conversation keys for tshark's rows, in frame order: :meth:`key` per row, then
    :meth:`numbers` for the final numbering."""

    def __init__(self) -> None:
        self._current: dict[int, _Connection] = {}
        self._restarts: list[int] = []  # tcp.stream of each provisional key -1, -2, ...
        self._highest = -1

    # long: runs per row of tshark's output: the SYN, FIN and RST rules of 4.4's numbering inline
    def key(self, tcp_stream: int, src: str, flags: int, seq: int | None) -> int:
        """The provisional key of one row: its ``tcp.stream``, or a negative key from the row
        that restarts the connection on. ``seq``: the raw sequence number (None: unknown)."""
        self._highest = max(self._highest, tcp_stream)
        conn = self._current.get(tcp_stream)
        if conn is None:
            conn = self._current[tcp_stream] = _Connection(tcp_stream, src)
        elif flags & _SYN and seq is not None:
            base = conn.base_first if src == conn.first_src else conn.base_other
            if base is not None and (base != seq or conn.closed):
                self._restarts.append(tcp_stream)
                conn = self._current[tcp_stream] = _Connection(-len(self._restarts), src)
        if seq is not None:
            if src == conn.first_src and conn.base_first is None:
                conn.base_first = seq if flags & _SYN else (seq - 1) & 0xFFFFFFFF
            elif src != conn.first_src and conn.base_other is None:
                conn.base_other = seq if flags & _SYN else (seq - 1) & 0xFFFFFFFF
        if flags & _SYN and not flags & _ACK:
            conn.closed = False  # a SYN that keeps the connection: not closed any more
        if flags & _RST or (flags & (_FIN | _ACK)) == (_FIN | _ACK):
            conn.closed = True
        return conn.key

    @property
    def split(self) -> bool:
        """Whether any ``tcp.stream`` held more than one connection."""
        return bool(self._restarts)

    def numbers(self) -> dict[int, tuple[int, int]]:
        """Provisional key -> (conversation number, tcp.stream), for every restart; the
        other keys are their own ``tcp.stream`` and conversation number."""
        return {-(i + 1): (self._highest + 1 + i, stream)
                for i, stream in enumerate(self._restarts)}


def restart_suspected(stream, direction, seq, flags) -> bool:
    """Whether packets (numpy arrays in capture order, as ``scan.CaptureIndex`` has them)
    may hold a connection restarted inside one ``tcp.stream``: a SYN after a RST or FIN+ACK
    of its stream, SYN-ACKs with different sequence numbers in one direction, or a SYN whose
    sequence number is not its direction's base (a damaged or odd one too). It may say
    yes where 4.4's rule would not split (the caller then reads packet by packet, which is
    exact); it never says no where it would."""
    import numpy as np

    syn = (flags & _SYN) != 0
    if not len(stream) or not bool(syn.any()):
        return False
    close = ((flags & _RST) != 0) | ((flags & (_FIN | _ACK)) == (_FIN | _ACK))
    first_close = np.full(int(stream.max()) + 1, len(stream), np.int64)
    np.minimum.at(first_close, stream[close], np.flatnonzero(close))
    at = np.flatnonzero(syn)
    if bool((at > first_close[stream[at]]).any()):
        return True
    synack = np.flatnonzero(syn & ((flags & _ACK) != 0))
    side = stream[synack].astype(np.int64) * 2 + direction[synack]
    pairs = side * (1 << 32) + seq[synack].astype(np.int64)
    if len(np.unique(pairs)) > len(np.unique(side)):
        return True
    # a SYN (with or without ACK, RST, ...) whose sequence number is not its direction's
    # base, the base taken as ConnectionSplitter takes it: the direction's first sequence
    # number, minus one unless that packet is a SYN
    sides = stream.astype(np.int64) * 2 + direction
    _, first = np.unique(sides, return_index=True)
    base = seq[first].astype(np.int64) - ((flags[first] & _SYN) == 0)
    base_of = dict(zip(sides[first].tolist(), (base & 0xFFFFFFFF).tolist(), strict=True))
    return any(base_of[side] != int(number)
               for side, number in zip(sides[at].tolist(), seq[at].tolist(), strict=True))
