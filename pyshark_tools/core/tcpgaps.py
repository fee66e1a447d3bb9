"""Which bytes of a TCP conversation the capture truly misses.

tshark flags ``tcp.analysis.lost_segment`` on the segment after a gap, also when the missing
segment arrives a moment later (reordering) or is retransmitted: that is not damage, the
bytes are all in the capture. A gap counts here only when no captured segment ever covers
it: per direction, the sequence space from the first packet seen to the last, with SYN and
FIN taking one number each, and packets without data (ACKs, keep-alives) marking how far the
sender had got.
"""

from __future__ import annotations

import os
import struct
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


#: tshark reassembles segments that arrive out of order (real networks reorder; without it
#: the early segment's TLS records are dropped) ...
OUT_OF_ORDER = "tcp.reassemble_out_of_order:TRUE"
#: ... unless packets may be cut by a snap length: tshark then reads the cut bytes as missing
#: data still to come and loses the replies after them.
FULL_SNAPLEN = 65535


def tcp_preferences(capture: str | os.PathLike) -> tuple[str, ...]:
    """The TCP preferences of every tshark pass over ``capture`` (and over its shards): out
    of order reassembly when no interface described before the first packet cuts packets
    (pcap: the header's snap length; pcapng: the interface blocks before the first packet).
    Both engines decide from the same bytes, so they always agree."""
    try:
        with open(capture, "rb") as handle:
            head = handle.read(1 << 16)
    except OSError:
        return ()
    snaplens = _snaplens(head)
    if snaplens and all(s == 0 or s >= FULL_SNAPLEN for s in snaplens):
        return (OUT_OF_ORDER,)
    return ()


def _snaplens(head: bytes) -> list[int]:
    if len(head) >= 24 and head[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        return [struct.unpack_from("<I", head, 16)[0]]
    if len(head) >= 24 and head[:4] in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        return [struct.unpack_from(">I", head, 16)[0]]
    if head[:4] != b"\x0a\x0d\x0d\x0a" or len(head) < 12:
        return []
    endian = "<" if head[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
    out, pos = [], 0
    while pos + 16 <= len(head):
        btype, blen = struct.unpack_from(endian + "II", head, pos)
        if btype in (2, 3, 6) or blen < 12:
            break
        if btype == 1:
            out.append(struct.unpack_from(endian + "I", head, pos + 12)[0])
        pos += blen
    return out
