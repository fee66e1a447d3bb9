"""The extraction contract: what every engine hands to the analysis.

Both readers (tshark's field rows in ``tshark_rows``, the native reader) produce the same
structures: per-frame events (the ``events`` table of ``schema.EVENT_COLUMNS``), per-stream
TCP facts and the TLS Certificate messages with their raw DER certificates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd

from .schema import EVENT_COLUMNS, EVENTS
from .smtp_dialogue import ItemKind, SmtpItem

DEFAULT_PORTS: tuple[int, ...] = (25, 587)
IMPLICIT_TLS_PORTS: tuple[int, ...] = (465,)

#: ServerHello.random of a HelloRetryRequest (RFC 8446, 4.1.3)
HELLO_RETRY_RANDOM = "cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c"


@dataclass
class StreamFacts:
    """TCP-level facts about one conversation, counted while the rows stream by."""

    stream: int
    first_src: str
    first_dst: str
    first_frame: int
    first_time: datetime
    last_frame: int = 0
    last_time: datetime | None = None
    frames: int = 0
    bytes: int = 0
    syn_from: str | None = None  # endpoint that sent the bare SYN (the client)
    fin: bool = False
    rst: bool = False
    truncated_frames: int = 0  # captured shorter than on the wire (snaplen)
    lost_segments: int = 0
    malformed: int = 0
    has_smtp: bool = False
    has_tls: bool = False
    client: str = ""  # decided after the pass (see assign_roles)
    server: str = ""
    client_hello_from: str | None = None
    first_command_from: str | None = None
    # tshark's tcp.stream (None: the same as ``stream``); they differ for a connection
    # restarted on the same 4-tuple that tshark numbers as one stream (restarts.py)
    tcp_stream: int | None = None


@dataclass
class CertificateMessage:
    """One TLS Certificate handshake message with its raw DER certificates."""

    stream: int
    frame: int
    time: datetime
    src: str
    dst: str
    declared_length: int | None  # certificates_length as tshark read it (0 = empty list)
    certificates: tuple[bytes, ...]
    decrypted: bool
    sender: str = ""  # client/server, set by assign_roles


@dataclass
class Extraction:
    """What one tshark pass gives the later stages."""

    events: pd.DataFrame
    streams: dict[int, StreamFacts]
    certificate_messages: list[CertificateMessage]
    warnings: list[str]
    truncated_file: bool
    packets_read: int
    first_time: datetime | None
    last_time: datetime | None
    tshark_command: list[str]
    native_streams: int = 0  # conversations the native reader took (no tshark)
    native_demoted: dict[str, int] = field(default_factory=dict)  # why tshark read the others
    complete: bool = True  # False: tshark stopped before the end of the capture (a warning)


def endpoint(ip: str, port: str | int) -> str:
    """``ip:port``, with brackets for IPv6 as in URLs."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


class EventSink:
    """Collects event rows compactly (column lists, not dicts)."""

    def __init__(self) -> None:
        self.columns: dict[str, list] = {name: [] for name in EVENT_COLUMNS}

    def add(self, **row: object) -> None:
        for name in EVENT_COLUMNS:
            self.columns[name].append(row.get(name))

    def add_columns(self, columns: dict[str, list]) -> None:
        """Many rows at once, column by column (every column the same length)."""
        for name, values in columns.items():
            self.columns[name].extend(values)

    def frame(self) -> pd.DataFrame:
        return events_frame(self.columns)


def events_frame(columns: dict[str, Sequence]) -> pd.DataFrame:
    """The events table of column sequences (every column of ``EVENT_COLUMNS``, the same
    length), in the declared dtypes."""
    df = pd.DataFrame(columns, columns=list(EVENT_COLUMNS))
    for column in EVENTS:  # the declared dtypes (text columns are str already)
        if column.dtype and column.dtype.startswith("datetime64"):
            df[column.name] = pd.to_datetime(df[column.name], utc=True)
        elif column.dtype in ("Int64", "boolean", "category"):
            df[column.name] = df[column.name].astype(column.dtype)
    return df


def concat_events(parts: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Several events tables as one in frame order (the reference's order: each frame's
    events come from one part, in their order there), categories as the reference infers
    them."""
    if len(parts) == 1:
        return parts[0]
    events = pd.concat(parts, ignore_index=True)
    events = events.sort_values("frame", kind="stable").reset_index(drop=True)
    for name in ("sender", "kind"):
        events[name] = events[name].astype(object).astype("category")
    return events


def add_dialogue(sink: EventSink, stream: int, client: str, server: str,
                 items: Sequence[SmtpItem], facts: StreamFacts | None = None, *,
                 decrypted: bool = False) -> dict[str, str]:
    """A conversation's SMTP items as events (``decrypted``: read inside decrypted TLS); the
    stream facts they set (also into ``facts`` when given)."""
    columns: dict[str, list] = {name: [] for name in EVENT_COLUMNS}
    found: dict[str, str] = {}
    for item in items:
        src, dst = (client, server) if item.sender == "client" else (server, client)
        if item.kind is not ItemKind.GAP:
            found["has_smtp"] = "1"
        if item.kind is ItemKind.COMMAND:
            found.setdefault("first_command_from", src)
        for name, value in (("frame", item.first_frame), ("time", item.stamp),
                            ("stream", stream), ("src", src), ("dst", dst), ("sender", None),
                            ("kind", item.kind.value), ("name", item.name),
                            ("detail", item.detail), ("decrypted", decrypted),
                            ("last_frame", item.last_frame)):
            columns[name].append(value)
    sink.add_columns(columns)
    if facts is not None:
        facts.has_smtp = facts.has_smtp or "has_smtp" in found
        facts.first_command_from = facts.first_command_from or found.get("first_command_from")
    return found


def port_of(endpoint_text: str) -> int:
    """The port of an ``ip:port`` endpoint (0 when there is none: a garbled row)."""
    try:
        return int(endpoint_text.rsplit(":", 1)[1])
    except (IndexError, ValueError):  # a row without a port (garbled tshark output)
        return 0


def _client_of(facts: StreamFacts, ports: Sequence[int]) -> str:
    """Who opened the conversation: SYN sender, else the side talking to a known port."""
    if facts.syn_from:
        return facts.syn_from
    a, b = facts.first_src, facts.first_dst
    known = set(ports) | set(IMPLICIT_TLS_PORTS)
    if port_of(b) in known and port_of(a) not in known:
        return a
    if port_of(a) in known and port_of(b) not in known:
        return b
    return facts.client_hello_from or facts.first_command_from or a


def assign_roles(
    streams: dict[int, StreamFacts],
    events: pd.DataFrame,
    certs: list[CertificateMessage],
    ports: Sequence[int],
) -> list[CertificateMessage]:
    """Decide client and server of every stream and label events and certificates."""
    for facts in streams.values():
        facts.client = _client_of(facts, ports)
        facts.server = facts.first_dst if facts.client == facts.first_src else facts.first_src
    if len(events):
        clients = events["stream"].map({s: f.client for s, f in streams.items()})
        sender = (events["src"] == clients).map({True: "client", False: "server"})
        events["sender"] = pd.Categorical(sender, categories=["client", "server"])
    for msg in certs:
        msg.sender = "client" if streams[msg.stream].client == msg.src else "server"
    return certs
