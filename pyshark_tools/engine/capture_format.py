"""What both capture readers (the index in ``scan`` and the per-packet loop in ``prefilter``)
know of the file formats and headers they read, declared once so they cannot drift apart."""

from __future__ import annotations

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
