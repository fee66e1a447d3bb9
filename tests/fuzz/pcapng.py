"""A small pcapng reader and writer for the fuzzer: blocks in, blocks out, byte for byte.

Only what mutations need: Enhanced Packet Blocks as (header fields, packet bytes, options);
every other block is kept as raw bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

EPB = 0x00000006
TAIL = -1  # bytes after the last whole block (a cut file): written back as they are


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
        padded = self.data + b"\x00" * (-len(self.data) % 4)
        body = struct.pack("<IIIII", self.interface, self.ts_high, self.ts_low, len(self.data),
                           self.original_length) + padded + self.options
        return Block(EPB, body)


def read_blocks(data: bytes) -> list[Block]:
    """The blocks of a little-endian pcapng file (the fixtures' byte order)."""
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


def write_blocks(blocks: list[Block]) -> bytes:
    out = bytearray()
    for block in blocks:
        if block.kind == TAIL:
            out += block.body
            continue
        total = 12 + len(block.body)
        out += struct.pack("<II", block.kind, total) + block.body + struct.pack("<I", total)
    return bytes(out)


def as_packet(block: Block) -> Packet | None:
    if block.kind != EPB or len(block.body) < 20:
        return None
    interface, high, low, captured, original = struct.unpack_from("<IIIII", block.body)
    end = 20 + captured
    options = block.body[end + (-captured % 4):]
    return Packet(interface, high, low, original, block.body[20:end], options)
