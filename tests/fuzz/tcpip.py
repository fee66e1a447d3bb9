"""Link layer / IPv4 / IPv6 / TCP just far enough to cut, join and copy TCP segments."""

from __future__ import annotations

import struct
from dataclasses import dataclass


@dataclass
class Segment:
    """A TCP segment inside a frame: where its parts are."""

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


#: pcap/pcapng link types the splitter reads (LINKTYPE_* numbers)
ETHERNET, RAW, LINUX_SLL, LINUX_SLL2, IPV4, IPV6 = 1, 101, 113, 276, 228, 229
#: Ethernet tags stepped over: 802.1Q, 802.1ad (QinQ) and the older QinQ value
VLAN_TAGS = (0x8100, 0x88A8, 0x9100)
#: IPv6 extension headers stepped over (hop-by-hop, routing, fragment, destination options)
IPV6_EXTENSIONS = (0, 43, 44, 60)


def network_start(frame: bytes, linktype: int = ETHERNET) -> tuple[int, int] | None:
    """(offset of the IP header, its ethertype) inside one frame of ``linktype``."""
    if linktype == ETHERNET:
        at = 12
        while len(frame) >= at + 2:
            ethertype = struct.unpack_from("!H", frame, at)[0]
            if ethertype not in VLAN_TAGS:
                return at + 2, ethertype
            at += 4  # tag protocol id and tag control information
        return None
    if linktype == LINUX_SLL and len(frame) >= 16:  # protocol in the last 2 of 16 bytes
        return 16, struct.unpack_from("!H", frame, 14)[0]
    if linktype == LINUX_SLL2 and len(frame) >= 20:  # protocol first, 20-byte header
        return 20, struct.unpack_from("!H", frame, 0)[0]
    if linktype in (RAW, IPV4, IPV6) and frame:
        return 0, {4: 0x0800, 6: 0x86DD}.get(frame[0] >> 4, 0)
    return None


def parse(frame: bytes, linktype: int = ETHERNET) -> Segment | None:
    """The TCP segment in one frame (Ethernet with VLAN tags, Linux cooked SLL/SLL2 or raw
    IP), or None when the frame holds none."""
    start = network_start(frame, linktype)
    if start is None:
        return None
    ip, ethertype = start
    if ethertype == 0x0800 and len(frame) >= ip + 20:
        ihl = (frame[ip] & 0x0F) * 4
        if frame[ip + 9] != 6:
            return None
        src, dst, tcp, version = frame[ip + 12:ip + 16], frame[ip + 16:ip + 20], ip + ihl, 4
    elif ethertype == 0x86DD and len(frame) >= ip + 40:
        tcp, following = ip + 40, frame[ip + 6]
        while following in IPV6_EXTENSIONS and len(frame) >= tcp + 8:
            if following == 44 and struct.unpack_from("!H", frame, tcp + 2)[0] & 0xFFF9:
                return None  # a later fragment (or a first of several): no whole segment
            following = frame[tcp]
            tcp += (frame[tcp + 1] + 1) * 8  # a fragment header's second byte is 0: 8 bytes
        if following != 6:
            return None
        src, dst, version = frame[ip + 8:ip + 24], frame[ip + 24:ip + 40], 6
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
