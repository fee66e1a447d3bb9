"""What both capture readers (the index in ``scan`` and the per-packet loop in ``prefilter``)
know of the file formats and headers they read, declared once so they cannot drift apart."""

from __future__ import annotations

import os
import struct

# Link types (https://www.tcpdump.org/linktypes.html) the readers understand.
LT_NULL, LT_ETHERNET, LT_RAW, LT_LOOP, LT_SLL, LT_IPV4, LT_IPV6, LT_SLL2 = (
    0, 1, 101, 108, 113, 228, 229, 276)
#: Link types whose IP header the readers locate.
LINKTYPES = frozenset({LT_NULL, LT_ETHERNET, LT_RAW, LT_LOOP, LT_SLL, LT_IPV4, LT_IPV6,
                       LT_SLL2})
#: IP protocols that carry other packets (IPIP, IPv6-in-IP, GRE, AH, EtherIP, L2TP, MPLS):
#: tshark would dissect the inner packets, so the readers decline them.
TUNNEL_PROTOS = frozenset({4, 41, 47, 51, 97, 115, 137})
#: UDP ports of tunnels (VXLAN, Geneve, GTP-U, Teredo, CAPWAP, L2TP, VXLAN-GPE).
TUNNEL_UDP_PORTS = frozenset({4789, 6081, 2152, 3544, 5246, 5247, 1701, 4790})
#: ICMP/ICMPv6 error types: they quote a TCP header tshark would count.
ICMP4_ERRORS = frozenset({3, 4, 5, 11, 12})
ICMP6_ERRORS = frozenset({1, 2, 3, 4})
#: TCP flags.
FIN, SYN, RST, ACK = 0x01, 0x02, 0x04, 0x10

#: pcapng block types: Decryption Secrets Block, and the blocks that carry packets
PCAPNG_SECRETS = 0x0000000A
PCAPNG_PACKETS = frozenset({0x00000002, 0x00000003, 0x00000006})


def has_embedded_secrets(capture: str | os.PathLike) -> bool:
    """Whether a pcapng carries TLS secrets (a Decryption Secrets Block before its first
    packet, where tshark reads them); False for pcap and for what cannot be read."""
    try:
        with open(capture, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"\x0a\x0d\x0d\x0a":
                return False
            order = "<" if head[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
            f.seek(0)
            for _ in range(10_000):
                block = f.read(8)
                if len(block) < 8:
                    return False
                kind, length = struct.unpack(f"{order}II", block)
                if kind == PCAPNG_SECRETS:
                    return True
                if kind in PCAPNG_PACKETS or length < 12:
                    return False
                f.seek(length - 8, os.SEEK_CUR)
    except OSError:
        return False
    return False
