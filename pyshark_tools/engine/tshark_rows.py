"""Capture -> tshark -> per-frame SMTP/TLS events and per-stream TCP facts.

One streamed ``tshark -T fields`` pass. Memory grows with the number of conversations and
of SMTP/TLS events, not with the number of packets: plain TCP segments only update counters.
``RowReader`` turns the rows into events for both engines (the reference pass here and the
fast engine's shards).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

import pandas as pd

from ..core.cert_compression import decompress_certificate_message, tls13_certificate_list
from ..core.details import certificate_detail, client_hello_detail, server_hello_detail
from ..core.events import (
    DEFAULT_PORTS,
    HELLO_RETRY_RANDOM,
    IMPLICIT_TLS_PORTS,
    CertificateMessage,
    EventSink,
    Extraction,
    StreamFacts,
    add_dialogue,
    assign_roles,
    endpoint,
    port_of,
)
from ..core.smtp_dialogue import DialogueReader
from ..core.tcpgaps import SequenceGaps, tcp_preferences
from ..core.tls_names import alert_name, cipher_name, handshake_name, version_name
from .capture_format import has_embedded_secrets
from .restarts import ConnectionSplitter
from .tshark import AGGREGATOR, FieldRun, Tshark, field_command, iter_fields

FIELDS: tuple[str, ...] = (
    "frame.number",
    "frame.time_epoch",
    "frame.len",
    "frame.cap_len",
    "tcp.stream",
    "ip.src",
    "ip.dst",
    "ipv6.src",
    "ipv6.dst",
    "tcp.srcport",
    "tcp.dstport",
    "tcp.flags",
    "tcp.len",
    "tcp.seq_raw",
    "tcp.payload",
    "tcp.analysis.lost_segment",
    "_ws.malformed",
    # the plaintext of each decrypted TLS record no dissector took (see row_decode_as)
    "data.data",
    "tls.record.content_type",
    "tls.record.opaque_type",
    "tls.handshake.type",
    "tls.handshake.version",
    "tls.handshake.extensions.supported_version",
    "tls.handshake.ciphersuite",
    "tls.handshake.extensions_server_name",
    "tls.handshake.certificates_length",
    "tls.handshake.certificate",
    "tls.compress_certificate.algorithm",
    "tls.compress_certificate.uncompressed_length",
    "tls.compress_certificate.compressed_certificate_message",
    "tls.alert_message.level",
    "tls.alert_message.desc",
    "tls.handshake.ja3",
    "tls.handshake.ja3s",
    "tls.handshake.random",
    "tls.handshake.extensions.psk.identity.selected",
)

def display_filter(ports: Sequence[int], all_tls: bool) -> str:
    """Only frames of the SMTP ports (and, with all_tls, any TLS) reach Python."""
    port_list = ",".join(str(p) for p in sorted(set(ports)))
    base = f"tcp.port in {{{port_list}}}"
    return f"{base} || tls" if all_tls else base


def decode_as_rules(ports: Sequence[int]) -> list[str]:
    """Tell tshark to read SMTP (or TLS for implicit-TLS ports) on non-standard ports."""
    rules = []
    for port in sorted(set(ports)):
        if port in IMPLICIT_TLS_PORTS:
            rules.append(f"tcp.port=={port},tls")
        elif port not in (25, 587):
            rules.append(f"tcp.port=={port},smtp")
    return rules


def row_decode_as(ports: Sequence[int], decrypting: bool = True) -> list[str]:
    """The fields pass's dissectors. ``decrypting`` (a key log, or secrets embedded in the
    capture): every SMTP port read as TLS, and what TLS decrypts left as raw bytes
    (``data.data``, one per record, in wire order); else tshark's usual SMTP reading.

    Cleartext SMTP is read from ``tcp.payload`` (``core.smtp_dialogue``), so tshark's SMTP
    dissector is not needed; its per-frame fields cut a reply sent one line per TLS record
    into several replies. TLS then starts where a record header does, as after STARTTLS
    (the TLS fields are the same either way on tshark 4.0 and 4.4 for every fixture and the
    peer corpus). Only with something to decrypt: TLS on a cleartext segment shorter than a
    record header waits for the next one, so a client's ``\\r\\n`` sent alone just before its
    ClientHello hides that ClientHello (tshark's SMTP dissector reads it)."""
    if not decrypting:
        return decode_as_rules(ports)
    rules = []
    for port in sorted(set(ports) | set(IMPLICIT_TLS_PORTS)):
        if port in ports:
            rules.append(f"tcp.port=={port},tls")
        rules.append(f"tls.port=={port},data")
    return rules


def _split(value: str) -> list[str]:
    return value.split(AGGREGATOR) if value else []


def _ints(value: str) -> list[int]:
    out = []
    for item in _split(value):
        try:
            out.append(int(item, 0))
        except ValueError:
            continue
    return out


# long: the reference pass: runs per row of tshark's output, counting TCP facts and feeding the
#   readers inline
def extract(
    tshark: Tshark,
    capture: str | os.PathLike,
    *,
    ports: Sequence[int] = DEFAULT_PORTS,
    all_tls: bool = False,
    keylog: str | os.PathLike | None = None,
    stream_filter: Iterable[int] | None = None,
) -> Extraction:
    """Run the single tshark pass and turn its rows into events and stream facts."""
    options = list(tcp_preferences(capture))  # out-of-order reassembly (tcpgaps.py)
    if keylog is not None:
        options.append(f"tls.keylog_file:{os.fspath(keylog)}")
    dfilter = display_filter(ports, all_tls)
    wanted = sorted(set(stream_filter)) if stream_filter is not None else None
    if wanted is not None:
        dfilter = f"({dfilter}) && tcp.stream in {{{','.join(map(str, wanted))}}}"
    cmd = field_command(
        tshark, capture, FIELDS, display_filter=dfilter,
        decode_as=row_decode_as(ports, keylog is not None or has_embedded_secrets(capture)),
        options=options,
    )
    run = FieldRun(time_limit=tshark.limit_for(capture))
    reader = RowReader(ports)
    streams: dict[int, StreamFacts] = {}
    packets = 0
    first_time = last_time = None
    gaps = SequenceGaps()
    unreadable_times: list[int] = []
    # one conversation per TCP connection (restarts.py): tshark 4.2+ numbers them so itself
    splitter = ConnectionSplitter() if tuple(tshark.version[:2]) < (4, 2) else None
    for row in iter_fields(cmd, FIELDS, run):
        packets += 1
        try:
            frame = int(row["frame.number"])
            tcp_stream = int(row["tcp.stream"])
            when = frame_time(row["frame.time_epoch"])
        except ValueError:
            continue
        if when is None:  # a damaged time stamp: the frame is read, its time borrowed
            unreadable_times.append(frame)
            when = last_time or EPOCH
        first_time = first_time or when
        last_time = when
        src_ip = row["ip.src"] or row["ipv6.src"]
        dst_ip = row["ip.dst"] or row["ipv6.dst"]
        src = endpoint(src_ip, row["tcp.srcport"])
        dst = endpoint(dst_ip, row["tcp.dstport"])
        stream = splitter.key(tcp_stream, src, *tcp_flags_seq(row)) if splitter else tcp_stream
        facts = streams.get(stream)
        if facts is None:
            facts = streams[stream] = StreamFacts(
                stream=stream, first_src=src, first_dst=dst, first_frame=frame, first_time=when
            )
        try:
            _count_tcp(facts, row, frame, when, src)
            gaps.add(stream, src, row)
            reader.row(facts, row, frame, when, src, dst)
        except (ValueError, IndexError):  # a row tshark garbled: counted, skipped
            run.garbage_lines += 1
    watched = set(ports)
    for stream, facts in streams.items():
        # truly missing, not merely reordered; only where the display filter passes every
        # segment (with --all-tls, other ports show only their TLS-bearing frames)
        if port_of(facts.first_src) in watched or port_of(facts.first_dst) in watched:
            facts.lost_segments = gaps.holes(stream)
    if unreadable_times:
        run.warnings.append(time_warning(unreadable_times))
    events, certs = reader.finish()
    run.warnings.extend(reader.problems)
    if splitter is not None and splitter.split:
        streams, events = renumber_restarts(streams, events, certs, splitter.numbers())
        if stream_filter is None:
            events, certs = reread_restarts(tshark, capture, streams, events, certs,
                                            splitter.numbers(), ports, all_tls, keylog,
                                            run.warnings)
    certs = assign_roles(streams, events, certs, ports)
    return Extraction(
        events=events,
        streams=streams,
        certificate_messages=certs,
        warnings=run.warnings,
        truncated_file=run.truncated,
        packets_read=packets,
        first_time=first_time,
        last_time=last_time,
        tshark_command=cmd,
        complete=run.complete,
    )


#: The time given to a first frame whose own time stamp no date can hold.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def frame_time(text: str) -> datetime | None:
    """tshark's ``frame.time_epoch`` as a date; None when it is a number no date holds
    (after the year 9999: a damaged time stamp). Raises ValueError on a non-number."""
    seconds = float(text)
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (ValueError, OverflowError, OSError):
        if seconds != seconds:  # NaN is not a number
            raise ValueError(text) from None
        return None


def time_warning(frames: list[int]) -> str:
    """The warning for frames whose time stamp could not be read as a date."""
    shown = ", ".join(str(f) for f in frames[:5]) + (" ..." if len(frames) > 5 else "")
    return (f"{len(frames)} frame(s) with a time stamp no date can hold (damaged capture?): "
            f"frame {shown}; each is given the time of the frame before it")


def tcp_flags_seq(row: dict[str, str]) -> tuple[int, int | None]:
    """A row's TCP flags and raw sequence number (None where tshark printed none)."""
    flags = int(row["tcp.flags"], 16) if _is_hex(row["tcp.flags"][2:]) else 0
    seq = row["tcp.seq_raw"]
    return flags, int(seq) if seq.isdigit() else None


def renumber_restarts(streams: dict[int, StreamFacts], events: pd.DataFrame,
                      certs: list[CertificateMessage], numbers: dict[int, tuple[int, int]]
                      ) -> tuple[dict[int, StreamFacts], pd.DataFrame]:
    """The final numbers of the connections ``ConnectionSplitter`` split off (provisional
    key -> (conversation number, tcp.stream)), in the stream facts, events and certificate
    messages; the streams in conversation order."""
    out: dict[int, StreamFacts] = {}
    for key, facts in streams.items():
        if key in numbers:
            facts.stream, facts.tcp_stream = numbers[key]
        out[facts.stream] = facts
    for msg in certs:
        if msg.stream in numbers:
            msg.stream = numbers[msg.stream][0]
    if len(events):
        events["stream"] = events["stream"].map(
            lambda s: numbers[s][0] if s in numbers else s).astype("Int64")
    return dict(sorted(out.items())), events


# long: per restarted connection, in order: cut it out with editcap (supervised), read it alone, put
#   its frames, facts, events and certificates back
def reread_restarts(tshark: Tshark, capture: str | os.PathLike,
                    streams: dict[int, StreamFacts], events: pd.DataFrame,
                    certs: list[CertificateMessage], numbers: dict[int, tuple[int, int]],
                    ports: Sequence[int], all_tls: bool, keylog: str | os.PathLike | None,
                    warnings: list[str]) -> tuple[pd.DataFrame, list[CertificateMessage]]:
    """Each connection split off a tcp.stream, read again by tshark on its own.

    A tshark that numbers a restarted connection as the old one's stream also dissects it
    as the old one's continuation (4.0: the reused client sequence numbers are
    "retransmissions", the new handshake "encrypted"). ``editcap`` cuts the capture to the
    frames from the restart's first to its last, where the connection is the first on its
    addresses and ports, and the same fields pass reads it; its facts, events and
    certificate messages replace the first reading's (frame numbers put back)."""
    import shutil
    import subprocess
    import tempfile

    editcap = shutil.which("editcap", path=os.path.dirname(tshark.path)) or \
        shutil.which("editcap")
    for number, tcp_stream in numbers.values():
        facts = streams.get(number)
        if facts is None:
            continue
        if editcap is None:
            warnings.append(f"tcp.stream {tcp_stream} holds a restarted connection (conversation "
                            f"{number}) that this tshark reads as a continuation, and editcap "
                            "was not found to read it alone: its TLS facts may be incomplete")
            continue
        offset = facts.first_frame - 1
        with tempfile.TemporaryDirectory(prefix="tls-smtp-report-restart-") as tmp:
            part = os.path.join(tmp, "restart.pcapng")
            try:
                done = subprocess.run(
                    [editcap, "-F", "pcapng", "-r", os.fspath(capture), part,
                     f"{facts.first_frame}-{facts.last_frame}"],
                    capture_output=True, stdin=subprocess.DEVNULL,
                    timeout=tshark.limit_for(capture), check=False)
                failed = done.returncode != 0 or not os.path.exists(part)
            except (OSError, subprocess.TimeoutExpired):
                failed = True
            if failed:
                warnings.append(f"conversation {number} (a restarted connection in tcp.stream "
                                f"{tcp_stream}) could not be cut out for a reading of its own")
                continue
            alone = extract(tshark, part, ports=ports, all_tls=all_tls, keylog=keylog)
        again = next((f for f in alone.streams.values() if f.first_frame == 1
                      and {f.first_src, f.first_dst} == {facts.first_src, facts.first_dst}),
                     None)
        if again is None or again.frames != facts.frames:
            continue  # not the same packets: the first reading stays
        for name in ("syn_from", "fin", "rst", "truncated_frames", "lost_segments",
                     "malformed", "has_smtp", "has_tls", "client_hello_from",
                     "first_command_from"):
            setattr(facts, name, getattr(again, name))
        mine = alone.events[alone.events["stream"] == again.stream].copy()
        mine["stream"] = number
        mine["frame"] = mine["frame"] + offset
        mine["last_frame"] = mine["last_frame"] + offset
        kept = events[events["stream"] != number]
        events = pd.concat([kept, mine], ignore_index=True) if len(kept) else \
            mine.reset_index(drop=True)
        events = events.sort_values("frame", kind="stable").reset_index(drop=True)
        for name in ("sender", "kind"):
            events[name] = events[name].astype(object).astype("category")
        certs = [m for m in certs if m.stream != number]
        for msg in alone.certificate_messages:
            if msg.stream == again.stream:
                msg.stream, msg.frame = number, msg.frame + offset
                certs.append(msg)
        certs.sort(key=lambda m: m.frame)
    return events, certs


def _count_tcp(
    facts: StreamFacts, row: dict[str, str], frame: int, when: datetime, src: str
) -> None:
    facts.frames += 1
    facts.last_frame = frame
    facts.last_time = when
    try:
        facts.bytes += int(row["frame.len"] or 0)
        if int(row["frame.cap_len"] or 0) < int(row["frame.len"] or 0):
            facts.truncated_frames += 1
    except ValueError:
        pass
    flags = int(row["tcp.flags"], 16) if row["tcp.flags"] else 0
    if flags & 0x002 and not flags & 0x010:
        facts.syn_from = src
    if flags & 0x001:
        facts.fin = True
    if flags & 0x004:
        facts.rst = True
    if row["_ws.malformed"]:
        facts.malformed += 1


class RowReader:
    """tshark's ``-T fields`` rows -> events and certificate messages, for both engines.

    TLS comes from tshark's per-frame fields; SMTP from the TCP payload in clear and from the
    decrypted records' plaintext inside TLS, each read as a byte stream by a
    :class:`~pyshark_tools.core.smtp_dialogue.DialogueReader`.
    """

    def __init__(self, ports: Sequence[int]) -> None:
        self.sink = EventSink()
        self.certs: list[CertificateMessage] = []
        #: what could not be read and the report must say (a warning each)
        self.problems: list[str] = []
        self.appdata_seen: set[tuple[int, str]] = set()
        self.smtp_ports = frozenset(ports) - frozenset(IMPLICIT_TLS_PORTS)
        self.dialogues: dict[int, tuple[DialogueReader, str, str]] = {}
        #: the SMTP inside decrypted TLS, per conversation (reader, client, server)
        self.inside: dict[int, tuple[DialogueReader, str, str]] = {}
        self.tls_smtp_ports = frozenset(ports) | frozenset(IMPLICIT_TLS_PORTS)
        self.facts: dict[int, StreamFacts] = {}
        self.syn_from: dict[int, str] = {}

    def row(self, facts: StreamFacts, row: dict[str, str], frame: int, when: datetime,
            src: str, dst: str) -> None:
        """One frame's fields."""
        self.facts[facts.stream] = facts
        self._clear_text(facts, row, frame, when, src, dst)
        _frame_events(self, facts, row, frame, when, src, dst)

    # long: runs per row: the cleartext payload handed to the SMTP dialogue reader with its
    #   direction and sequence number
    def _clear_text(self, facts: StreamFacts, row: dict[str, str], frame: int,
                    when: datetime, src: str, dst: str) -> None:
        stream = facts.stream
        flags = int(row["tcp.flags"], 16) if _is_hex(row["tcp.flags"][2:]) else 0
        if flags & 0x002 and not flags & 0x010:
            self.syn_from.setdefault(stream, src)
        entry = self.dialogues.get(stream)
        if entry is None:
            if port_of(src) not in self.smtp_ports and port_of(dst) not in self.smtp_ports:
                return
            if not row["tcp.payload"]:
                return
            client = self.syn_from.get(stream) or _client_byport_of(src, dst, self.smtp_ports)
            entry = self.dialogues[stream] = (DialogueReader(), client,
                                              dst if client == src else src)
        reader, client, _server = entry
        sender = "client" if src == client else "server"
        if not reader.wants(sender) or not row["tcp.payload"]:
            return
        try:
            payload = bytes.fromhex(row["tcp.payload"])
            declared = int(row["tcp.len"] or len(payload))
            seq = int(row["tcp.seq_raw"]) if row["tcp.seq_raw"] else None
        except ValueError:
            return
        reader.feed(sender, frame, when, payload, seq, max(declared, len(payload)))

    def decrypted_text(self, facts: StreamFacts, row: dict[str, str], frame: int,
                       when: datetime, src: str, dst: str) -> None:
        """One frame's decrypted TLS records (their plaintext) handed to the conversation's
        inside-TLS dialogue reader, in wire order."""
        stream = facts.stream
        entry = self.inside.get(stream)
        if entry is None:
            if port_of(src) not in self.tls_smtp_ports and \
                    port_of(dst) not in self.tls_smtp_ports:
                return
            clear = self.dialogues.get(stream)
            client = clear[1] if clear else self.syn_from.get(stream) or _client_byport_of(
                src, dst, self.tls_smtp_ports)
            entry = self.inside[stream] = (DialogueReader(greeting=False), client,
                                           dst if client == src else src)
        reader, client, _server = entry
        sender = "client" if src == client else "server"
        for record in _split(row["data.data"]):
            if _is_hex(record):
                reader.feed(sender, frame, when, bytes.fromhex(record))

    def finish(self) -> tuple[pd.DataFrame, list[CertificateMessage]]:
        """The events (frame order) and certificate messages of every row read."""
        for stream, (reader, client, server) in self.dialogues.items():
            facts = self.facts[stream]
            add_dialogue(self.sink, stream, client, server, reader.finish(), facts)
        for stream, (reader, client, server) in self.inside.items():
            add_dialogue(self.sink, stream, client, server, reader.finish(), self.facts[stream],
                         decrypted=True)
        events = self.sink.frame()
        if (self.dialogues or self.inside) and len(events):
            events = events.sort_values("frame", kind="stable").reset_index(drop=True)
        return events, self.certs


def _client_byport_of(src: str, dst: str, smtp_ports: frozenset[int]) -> str:
    """Without a SYN: the side talking to the SMTP port is the client."""
    if port_of(dst) in smtp_ports and port_of(src) not in smtp_ports:
        return src
    if port_of(src) in smtp_ports and port_of(dst) not in smtp_ports:
        return dst
    return dst  # SMTP servers speak first: the first sender of a payload is the server


# long: runs per row: one frame's TLS fields (records, handshake messages, alerts, decrypted SMTP)
#   in wire order
def _frame_events(
    reader: RowReader,
    facts: StreamFacts,
    row: dict[str, str],
    frame: int,
    when: datetime,
    src: str,
    dst: str,
) -> None:
    """Turn one frame's TLS fields (and decrypted SMTP) into zero or more events."""
    sink, certs, appdata_seen = reader.sink, reader.certs, reader.appdata_seen
    stream = facts.stream
    content_types = _ints(row["tls.record.content_type"])
    opaque = bool(row["tls.record.opaque_type"])
    in_tls = bool(content_types) or opaque

    def add(kind: str, name: str, detail: str, decrypted: bool) -> None:
        sink.add(frame=frame, time=when, stream=stream, src=src, dst=dst, sender=None,
                 kind=kind, name=name, detail=detail, decrypted=decrypted)

    if not in_tls:
        return
    facts.has_tls = True
    hs_types = _ints(row["tls.handshake.type"])
    after_ccs: list[tuple[str, str, bool]] = []
    compressed_seen = 0  # CompressedCertificate messages of this frame read so far
    for hs in hs_types:
        detail = ""
        name = handshake_name(hs)
        if hs == 1:
            facts.client_hello_from = facts.client_hello_from or src
            offered = _ints(row["tls.handshake.extensions.supported_version"]) or _ints(
                row["tls.handshake.version"]
            )
            names = [version_name(v) for v in offered if (v & 0x0F0F) == v]
            sni = row["tls.handshake.extensions_server_name"]
            ja3 = row["tls.handshake.ja3"]
            detail = client_hello_detail([n for n in names if n],
                                         _split(sni)[0] if sni else None,
                                         _split(ja3)[0] if ja3 else None)
        elif hs == 2:
            selected = _ints(row["tls.handshake.extensions.supported_version"])
            legacy = _ints(row["tls.handshake.version"])
            version = version_name(selected[0] if selected else (legacy[0] if legacy else None))
            suites = _ints(row["tls.handshake.ciphersuite"])
            cipher = cipher_name(suites[-1]) if suites else None
            psk = _split(row["tls.handshake.extensions.psk.identity.selected"])
            ja3s = row["tls.handshake.ja3s"]
            # psk: TLS 1.3, the server accepted a pre-shared key (resumption)
            detail = server_hello_detail(version, cipher, psk[0] if psk else None,
                                         _split(ja3s)[0] if ja3s else None)
            if HELLO_RETRY_RANDOM in _split(row["tls.handshake.random"]):
                name = "HelloRetryRequest"
        elif hs == 11:
            lengths = _ints(row["tls.handshake.certificates_length"])
            ders = tuple(bytes.fromhex(h) for h in _split(row["tls.handshake.certificate"])
                         if _is_hex(h))
            declared = lengths[0] if lengths else None
            certs.append(CertificateMessage(stream, frame, when, src, dst, declared, ders,
                                            opaque))
            detail = certificate_detail(len(ders), declared)
        elif hs == 25:
            detail = _compressed_certificate(reader, facts, row, frame, when, src, dst,
                                             opaque, compressed_seen)
            compressed_seen += 1
        # Hellos are always clear; later messages in a frame with decrypted records are not.
        decrypted = opaque and hs not in (1, 2)
        if 20 in content_types and (decrypted or hs == 20):
            after_ccs.append((name, detail, decrypted))
        else:
            add("tls_handshake", name, detail, decrypted)
    if 20 in content_types:
        # wire order: what ChangeCipherSpec protects (Finished, decrypted records) follows it
        add("tls_ccs", "ChangeCipherSpec", "", False)
        for name, detail, decrypted in after_ccs:
            add("tls_handshake", name, detail, decrypted)
    if 21 in content_types:
        descs = _split(row["tls.alert_message.desc"])
        levels = _split(row["tls.alert_message.level"])
        if descs:
            for i, desc in enumerate(descs):
                level = "fatal" if i < len(levels) and levels[i] == "2" else "warning"
                add("tls_alert", alert_name(desc), f"{level} {desc}", opaque)
        else:
            add("tls_alert", "encrypted_alert", "", False)
    if 23 in content_types and (stream, src) not in appdata_seen:
        appdata_seen.add((stream, src))
        add("tls_appdata", "ApplicationData", "first application data", False)
    if 23 in content_types and row["data.data"]:
        # SMTP inside decrypted TLS: read as a byte stream (its events follow this frame's)
        reader.decrypted_text(facts, row, frame, when, src, dst)


def _compressed_certificate(reader: RowReader, facts: StreamFacts, row: dict[str, str],
                            frame: int, when: datetime, src: str, dst: str, opaque: bool,
                            index: int) -> str:
    """The ``index``-th CompressedCertificate of a frame (RFC 8879; tshark shows it but not
    the certificates inside): decompressed here and read as a TLS 1.3 Certificate."""
    messages = _split(row["tls.compress_certificate.compressed_certificate_message"])
    lengths = _ints(row["tls.compress_certificate.uncompressed_length"])
    # the algorithm field also lists what a CertificateRequest or ClientHello in the same
    # frame offered; those come first in wire order, each message's own value last
    algorithms = _ints(row["tls.compress_certificate.algorithm"])[-len(messages):] \
        if messages else []
    data = messages[index] if index < len(messages) and _is_hex(messages[index]) else ""
    read = decompress_certificate_message(
        algorithms[index] if index < len(algorithms) else None,
        lengths[index] if index < len(lengths) else None, bytes.fromhex(data))
    if read.body is None:
        reader.problems.append(f"frame {frame}: a CompressedCertificate ({read.algorithm}) "
                               f"cannot be read: {read.problem}")
        return certificate_detail(None, None, compressed=read.algorithm,
                                  uncompressed=read.uncompressed_length)
    declared, ders = tls13_certificate_list(read.body)
    reader.certs.append(CertificateMessage(facts.stream, frame, when, src, dst, declared, ders,
                                           opaque))
    return certificate_detail(len(ders), declared, compressed=read.algorithm,
                              uncompressed=read.uncompressed_length)


def _is_hex(text: str) -> bool:
    try:
        bytes.fromhex(text)
    except ValueError:
        return False
    return bool(text)
