"""Seeded mutations of a pcapng (or pcap) capture: the ways captures arrive damaged or
hostile.

Every mutation is a pure function of (capture bytes, random generator): the same seed gives
the same mutant, so a failure is reproduced from its seed alone.
"""

from __future__ import annotations

import itertools
import random
import struct
from collections.abc import Callable

from . import tcpip
from .pcapng import (
    EPB,
    PCAP_MAGICS,
    Block,
    Packet,
    as_packet,
    is_pcap,
    link_types,
    read_blocks,
    write_blocks,
)


def _packets(blocks: list[Block]) -> list[int]:
    return [i for i, b in enumerate(blocks) if b.kind == EPB]


def _segments(blocks: list[Block], with_payload: bool = True
              ) -> list[tuple[int, Packet, tcpip.Segment]]:
    found = []
    links = link_types(blocks)
    for i in _packets(blocks):
        packet = as_packet(blocks[i])
        seg = tcpip.parse(packet.data, links.get(i, tcpip.ETHERNET)) if packet else None
        if seg and (not with_payload or seg.payload(packet.data)):
            found.append((i, packet, seg))
    return found


def flip(data: bytes, rng: random.Random) -> bytes:
    """A few random bytes changed, anywhere in the file (headers included)."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        out[rng.randrange(len(out))] = rng.randrange(256)
    return bytes(out)


def truncate(data: bytes, rng: random.Random) -> bytes:
    """The file cut at a random byte (the capture stopped, the copy broke)."""
    return data[:rng.randrange(1, len(data))]


def _record_offsets(data: bytes) -> tuple[str, list[int], list[int]]:
    """(byte order, where each packet record starts, its length fields' offsets in it)."""
    offsets = []
    if is_pcap(data):  # record header: seconds, fraction, captured length, original length
        order = PCAP_MAGICS[struct.unpack_from("<I", data)[0]][0]
        offset = 24
        while offset + 16 <= len(data):
            offsets.append(offset)
            offset += 16 + struct.unpack_from(order + "I", data, offset + 8)[0]
        return order, offsets, [8, 12]
    offset = 0
    while offset + 12 <= len(data):
        kind, total = struct.unpack_from("<II", data, offset)
        if kind == EPB:
            offsets.append(offset)
        offset += max(total, 12)
    return "<", offsets, [4, 20, 24]  # block total length, captured length, original length


def block_length(data: bytes, rng: random.Random) -> bytes:
    """A packet block's total length or captured length made wrong (in a pcap file, a
    record's captured or original length)."""
    out = bytearray(data)
    order, offsets, fields = _record_offsets(data)
    if not offsets:
        return flip(data, rng)
    at = rng.choice(offsets)
    field = rng.choice(fields)
    old = struct.unpack_from(order + "I", out, at + field)[0]
    new = rng.choice([0, 1, old - 4, old + 4, old * 2, 0xFFFFFFFF, rng.randrange(1 << 32)])
    struct.pack_into(order + "I", out, at + field, new & 0xFFFFFFFF)
    return bytes(out)


def tls_length(data: bytes, rng: random.Random) -> bytes:
    """A TLS record header's length changed (records then overlap or run short)."""
    blocks = read_blocks(data)
    records = [(i, p, s) for i, p, s in _segments(blocks)
               if s.payload(p.data)[:1] in (b"\x14", b"\x15", b"\x16", b"\x17")
               and s.payload(p.data)[1:2] == b"\x03"]
    if not records:
        return flip(data, rng)
    i, packet, seg = rng.choice(records)
    frame = bytearray(packet.data)
    at = seg.payload_offset + 3
    old = struct.unpack_from("!H", frame, at)[0]
    struct.pack_into("!H", frame, at, rng.choice([0, 1, old - 1, old + 1, old + 5000, 0xFFFF,
                                                  rng.randrange(1 << 16)]) & 0xFFFF)
    packet.data = bytes(frame)
    blocks[i] = packet.to_block()
    return write_blocks(blocks)


def cert_name(data: bytes, rng: random.Random) -> bytes:
    """One byte of a certificate name attribute's value changed, lengths kept."""
    out = bytearray(data)
    spots = []
    start = 0
    while True:
        at = data.find(b"\x06\x03\x55\x04", start)  # an X.520 attribute type OID
        if at < 0:
            break
        value = at + 5
        if value + 2 < len(data) and data[value] in (0x0C, 0x13, 0x14, 0x16, 0x1E):
            length = data[value + 1]
            if 0 < length < 0x80 and value + 2 + length <= len(data):
                spots.append((value + 2, length))
        start = at + 1
    if not spots:
        return flip(data, rng)
    value, length = rng.choice(spots)
    out[value + rng.randrange(length)] = rng.choice([0x00, 0x0A, 0x1B, 0x80, 0xC3, 0xFF,
                                                     rng.randrange(256)])
    return bytes(out)


def duplicate(data: bytes, rng: random.Random) -> bytes:
    """A packet captured twice (a mirror port, a capture on two interfaces)."""
    blocks = read_blocks(data)
    packets = _packets(blocks)
    if not packets:
        return flip(data, rng)
    i = rng.choice(packets)
    blocks.insert(i + 1, Block(blocks[i].kind, blocks[i].body))
    return write_blocks(blocks)


def reorder(data: bytes, rng: random.Random) -> bytes:
    """Two nearby packets swapped (capture order is not send order)."""
    blocks = read_blocks(data)
    packets = _packets(blocks)
    if len(packets) < 2:
        return flip(data, rng)
    k = rng.randrange(len(packets) - 1)
    j = min(len(packets) - 1, k + rng.randint(1, 3))
    a, b = packets[k], packets[j]
    blocks[a], blocks[b] = blocks[b], blocks[a]
    return write_blocks(blocks)


def drop(data: bytes, rng: random.Random) -> bytes:
    """A packet missing (the capture dropped it)."""
    blocks = read_blocks(data)
    packets = _packets(blocks)
    if not packets:
        return flip(data, rng)
    del blocks[rng.choice(packets)]
    return write_blocks(blocks)


def retransmit(data: bytes, rng: random.Random) -> bytes:
    """A segment sent again later, whole or only its first part."""
    blocks = read_blocks(data)
    segments = _segments(blocks)
    if not segments:
        return flip(data, rng)
    i, packet, seg = rng.choice(segments)
    payload = seg.payload(packet.data)
    part = payload[:rng.randint(1, len(payload))]
    copy = Packet(packet.interface, packet.ts_high, packet.ts_low + rng.randint(1, 200_000),
                  0, tcpip.with_payload(packet.data, seg, part), packet.options)
    copy.original_length = len(copy.data)
    later = min(len(blocks), i + 1 + rng.randint(0, 3))
    blocks.insert(later, copy.to_block())
    return write_blocks(blocks)


def split(data: bytes, rng: random.Random) -> bytes:
    """A segment cut in two (a TLS record or an SMTP line across segments)."""
    blocks = read_blocks(data)
    segments = [(i, p, s) for i, p, s in _segments(blocks) if len(s.payload(p.data)) >= 2]
    if not segments:
        return flip(data, rng)
    i, packet, seg = rng.choice(segments)
    payload = seg.payload(packet.data)
    cut = rng.randint(1, len(payload) - 1)
    first = tcpip.with_payload(packet.data, seg, payload[:cut])
    second = tcpip.with_payload(packet.data, seg, payload[cut:], seq=seg.seq + cut)
    a = Packet(packet.interface, packet.ts_high, packet.ts_low, len(first), first,
               packet.options)
    b = Packet(packet.interface, packet.ts_high, packet.ts_low + 1, len(second), second,
               packet.options)
    blocks[i:i + 1] = [a.to_block(), b.to_block()]
    return write_blocks(blocks)


def coalesce(data: bytes, rng: random.Random) -> bytes:
    """Two consecutive segments of one direction joined into one (TLS records coalesced)."""
    blocks = read_blocks(data)
    segments = _segments(blocks)
    pairs = [(x, y) for x, y in itertools.pairwise(segments)
             if x[2].key == y[2].key and y[2].seq == x[2].seq + len(x[2].payload(x[1].data))]
    if not pairs:
        return split(data, rng)
    (i, first, seg), (j, second, seg2) = rng.choice(pairs)
    joined = seg.payload(first.data) + seg2.payload(second.data)
    frame = tcpip.with_payload(first.data, seg, joined)
    merged = Packet(first.interface, first.ts_high, first.ts_low, len(frame), frame,
                    first.options)
    blocks[i] = merged.to_block()
    del blocks[j]
    return write_blocks(blocks)


KINDS: dict[str, Callable[[bytes, random.Random], bytes]] = {
    "flip": flip,
    "truncate": truncate,
    "block_length": block_length,
    "tls_length": tls_length,
    "cert_name": cert_name,
    "duplicate": duplicate,
    "reorder": reorder,
    "drop": drop,
    "retransmit": retransmit,
    "split": split,
    "coalesce": coalesce,
}


def mutate(data: bytes, kind: str, rng: random.Random) -> bytes:
    return KINDS[kind](data, rng)
