"""The native engine: cleartext SMTP and TLS handshakes read in Python, no tshark.

Without a key log, all the report needs from an SMTP/TLS conversation is in its first few
packets: the SMTP dialogue up to STARTTLS and the TLS handshake messages up to the first
application-data record (where :mod:`pyshark_tools.engine.prefilter` cuts). For the conversations
that take the well-trodden path this module builds the very events, certificate messages and
stream facts that tshark's row handling (``events.RowReader``) builds. The cleartext SMTP
dialogue is read by the same byte-stream reader in both engines
(:mod:`pyshark_tools.core.smtp_dialogue`).

The TLS side is deliberately narrow: whatever it has not been checked to read exactly like
tshark 4.x -- handshake messages spanning records, heartbeats,
retransmissions, odd TCP options -- raises :class:`Demote`, and the prefilter hands that
conversation to tshark (the reference engine) instead. Tests compare both engines on every
fixture, the peer corpus and the benchmark capture.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from typing import Any

from ..core.details import certificate_detail, client_hello_detail, server_hello_detail
from ..core.events import HELLO_RETRY_RANDOM, CertificateMessage, concat_events, events_frame
from ..core.smtp_dialogue import DialogueReader, ItemKind, SmtpItem
from ..core.tls_names import alert_name, cipher_name, handshake_name, version_name

__all__ = ["Demote", "NativeConversation", "NativeResult"]


class Demote(Exception):
    """tshark must read this conversation: the native reader is not sure to match it."""


_PRINTABLE = re.compile(rb"[\x20-\x7e]+")
_HRR_RANDOM = bytes.fromhex(HELLO_RETRY_RANDOM)


def _is_grease(value: int) -> bool:
    return (value & 0x0F0F) == 0x0A0A and (value & 0xFF) == (value >> 8)


def ns_to_datetime(ns: int) -> datetime:
    """Exactly what the reference does with tshark's ``frame.time_epoch`` text."""
    return datetime.fromtimestamp(float(f"{ns // 1_000_000_000}.{ns % 1_000_000_000:09d}"),
                                  tz=UTC)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ns_to_microseconds(ns: Sequence[int]):
    """:func:`ns_to_datetime` of many time stamps at once, as int64 microseconds since the
    epoch (a numpy array). The text parsed as a float is the nearest float to the exact value,
    so the microsecond it rounds to is the nearest one, except where the exact value lies
    within that float's error of a half microsecond: those few are done one by one."""
    import numpy as np

    stamps = np.asarray(ns, dtype=np.int64)
    seconds, fraction = np.divmod(stamps, 1_000_000_000)
    micro, rest = np.divmod(fraction, 1000)
    out = seconds * 1_000_000 + micro + (rest > 500)
    # half the float's spacing at that many seconds, in nanoseconds (and a margin)
    error = np.spacing(seconds.astype(np.float64) + 1.0) * 0.5e9 + 2.0
    for i in np.flatnonzero(np.abs(rest - 500) <= error).tolist():
        out[i] = (ns_to_datetime(int(stamps[i])) - _EPOCH) // timedelta(microseconds=1)
    return out


def _u16s(data: bytes, start: int, end: int) -> list[int]:
    if (end - start) % 2:
        raise Demote("a list of 16-bit values with an odd length")
    return [(data[i] << 8) | data[i + 1] for i in range(start, end, 2)]


def _hello_extensions(data: bytes, pos: int) -> list[tuple[int, int, int]]:
    """(type, start, end) of each extension from ``pos`` (the extensions' length field)."""
    if pos == len(data):
        return []
    if pos + 2 > len(data) or pos + 2 + int.from_bytes(data[pos:pos + 2], "big") != len(data):
        raise Demote("hello extensions that do not fill the message")
    pos += 2
    out = []
    while pos < len(data):
        if pos + 4 > len(data):
            raise Demote("a cut hello extension")
        ext_type = (data[pos] << 8) | data[pos + 1]
        end = pos + 4 + ((data[pos + 2] << 8) | data[pos + 3])
        if end > len(data):
            raise Demote("a hello extension runs past its message")
        out.append((ext_type, pos + 4, end))
        pos = end
    return out


def _vector(data: bytes, pos: int, size: int, limit: int) -> tuple[int, int]:
    """(start, end) of the vector whose ``size``-byte length field is at ``pos``."""
    start = pos + size
    if start > limit:
        raise Demote("a TLS length field runs past its message")
    end = start + int.from_bytes(data[pos:start], "big")
    if end > limit:
        raise Demote("a TLS vector runs past its message")
    return start, end


# long: ClientHello fields in wire order, each length checked before it is read (RFC 8446 4.1.2, RFC
#   5246 7.4.1.2); split, the offsets would pass back and forth
def _client_hello(body: bytes) -> tuple[list[int], str | None, str]:
    """(offered versions, first SNI host name, JA3 hash) of a ClientHello body."""
    size = len(body)
    if size < 35:
        raise Demote("a cut ClientHello")
    legacy = (body[0] << 8) | body[1]
    _s, pos = _vector(body, 34, 1, size)  # session id
    start, pos = _vector(body, pos, 2, size)
    suites = _u16s(body, start, pos)
    _s, pos = _vector(body, pos, 1, size)  # compression methods
    offered: list[int] = []
    sni = None
    groups: list[int] = []
    formats: list[int] = []
    ext_types = []
    for ext_type, start, end in _hello_extensions(body, pos):
        ext_types.append(ext_type)
        if ext_type == 43:
            lo, hi = _vector(body, start, 1, end)
            offered = _u16s(body, lo, hi)
        elif ext_type == 0 and end > start:
            lo, hi = _vector(body, start, 2, end)
            while lo < hi and sni is None:
                kind = body[lo]
                name_lo, lo = _vector(body, lo + 1, 2, hi)
                if kind == 0:
                    raw = body[name_lo:lo]
                    if not _PRINTABLE.fullmatch(raw):
                        raise Demote("server name with bytes tshark would escape")
                    sni = raw.decode("ascii")
        elif ext_type == 10:
            lo, hi = _vector(body, start, 2, end)
            groups = _u16s(body, lo, hi)
        elif ext_type == 11:
            lo, hi = _vector(body, start, 1, end)
            formats = list(body[lo:hi])
    ja3 = ",".join([
        str(legacy),
        "-".join(str(s) for s in suites if not _is_grease(s)),
        "-".join(str(e) for e in ext_types if not _is_grease(e)),
        "-".join(str(g) for g in groups if not _is_grease(g)),
        "-".join(str(f) for f in formats),
    ])
    return offered or [legacy], sni, hashlib.md5(ja3.encode(), usedforsecurity=False).hexdigest()


def _server_hello(body: bytes) -> tuple[int, int, int | None, str]:
    """(negotiated version, cipher suite, selected pre-shared key, JA3S hash) of a
    ServerHello body (a HelloRetryRequest's too: tshark reads it as a ServerHello)."""
    size = len(body)
    if size < 35:
        raise Demote("a cut ServerHello")
    legacy = (body[0] << 8) | body[1]
    _s, pos = _vector(body, 34, 1, size)  # session id
    if pos + 3 > size:
        raise Demote("a cut ServerHello")
    suite = (body[pos] << 8) | body[pos + 1]
    selected = psk = None
    ext_types = []
    for ext_type, start, end in _hello_extensions(body, pos + 3):
        ext_types.append(ext_type)
        if ext_type == 43:
            if end - start != 2:
                raise Demote("an odd selected version")
            selected = (body[start] << 8) | body[start + 1]
        elif ext_type == 41:
            if end - start != 2:
                raise Demote("an odd pre-shared key extension")
            psk = (body[start] << 8) | body[start + 1]
    ja3s = f"{legacy},{suite},{'-'.join(str(e) for e in ext_types if not _is_grease(e))}"
    return (selected if selected is not None else legacy, suite, psk,
            hashlib.md5(ja3s.encode(), usedforsecurity=False).hexdigest())


def _certificate_list(body: bytes) -> tuple[int, tuple[bytes, ...]]:
    """(declared list length, DER certificates) of a TLS 1.0-1.2 Certificate body."""
    pos, end = _vector(body, 0, 3, len(body))
    if end != len(body):
        raise Demote("bytes after the certificate list")
    ders = []
    while pos < end:
        start, pos = _vector(body, pos, 3, end)
        if not _one_der_value(body, start, pos) or not _parses(body[start:pos]):
            # tshark's reading of a damaged certificate list differs (it may stop at it)
            raise Demote("a certificate entry that does not parse")
        ders.append(_interned(body[start:pos]))
    return end - 3, tuple(ders)


@functools.lru_cache(maxsize=4096)
def _interned(der: bytes) -> bytes:
    """One object for equal certificates (chains repeat across conversations): a worker's
    results then carry each certificate once, and memory holds it once."""
    return der


@functools.lru_cache(maxsize=4096)
def _parses(der: bytes) -> bool:
    """Whether ``der`` reads as an X.509 certificate (cached: chains repeat)."""
    from cryptography import x509

    try:
        x509.load_der_x509_certificate(der)
    except Exception:  # any refusal (ValueError, an unsupported version ...)
        return False
    return True


def _one_der_value(data: bytes, start: int, end: int) -> bool:
    """Whether data[start:end] is exactly one DER SEQUENCE (what a certificate is)."""
    if end - start < 2 or data[start] != 0x30:
        return False
    first = data[start + 1]
    if first < 0x80:
        return start + 2 + first == end
    size = first & 0x7F
    if size == 0 or size > 4 or start + 2 + size > end:
        return False
    return start + 2 + size + int.from_bytes(data[start + 2:start + 2 + size], "big") == end


def _refuse_tls_as_text(dialogue: DialogueReader, sender: str, payload: bytes) -> None:
    """A segment handed over as cleartext that starts a TLS record after an accepted
    STARTTLS: the dialogue reader would end the text there and the records would be lost
    (tshark reads them as TLS), so tshark must read this conversation."""
    if (dialogue.starttls_accepted and dialogue.wants(sender) and payload[:1] in
            (b"\x14", b"\x15", b"\x16") and payload[1:2] == b"\x03"):
        raise Demote("a TLS record after STARTTLS that was read as text")


@dataclass
class _Direction:
    buffer: bytes = b""  # the start of a record still incomplete
    messages: bytes = b""  # the start of a handshake message that continues in a later record
    ccs: bool = False  # sent ChangeCipherSpec: its later handshake records are encrypted
    appdata: bool = False
    tls: bool = False  # its TLS record layer has begun: no more cleartext SMTP from it


@dataclass
class NativeResult:
    """The native engine's share of an extraction (every conversation it kept)."""

    events: Any = None  # its events table (``core.events``' columns), in frame order
    certificates: list[CertificateMessage] = field(default_factory=list)
    partial: dict[int, dict[str, object]] = field(default_factory=dict)

    @classmethod
    def of(cls, rows: list[tuple], certificates: list[CertificateMessage],
           partial: dict[int, dict[str, object]]) -> NativeResult:
        """From event rows (frame, ns, stream, src, dst, kind, name, detail, last frame): the
        events table is built here, where the rows were read (a table crosses from a
        worker process for less than the rows would)."""
        rows.sort(key=itemgetter(0))  # stable: a frame's events keep their order
        return cls(_events_table(rows), sorted(certificates, key=lambda m: m.frame),
                   partial)

    @classmethod
    def combined(cls, parts: Iterable[NativeResult | None]) -> NativeResult | None:
        """Several results as one, in frame order; None when none holds a conversation."""
        found = [part for part in parts if part is not None and part.partial]
        if not found:
            return None
        if len(found) == 1:
            return found[0]
        partial: dict[int, dict[str, object]] = {}
        for part in found:
            partial.update(part.partial)
        certificates = sorted((m for part in found for m in part.certificates),
                              key=lambda m: m.frame)
        return cls(concat_events([part.events for part in found]), certificates, partial)


def _events_table(rows: list[tuple]):
    """The events table of the native reader's rows (times as the reference has them)."""
    import pandas as pd

    n = len(rows)
    if n:
        frames, stamps, streams, srcs, dsts, kinds, names, details, lasts = map(
            list, zip(*rows, strict=True))
        times = pd.to_datetime(ns_to_microseconds(stamps), unit="us", utc=True)
    else:
        frames = stamps = streams = srcs = dsts = kinds = names = details = lasts = []
        times = []
    return events_frame({"frame": frames, "time": times, "stream": streams, "src": srcs,
                         "dst": dsts, "sender": [None] * n, "kind": kinds, "name": names,
                         "detail": details, "decrypted": [False] * n, "last_frame": lasts})


class NativeConversation:
    """One SMTP-port conversation read natively, packet by packet in capture order.

    ``ends``: the endpoints of direction 0 (source, destination). ``request_dir``: the
    direction whose destination port is the SMTP port (tshark's "request" side).
    """

    __slots__ = ("certificates", "client_hello_from", "dialogue", "dirs", "ends", "has_tls",
                 "implicit", "items", "lost_segments", "request_dir", "retried", "rows",
                 "stream", "tls13")

    def __init__(self, stream: int, ends: tuple[str, str], request_dir: int,
                 implicit: bool) -> None:
        self.stream = stream
        self.ends = ends
        self.request_dir = request_dir
        self.dirs = (_Direction(), _Direction())
        self.implicit = implicit
        self.dialogue: DialogueReader | None = DialogueReader()
        #: the dialogue's items once both sides are in TLS (the reader is let go then)
        self.items: list[SmtpItem] | None = None
        self.tls13 = False
        #: a HelloRetryRequest came and the real ServerHello not yet: until it does, both
        #: sides' handshake records are cleartext (the client's second ClientHello, the
        #: ServerHello), after a middlebox-compatibility ChangeCipherSpec too
        self.retried = False
        self.has_tls = False
        self.client_hello_from: str | None = None
        self.rows: list[tuple] = []
        self.certificates: list[CertificateMessage] = []
        #: holes no captured segment fills (``tcpgaps.SequenceGaps``), found by the index
        self.lost_segments = 0

    def _src_dst(self, direction: int) -> tuple[str, str]:
        a, b = self.ends
        return (a, b) if direction == 0 else (b, a)

    # --- cleartext SMTP -------------------------------------------------------------------

    def clear(self, direction: int, frame: int, ns: int, payload: bytes, seq: int | None = None,
              declared: int | None = None) -> None:
        """A segment of cleartext SMTP (any part of a line or several lines): the shared
        byte-stream reader puts it in order and cuts it into commands and replies."""
        if self.dialogue is None:  # (the feeders stop a side's text where its TLS begins)
            raise Demote("cleartext after both sides' TLS began")
        sender = "client" if direction == self.request_dir else "server"
        _refuse_tls_as_text(self.dialogue, sender, payload)
        self.dialogue.feed(sender, frame, ns, payload, seq, declared)

    # --- TLS --------------------------------------------------------------------------------

    def tls(self, direction: int, frame: int, ns: int, payload: bytes) -> None:
        """Bytes of the TLS record layer: the records completing in this frame become events."""
        d = self.dirs[direction]
        if not d.tls:
            # (the dialogue is let go only once both sides are here: it is still held now)
            assert self.dialogue is not None
            if not (self.implicit or self.dialogue.starttls_accepted):
                raise Demote("TLS before the STARTTLS reply")
            d.tls = True
            if self.dirs[1 - direction].tls:
                # both sides in TLS: the dialogue is complete, its buffers can go (a worker
                # holds thousands of conversations to the end of the capture)
                self.items, self.dialogue = self.dialogue.finish(), None
        buf = d.buffer + payload if d.buffer else payload
        size = len(buf)
        pos = 0
        records = []
        while size - pos >= 5:
            rtype, major, minor = buf[pos], buf[pos + 1], buf[pos + 2]
            rlen = (buf[pos + 3] << 8) | buf[pos + 4]
            if not (20 <= rtype <= 23) or major != 3 or minor > 4 or rlen > 18432:
                raise Demote("not a TLS record tshark reads plainly")
            end = pos + 5 + rlen
            if end > size:
                break
            # only handshake and alert bodies are read
            records.append((rtype, buf[pos + 5:end] if rtype in (21, 22) else b""))
            pos = end
        d.buffer = buf[pos:] if pos < size else b""
        if records:
            self._records(direction, d, frame, ns, records)

    # long: runs per TLS record of every conversation: header, reassembly across records and the
    #   demote decisions in one pass
    def _records(self, direction: int, d: _Direction, frame: int, ns: int,
                 records: list[tuple[int, bytes]]) -> None:
        src, dst = self._src_dst(direction)
        self.has_tls = True
        handshakes: list[tuple[str, str]] = []
        alerts: list[tuple[str, str]] = []
        ccs = appdata = False
        for rtype, body in records:
            if rtype == 22:
                if d.ccs and not self.retried:
                    continue  # encrypted Finished: tshark shows no message type
                if self.tls13 and direction != self.request_dir and not self.retried:
                    raise Demote("cleartext handshake after a TLS 1.3 ServerHello")
                # a message spanning records is read where its last record ends (as tshark
                # shows it: in the frame that completes it)
                data = d.messages + body if d.messages else body
                used, found = self._handshake(data, frame, ns, src, dst)
                d.messages = data[used:]
                handshakes.extend(found)
            elif rtype == 20:
                ccs = True
                d.ccs = True
            elif rtype == 21:
                if len(body) == 2 and not d.ccs and not self.tls13:
                    level = "fatal" if body[0] == 2 else "warning"
                    alerts.append((alert_name(body[1]), f"{level} {body[1]}"))
                elif len(body) != 2 and d.ccs:
                    alerts.append(("encrypted_alert", ""))
                else:
                    raise Demote("an alert tshark may read either way")
            elif not self.tls13:
                appdata = True
            # TLS 1.3 after the ServerHello: tshark shows type 23 as the "opaque type" of an
            # encrypted record (the inner type is hidden), so the reference has no event
        rows = self.rows
        for name, detail in handshakes:
            rows.append((frame, ns, self.stream, src, dst, "tls_handshake", name, detail, None))
        if ccs:
            rows.append((frame, ns, self.stream, src, dst, "tls_ccs", "ChangeCipherSpec", "",
                         None))
        for name, detail in alerts:
            rows.append((frame, ns, self.stream, src, dst, "tls_alert", name, detail, None))
        if appdata and not d.appdata:
            d.appdata = True
            rows.append((frame, ns, self.stream, src, dst, "tls_appdata", "ApplicationData",
                         "first application data", None))

    # long: the switch over one conversation's handshake message types (RFC 5246 7.4, RFC 8446 4),
    #   each case a few lines
    def _handshake(self, record: bytes, frame: int, ns: int, src: str,
                   dst: str) -> tuple[int, list[tuple[str, str]]]:
        """(bytes used, messages) of the whole handshake messages at the start of
        ``record``; a message cut at its end waits for the next record."""
        out = []
        pos = 0
        while pos < len(record):
            if pos + 4 > len(record):
                break
            hs = record[pos]
            length = int.from_bytes(record[pos + 1:pos + 4], "big")
            if length > 1 << 15:  # tshark's own reassembly limits decide those
                raise Demote("a handshake message longer than 32 KiB")
            body = record[pos + 4:pos + 4 + length]
            if len(body) != length:
                break
            pos += 4 + length
            detail = ""
            name = handshake_name(hs)
            if hs == 1:
                offered, sni, ja3 = _client_hello(body)
                self.client_hello_from = self.client_hello_from or src
                names = [version_name(v) for v in offered if (v & 0x0F0F) == v]
                detail = client_hello_detail([n for n in names if n], sni, ja3)
            elif hs == 2:
                version, suite, psk, ja3s = _server_hello(body)
                self.tls13 = version == 0x0304
                detail = server_hello_detail(version_name(version), cipher_name(suite), psk,
                                             ja3s)
                self.retried = body[2:34] == _HRR_RANDOM
                if self.retried:
                    name = "HelloRetryRequest"  # the client's second ClientHello follows
            elif hs == 11:
                if self.tls13:
                    raise Demote("cleartext TLS 1.3 Certificate")
                declared, ders = _certificate_list(body)
                self.certificates.append(CertificateMessage(
                    self.stream, frame, ns_to_datetime(ns), src, dst, declared, ders, False))
                detail = certificate_detail(len(ders), declared)
            elif hs not in (0, 4, 12, 13, 14, 15, 16, 22):  # 22: CertificateStatus (OCSP)
                raise Demote(f"cleartext handshake message {hs}")
            out.append((name, detail))
        return pos, out

    def finish(self) -> dict[str, object]:
        """Add the SMTP dialogue's rows; the stream facts tshark's rows would have set
        (see ``parallel._PARTIAL``)."""
        client, server = self._src_dst(self.request_dir)
        has_smtp, first_command_from = False, None
        items = self.dialogue.finish() if self.dialogue is not None else self.items or []
        for item in items:
            src, dst = (client, server) if item.sender == "client" else (server, client)
            has_smtp = has_smtp or item.kind is not ItemKind.GAP
            if item.kind is ItemKind.COMMAND and first_command_from is None:
                first_command_from = src
            self.rows.append((item.first_frame, item.stamp, self.stream, src, dst,
                              item.kind.value, item.name, item.detail, item.last_frame))
        return {"lost_segments": self.lost_segments, "malformed": 0, "has_smtp": has_smtp,
                "has_tls": self.has_tls, "client_hello_from": self.client_hello_from,
                "first_command_from": first_command_from}
