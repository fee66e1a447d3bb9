"""Which bytes of a TCP conversation the capture truly misses.

tshark flags ``tcp.analysis.lost_segment`` on the segment after a gap, also when the missing
segment arrives a moment later (reordering) or is retransmitted: that is not damage, the
bytes are all in the capture. A gap counts here only when no captured segment ever covers
it: per direction, the sequence space from the first packet seen to the last, with SYN and
FIN taking one number each, and packets without data (ACKs, keep-alives) marking how far the
sender had got.
"""

from __future__ import annotations

from collections.abc import Mapping

_SYN_FIN = 0x003
_WRAP = 1 << 32


class SequenceGaps:
    """Collects (stream, sender) sequence spans from tshark rows; :meth:`holes` counts the
    gaps that remain."""

    def __init__(self) -> None:
        self._spans: dict[int, dict[str, list[tuple[int, int]]]] = {}
        self._base: dict[tuple[int, str], int] = {}

    def add(self, stream: int, src: str, row: Mapping[str, str]) -> None:
        """One packet: its raw sequence number, payload length and flags from the row."""
        raw = row.get("tcp.seq_raw") or ""
        if not raw:
            return
        try:
            seq = int(raw)
            length = int(row.get("tcp.len") or 0)
            flags = int(row.get("tcp.flags") or "0", 16)
        except ValueError:
            return
        size = length + (1 if flags & _SYN_FIN else 0)
        base = self._base.setdefault((stream, src), seq)
        rel = (seq - base) % _WRAP
        if rel >= _WRAP // 2:
            rel -= _WRAP  # before the first packet seen (a retransmission of older bytes)
        self._spans.setdefault(stream, {}).setdefault(src, []).append((rel, rel + size))

    def holes(self, stream: int) -> int:
        """Gaps in either direction of ``stream`` that no captured segment fills."""
        count = 0
        for spans in self._spans.get(stream, {}).values():
            spans.sort()
            reach = spans[0][1]
            for start, end in spans[1:]:
                if start > reach:
                    count += 1
                if end > reach:
                    reach = end
        return count
