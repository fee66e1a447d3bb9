"""The probe's own capture: its real bytes and times, framed as TCP/IP, written as pcapng.

The probe talks through an ordinary socket, so the kernel's TCP headers are not visible to it.
What it does know exactly (the payload bytes in each direction, when each ``send`` started and
each ``recv`` returned, both addresses and ports, who closed first) is kept in a
:class:`Recording`; :func:`write_pcapng` wraps it in Ethernet / IPv4-or-IPv6 / TCP headers with
consistent sequence numbers and checksums, and embeds the session's TLS secrets in a
Decryption Secrets Block so Wireshark and tshark decrypt it without a key file. The file's
comments say that it was recorded by the probe and which parts were reconstructed.
"""

from __future__ import annotations

import ipaddress
import secrets
import struct
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from .. import __version__

SEGMENT = 1460  # payload per packet, as on an Ethernet path
_MACS = {"c2s": bytes(6) + bytes(6), "s2c": bytes(6) + bytes(6)}  # loopback-style, zero MACs


class Direction(StrEnum):
    TO_SERVER = "c2s"
    TO_CLIENT = "s2c"


class CloseKind(StrEnum):
    FIN = "fin"
    RST = "rst"


@dataclass
class Chunk:
    """Bytes one side put on the connection at one moment (nanoseconds since the epoch)."""

    ts_ns: int
    direction: Direction
    data: bytes
    note: str = ""  # becomes the packet comment, e.g. "probe: STARTTLS"


@dataclass
class Close:
    ts_ns: int
    direction: Direction
    kind: CloseKind


@dataclass
class Recording:
    """Everything the probe saw of one TCP connection."""

    client: tuple[str, int]
    server: tuple[str, int]
    connect_start_ns: int
    connect_end_ns: int
    chunks: list[Chunk] = field(default_factory=list)
    closes: list[Close] = field(default_factory=list)

    def add(self, ts_ns: int, direction: Direction, data: bytes, note: str = "") -> None:
        if data:
            self.chunks.append(Chunk(ts_ns, direction, bytes(data), note))

    def close(self, ts_ns: int, direction: Direction, kind: CloseKind = CloseKind.FIN) -> None:
        if not any(c.direction == direction for c in self.closes):
            self.closes.append(Close(ts_ns, direction, kind))

    def sent_bytes(self, direction: Direction) -> int:
        return sum(len(c.data) for c in self.chunks if c.direction == direction)


# --- TCP/IP framing --------------------------------------------------------------------------

_FIN, _SYN, _RST, _PSH, _ACK = 0x01, 0x02, 0x04, 0x08, 0x10


def internet_checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of IPv4 headers and TCP/UDP segments; the fixture
    factories use this one too."""
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


class _Framer:
    """Builds the packets of one connection, keeping sequence numbers for both sides."""

    def __init__(self, rec: Recording) -> None:
        self.ends = {
            Direction.TO_SERVER: (ipaddress.ip_address(rec.client[0]), rec.client[1]),
            Direction.TO_CLIENT: (ipaddress.ip_address(rec.server[0]), rec.server[1]),
        }
        self.v6 = self.ends[Direction.TO_SERVER][0].version == 6
        self.seq = {d: secrets.randbits(32) for d in Direction}
        self.ip_id = {d: secrets.randbits(16) for d in Direction}

    def _other(self, d: Direction) -> Direction:
        return Direction.TO_CLIENT if d == Direction.TO_SERVER else Direction.TO_SERVER

    def packet(self, d: Direction, flags: int, payload: bytes = b"") -> bytes:
        src, sport = self.ends[d]
        dst, dport = self.ends[self._other(d)]
        ack = self.seq[self._other(d)] if flags & _ACK else 0
        options = b""
        if flags & _SYN:
            options = struct.pack("!BBH", 2, 4, SEGMENT) + b"\x01\x01\x04\x02"
        header = struct.pack("!HHIIBBHHH", sport, dport, self.seq[d] & 0xFFFFFFFF,
                             ack & 0xFFFFFFFF, (20 + len(options)) // 4 << 4, flags, 65535,
                             0, 0) + options
        segment = header + payload
        if self.v6:
            pseudo = src.packed + dst.packed + struct.pack("!IxxxB", len(segment), 6)
        else:
            pseudo = src.packed + dst.packed + struct.pack("!xBH", 6, len(segment))
        csum = internet_checksum(pseudo + segment)
        segment = segment[:16] + struct.pack("!H", csum) + segment[18:]
        self.seq[d] += len(payload) + (1 if flags & (_SYN | _FIN) else 0)
        if self.v6:
            ip = struct.pack("!IHBB", 6 << 28, len(segment), 6, 64) + src.packed + dst.packed
            ethertype = 0x86DD
        else:
            ident = self.ip_id[d]
            self.ip_id[d] = (ident + 1) & 0xFFFF
            hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(segment), ident, 0x4000, 64, 6,
                              0, src.packed, dst.packed)
            ip = hdr[:10] + struct.pack("!H", internet_checksum(hdr)) + hdr[12:]
            ethertype = 0x0800
        return _MACS[d] + struct.pack("!H", ethertype) + ip + segment


def frame(rec: Recording) -> list[tuple[int, bytes, str]]:
    """(time in ns, Ethernet frame, comment) for every packet of the connection."""
    f = _Framer(rec)
    out: list[tuple[int, bytes, str]] = []
    start, end = rec.connect_start_ns, max(rec.connect_end_ns, rec.connect_start_ns)
    out.append((start, f.packet(Direction.TO_SERVER, _SYN), "probe: connect()"))
    out.append((max(start, end - 1000), f.packet(Direction.TO_CLIENT, _SYN | _ACK), ""))
    out.append((end, f.packet(Direction.TO_SERVER, _ACK), ""))
    events: list[tuple[int, int, Chunk | Close]] = [(c.ts_ns, i, c) for i, c in
                                                    enumerate(rec.chunks)]
    events += [(c.ts_ns, len(rec.chunks) + i, c) for i, c in enumerate(rec.closes)]
    last = end
    for ts, _, event in sorted(events, key=lambda e: (e[0], e[1])):
        ts = max(ts, last)
        if isinstance(event, Chunk):
            data = event.data
            for k in range(0, len(data), SEGMENT):
                piece = data[k:k + SEGMENT]
                flags = _ACK | (_PSH if k + SEGMENT >= len(data) else 0)
                out.append((ts, f.packet(event.direction, flags, piece),
                            event.note if k == 0 else ""))
        else:
            flags = _RST | _ACK if event.kind == CloseKind.RST else _FIN | _ACK
            out.append((ts, f.packet(event.direction, flags), ""))
        last = ts
    return out


# --- pcapng ----------------------------------------------------------------------------------

def _pad(data: bytes) -> bytes:
    return data + b"\x00" * (-len(data) % 4)


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + _pad(value)


def _block(block_type: int, body: bytes) -> bytes:
    length = 12 + len(body)
    return struct.pack("<II", block_type, length) + body + struct.pack("<I", length)


def probe_comment(rec: Recording) -> str:
    return (
        f"Recorded by the tls-smtp-report {__version__} probe: one SMTP session it ran itself "
        f"from {rec.client[0]}:{rec.client[1]} to {rec.server[0]}:{rec.server[1]}. "
        "Payload bytes, their times, addresses and ports are real; Ethernet, IP and TCP "
        "headers (MAC addresses, sequence and acknowledgement numbers, windows) are "
        "reconstructed by the probe. The Decryption Secrets Block holds only this session's "
        "TLS secrets."
    )


def pcapng_bytes(rec: Recording, keylog: bytes = b"") -> bytes:
    """The whole capture file: SHB (with the probe's comment), IDB, DSB, one EPB per packet."""
    shb_options = (_option(1, probe_comment(rec).encode())
                   + _option(4, f"tls-smtp-report {__version__} probe".encode())
                   + _option(0, b""))
    out = bytearray(_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)
                           + shb_options))
    idb_options = (_option(2, b"probe") + _option(9, b"\x09")  # if_tsresol: nanoseconds
                   + _option(1, b"not a kernel capture: framed by the probe") + _option(0, b""))
    out += _block(0x00000001, struct.pack("<HHI", 1, 0, 262144) + idb_options)
    if keylog:
        out += _block(0x0000000A, struct.pack("<II", 0x544C534B, len(keylog)) + _pad(keylog))
    for ts, data, comment in frame(rec):
        body = struct.pack("<IIIII", 0, ts >> 32, ts & 0xFFFFFFFF, len(data), len(data))
        body += _pad(data)
        if comment:
            body += _option(1, comment.encode()) + _option(0, b"")
        out += _block(0x00000006, body)
    return bytes(out)


def write_pcapng(rec: Recording, path: Path, keylog: bytes = b"") -> None:
    path.write_bytes(pcapng_bytes(rec, keylog))
