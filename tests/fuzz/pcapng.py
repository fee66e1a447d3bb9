"""A small pcapng (and classic pcap) reader and writer for the fuzzer: blocks in, blocks out,
byte for byte.

Only what mutations need: Enhanced Packet Blocks as (header fields, packet bytes, options);
every other block is kept as raw bytes. A classic pcap file is read as the same blocks (its
file header one block, each record an EPB of interface 0) and written back as pcap.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

EPB = 0x00000006
IDB = 0x00000001
SHB = 0x0A0D0D0A
TAIL = -1  # bytes after the last whole block (a cut file): written back as they are
PCAP_HEADER = -2  # a classic pcap file's 24-byte header: the blocks are written as pcap
#: classic pcap magic numbers as read little-endian: (byte order, time stamp units a second)
PCAP_MAGICS = {0xA1B2C3D4: ("<", 1_000_000), 0xA1B23C4D: ("<", 1_000_000_000),
               0xD4C3B2A1: (">", 1_000_000), 0x4D3CB2A1: (">", 1_000_000_000)}


@dataclass
class Block:
    kind: int
    body: bytes  # everything between the length fields


@dataclass
class Packet:
    """An EPB's fields; ``data`` is the captured packet (captured length = len(data))."""

    interface: int
    ts_high: int
    ts_low: int
    original_length: int
    data: bytes
    options: bytes

    def to_block(self) -> Block:
        stamp = ((self.ts_high << 32) + self.ts_low) & 0xFFFFFFFFFFFFFFFF  # a carry moves up
        padded = self.data + b"\x00" * (-len(self.data) % 4)
        body = struct.pack("<IIIII", self.interface, stamp >> 32, stamp & 0xFFFFFFFF,
                           len(self.data), self.original_length) + padded + self.options
        return Block(EPB, body)


def _pcap_format(data: bytes) -> tuple[str, int] | None:
    if len(data) < 24:
        return None
    return PCAP_MAGICS.get(struct.unpack_from("<I", data)[0])


def is_pcap(data: bytes) -> bool:
    """A classic pcap file (either byte order, micro- or nanosecond time stamps)."""
    return _pcap_format(data) is not None


def read_blocks(data: bytes) -> list[Block]:
    """The blocks of a little-endian pcapng file (the fixtures' byte order), or of a pcap
    file as the same blocks."""
    if is_pcap(data):
        return _read_pcap(data)
    blocks = []
    offset = 0
    while offset + 12 <= len(data):
        kind, total = struct.unpack_from("<II", data, offset)
        if total < 12 or offset + total > len(data):
            break
        blocks.append(Block(kind, data[offset + 8:offset + total - 4]))
        offset += total
    if offset < len(data):
        blocks.append(Block(TAIL, data[offset:]))
    return blocks


def _read_pcap(data: bytes) -> list[Block]:
    order, units = PCAP_MAGICS[struct.unpack_from("<I", data)[0]]
    blocks = [Block(PCAP_HEADER, data[:24])]
    offset = 24
    while offset + 16 <= len(data):
        seconds, fraction, captured, original = struct.unpack_from(order + "IIII", data, offset)
        if offset + 16 + captured > len(data):
            break
        stamp = seconds * units + fraction
        blocks.append(Packet(0, stamp >> 32, stamp & 0xFFFFFFFF, original,
                             data[offset + 16:offset + 16 + captured], b"").to_block())
        offset += 16 + captured
    if offset < len(data):
        blocks.append(Block(TAIL, data[offset:]))
    return blocks


def write_blocks(blocks: list[Block]) -> bytes:
    if blocks and blocks[0].kind == PCAP_HEADER:
        return _write_pcap(blocks)
    out = bytearray()
    for block in blocks:
        if block.kind == TAIL:
            out += block.body
            continue
        total = 12 + len(block.body)
        out += struct.pack("<II", block.kind, total) + block.body + struct.pack("<I", total)
    return bytes(out)


def _write_pcap(blocks: list[Block]) -> bytes:
    header = blocks[0].body
    order, units = PCAP_MAGICS[struct.unpack_from("<I", header)[0]]
    out = bytearray(header)
    for block in blocks[1:]:
        packet = as_packet(block)
        if packet is None:  # the cut end (or a block no pcap file has): as it was
            out += block.body
            continue
        seconds, fraction = divmod((packet.ts_high << 32) + packet.ts_low, units)
        out += struct.pack(order + "IIII", seconds & 0xFFFFFFFF, fraction, len(packet.data),
                           packet.original_length) + packet.data
    return bytes(out)


def as_packet(block: Block) -> Packet | None:
    if block.kind != EPB or len(block.body) < 20:
        return None
    interface, high, low, captured, original = struct.unpack_from("<IIIII", block.body)
    end = 20 + captured
    options = block.body[end + (-captured % 4):]
    return Packet(interface, high, low, original, block.body[20:end], options)


def link_types(blocks: list[Block]) -> dict[int, int]:
    """The link type of every packet block, by block index (an EPB names its interface, the
    section's IDBs in order; a pcap file has one link type in its header)."""
    found: dict[int, int] = {}
    interfaces: list[int] = []
    for index, block in enumerate(blocks):
        if block.kind == PCAP_HEADER:
            order = PCAP_MAGICS[struct.unpack_from("<I", block.body)[0]][0]
            interfaces = [struct.unpack_from(order + "I", block.body, 20)[0] & 0xFFFF]
        elif block.kind == SHB:
            interfaces = []
        elif block.kind == IDB and len(block.body) >= 2:
            interfaces.append(struct.unpack_from("<H", block.body)[0])
        elif block.kind == EPB and len(block.body) >= 4:
            interface = struct.unpack_from("<I", block.body)[0]
            if interface < len(interfaces):
                found[index] = interfaces[interface]
    return found
