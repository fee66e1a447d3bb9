"""The fuzzer's own packet splitter (tests/fuzz/tcpip.py, pcapng.py) against tshark.

The TCP-level mutations (retransmit, split, coalesce, TLS lengths) need the splitter to find
each frame's TCP segment; it must do so behind 802.1Q and QinQ tags, in Linux cooked SLL and
SLL2 frames, behind IPv6 extension headers, and in classic pcap files, or those fixtures
silently get byte flips instead. tshark, reading the same files, says where the segments are.
"""

from __future__ import annotations

import itertools
import random
import struct
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from pyshark_tools.engine.tshark import find_tshark

from .fuzz import tcpip
from .fuzz.mutate import KINDS
from .fuzz.pcapng import EPB, as_packet, is_pcap, link_types, read_blocks, write_blocks
from .helpers import fixture_path

LINK_LAYER_FIXTURES = ("vlan-8021q", "linux-cooked-sll", "linux-cooked-sll2",
                       "ipv6-extension-headers", "pcap-nanosecond", "tls12-client-cert-ok")


def _tshark_segments(path: Path) -> list[tuple[int, int, str]]:
    """(raw sequence number, TCP payload length, payload hex) of every frame, as tshark
    dissects it (reassembly off: each frame's own bytes)."""
    out = subprocess.run(
        [find_tshark().path, "-n", "-r", str(path), "-o", "tcp.desegment_tcp_streams:FALSE",
         "-o", "tcp.analyze_sequence_numbers:FALSE", "-T", "fields", "-e", "tcp.seq_raw",
         "-e", "tcp.len", "-e", "tcp.payload"],
        capture_output=True, text=True, timeout=60, check=True)
    rows = []
    for line in out.stdout.splitlines():
        seq, length, payload = line.split("\t")
        rows.append((int(seq), int(length), payload.replace(":", "")))
    return rows


def _splitter_segments(data: bytes) -> list[tuple[int, int, str]]:
    blocks = read_blocks(data)
    links = link_types(blocks)
    rows = []
    for i, block in enumerate(blocks):
        packet = as_packet(block) if block.kind == EPB else None
        if packet is None:
            continue
        seg = tcpip.parse(packet.data, links.get(i, tcpip.ETHERNET))
        assert seg is not None, f"no TCP segment found in packet block {i}"
        payload = seg.payload(packet.data)
        rows.append((seg.seq, len(payload), payload.hex()))
    return rows


def _with_outer_tag(data: bytes, tpid: int) -> bytes:
    """The VLAN fixture with an outer service tag (``tpid``) in front of every frame's
    802.1Q tag: a QinQ capture."""
    blocks = read_blocks(data)
    for i, block in enumerate(blocks):
        packet = as_packet(block) if block.kind == EPB else None
        if packet is None:
            continue
        packet.data = packet.data[:12] + struct.pack("!HH", tpid, 100) + packet.data[12:]
        packet.original_length += 4
        blocks[i] = packet.to_block()
    return write_blocks(blocks)


@pytest.mark.parametrize("fixture", LINK_LAYER_FIXTURES)
def test_splitter_finds_the_segments_tshark_finds(fixture: str) -> None:
    path = fixture_path(fixture)
    data = path.read_bytes()
    assert write_blocks(read_blocks(data)) == data, "read and written back byte for byte"
    assert _splitter_segments(data) == _tshark_segments(path)


@pytest.mark.parametrize("tpid", [0x88A8, 0x8100, 0x9100])
def test_splitter_reads_qinq_frames(tpid: int, tmp_path: Path) -> None:
    qinq = tmp_path / "qinq.pcapng"
    qinq.write_bytes(_with_outer_tag(fixture_path("vlan-8021q").read_bytes(), tpid))
    expected = _tshark_segments(qinq)
    assert expected == _tshark_segments(fixture_path("vlan-8021q")), "tshark reads both tags"
    assert _splitter_segments(qinq.read_bytes()) == expected


def test_a_later_ipv6_fragment_is_not_taken_for_a_segment() -> None:
    header = bytes([0x60, 0, 0, 0, 0, 16, 44, 64]) + bytes(32)
    fragment = bytes([6, 0]) + struct.pack("!H", 1480 // 8 << 3) + bytes(4)
    frame = bytes(12) + b"\x86\xdd" + header + fragment + bytes(20)
    assert tcpip.parse(frame) is None
    first = bytes([6, 0]) + struct.pack("!H", 0) + bytes(4)  # offset 0, no more fragments
    whole = bytes(12) + b"\x86\xdd" + header + first + bytes(12) + b"\x50\x18" + bytes(6)
    seg = tcpip.parse(whole)
    assert seg is not None and seg.tcp_offset == 14 + 40 + 8


def _joined(a: tuple[int, int, str], b: tuple[int, int, str]) -> tuple[int, int, str] | None:
    """The one segment two consecutive ones of a direction make (b continues a), or None."""
    if a[1] and b[1] and b[0] == (a[0] + a[1]) & 0xFFFFFFFF:
        return (a[0], a[1] + b[1], a[2] + b[2])
    return None


def _only_record_length_differs(a: tuple[int, int, str], b: tuple[int, int, str]) -> bool:
    """b is a with the length field (bytes 3-4) of the TLS record at its start changed."""
    return (a[:2] == b[:2] and a[2][:2] in ("14", "15", "16", "17")
            and a[2][:6] + a[2][10:] == b[2][:6] + b[2][10:])


def _changed_as_the_kind_says(kind: str, before: list, after: list) -> bool:
    """Whether tshark's view of the mutant shows that kind's change of the TCP segments."""
    added, lost = Counter(after) - Counter(before), Counter(before) - Counter(after)
    if kind == "duplicate":
        return len(after) == len(before) + 1 and not lost and set(added) <= set(before)
    if kind == "drop":
        return len(after) == len(before) - 1 and not added and sum(lost.values()) == 1
    if kind == "reorder":
        return sorted(after) == sorted(before) and after != before
    if kind == "tls_length":  # the same segments, one record header's length changed
        changed = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
        return len(changed) == 1 and _only_record_length_differs(*changed[0])
    if kind == "retransmit":  # one segment more: an earlier one's first part, sent again
        again, = added or [(None, 0, "")]
        return (not lost and len(after) == len(before) + 1 and again[1] > 0 and any(
            r[0] == again[0] and r[2].startswith(again[2]) for r in before))
    if kind == "split":
        return len(after) == len(before) + 1 and any(
            _joined(a, b) in lost for a, b in itertools.pairwise(after))
    if kind == "coalesce":
        return len(after) == len(before) - 1 and any(
            _joined(a, b) in added for a, b in itertools.pairwise(before))
    raise AssertionError(kind)


TCP_KINDS = ("duplicate", "drop", "reorder", "retransmit", "split", "coalesce", "tls_length")


@pytest.mark.parametrize("kind", TCP_KINDS)
@pytest.mark.parametrize("fixture", ["linux-cooked-sll", "linux-cooked-sll2", "vlan-8021q",
                                     "ipv6-extension-headers"])
def test_tcp_mutations_apply_to_every_link_type(fixture: str, kind: str,
                                                tmp_path: Path) -> None:
    """The TCP-level kinds really change segments of these fixtures (not a byte flip in
    their stead), and the file stays one tshark reads whole, in its own format."""
    original = fixture_path(fixture)
    before = _tshark_segments(original)
    results = []
    for attempt in range(4):
        mutant = KINDS[kind](original.read_bytes(), random.Random(f"splitter:{attempt}"))
        assert is_pcap(mutant) == is_pcap(original.read_bytes())
        path = tmp_path / f"{attempt}{original.suffix}"
        path.write_bytes(mutant)
        results.append(_changed_as_the_kind_says(kind, before, _tshark_segments(path)))
    # a swap of two alike segments, or a length drawn equal to the old one, may change
    # nothing visible once; four draws that all do so would be the fallback's byte flips
    assert sum(results) >= (len(results) if kind not in ("reorder", "tls_length") else 1)
