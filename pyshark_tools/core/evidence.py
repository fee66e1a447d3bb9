"""Wireshark display filters that select one conversation, whatever the Wireshark version.

``tcp.stream`` numbers differ between Wireshark versions (4.0 and 4.4 number a reused
4-tuple differently), so a printed ``tcp.stream == 3`` can open another conversation in the
user's Wireshark than the one the report means. These filters name the conversation by its
addresses and ports instead; where the capture holds several conversations on the same
addresses and ports (a connection restarted on the same 4-tuple), frame numbers bound it.
"""

from __future__ import annotations

import pandas as pd

__all__ = ["conversation_filter", "conversation_filters", "evidence_filter"]


def _addr_field(ip: str) -> str:
    """The address field of ``ip``'s version: an IPv6 address's text always holds a colon,
    an IPv4 address's never (parsing each one cost ~0.1 s on 13,000 conversations)."""
    return "ipv6.addr" if ":" in ip else "ip.addr"


def conversation_filter(client_ip: str, client_port: int, server_ip: str, server_port: int,
                        first_frame: int | None = None, before_frame: int | None = None) -> str:
    """``ip.addr==A && tcp.port==P && ip.addr==B && tcp.port==Q`` (``ipv6.addr`` for IPv6),
    with ``frame.number`` bounds when given (the conversation's first frame, the first frame
    of the next conversation on the same addresses and ports)."""
    parts = [f"{_addr_field(client_ip)}=={client_ip}", f"tcp.port=={int(client_port)}",
             f"{_addr_field(server_ip)}=={server_ip}", f"tcp.port=={int(server_port)}"]
    if first_frame is not None:
        parts.append(f"frame.number>={int(first_frame)}")
    if before_frame is not None:
        parts.append(f"frame.number<{int(before_frame)}")
    return " && ".join(parts)


def conversation_filters(conversations: pd.DataFrame) -> list[str | None]:
    """The filter of each row of a conversations table (CONVERSATION_COLUMNS), in row order.

    Frame bounds only where several rows share the addresses and ports; None for a row
    without addresses.
    """
    if not len(conversations):
        return []
    keys: list[tuple | None] = []
    rows = list(zip(conversations["client_ip"], conversations["client_port"],
                    conversations["server_ip"], conversations["server_port"], strict=True))
    for cip, cport, sip, sport in rows:
        known = not any(pd.isna(v) for v in (cip, cport, sip, sport))
        ends = sorted([(str(cip), int(cport)), (str(sip), int(sport))]) if known else None
        keys.append(tuple(ends) if ends else None)
    firsts = [None if pd.isna(f) else int(f) for f in conversations["first_frame"]]
    shared: dict[tuple, list[int]] = {}
    for key, first in zip(keys, firsts, strict=True):
        if key is not None and first is not None:
            shared.setdefault(key, []).append(first)
    out: list[str | None] = []
    for i, key in enumerate(keys):
        if key is None:
            out.append(None)
            continue
        cip, cport, sip, sport = rows[i]
        starts = sorted(shared.get(key, []))
        first = firsts[i]
        lower = upper = None
        if len(starts) > 1 and first is not None:
            lower = first
            later = [s for s in starts if s > first]
            upper = later[0] if later else None
        out.append(conversation_filter(str(cip), int(cport), str(sip), int(sport),
                                       lower, upper))
    return out


def evidence_filter(conversation_row: pd.Series | dict) -> str:
    """The filter a renderer prints for one conversation row: its ``wireshark_filter``, or
    (a row from elsewhere) one made from its own addresses and ports."""
    value = conversation_row.get("wireshark_filter")
    if isinstance(value, str) and value:
        return value
    return conversation_filter(str(conversation_row["client_ip"]),
                               int(conversation_row["client_port"]),
                               str(conversation_row["server_ip"]),
                               int(conversation_row["server_port"]))
