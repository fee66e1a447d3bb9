"""Ethernet / IPv4 / IPv6 / TCP just far enough to cut, join and copy TCP segments."""

from __future__ import annotations

import struct
from dataclasses import dataclass


@dataclass
class Segment:
    """A TCP segment inside an Ethernet frame: where its parts are."""

    ip_offset: int
    version: int
    tcp_offset: int
    payload_offset: int
    seq: int
    flags: int
    key: tuple[bytes, bytes, int, int]  # src, dst, sport, dport

    def payload(self, frame: bytes) -> bytes:
        return frame[self.payload_offset:self._end(frame)]

    def _end(self, frame: bytes) -> int:
        if self.version == 4:
            return min(len(frame), self.ip_offset + struct.unpack_from("!H", frame,
                                                                       self.ip_offset + 2)[0])
        return min(len(frame), self.ip_offset + 40 + struct.unpack_from("!H", frame,
                                                                        self.ip_offset + 4)[0])


def parse(frame: bytes) -> Segment | None:
    if len(frame) < 14:
        return None
    ethertype = struct.unpack_from("!H", frame, 12)[0]
    ip = 14
    if ethertype == 0x0800 and len(frame) >= ip + 20:
        ihl = (frame[ip] & 0x0F) * 4
        if frame[ip + 9] != 6:
            return None
        src, dst, tcp, version = frame[ip + 12:ip + 16], frame[ip + 16:ip + 20], ip + ihl, 4
    elif ethertype == 0x86DD and len(frame) >= ip + 40:
        if frame[ip + 6] != 6:
            return None
        src, dst, tcp, version = frame[ip + 8:ip + 24], frame[ip + 24:ip + 40], ip + 40, 6
    else:
        return None
    if len(frame) < tcp + 20:
        return None
    sport, dport, seq = struct.unpack_from("!HHI", frame, tcp)
    data_offset = (frame[tcp + 12] >> 4) * 4
    flags = frame[tcp + 13]
    return Segment(ip, version, tcp, tcp + data_offset, seq, flags, (src, dst, sport, dport))


def with_payload(frame: bytes, seg: Segment, payload: bytes, seq: int | None = None) -> bytes:
    """The frame with another TCP payload (IP length fixed; checksums are not checked)."""
    head = bytearray(frame[:seg.payload_offset])
    if seg.version == 4:
        struct.pack_into("!H", head, seg.ip_offset + 2,
                         seg.payload_offset - seg.ip_offset + len(payload))
    else:
        struct.pack_into("!H", head, seg.ip_offset + 4,
                         seg.payload_offset - seg.ip_offset - 40 + len(payload))
    if seq is not None:
        struct.pack_into("!I", head, seg.tcp_offset + 4, seq & 0xFFFFFFFF)
    return bytes(head) + payload
