"""Exchange Server SMTP protocol logs (SmtpSend and SmtpReceive) -> ``LogSession`` rows.

The ``#Fields:`` header decides the columns; data lines are CSV with RFC 4180 quoting (the
stdlib ``csv`` module reads them); rows are grouped by session-id and ordered by
sequence-number. Events: ``+`` connect, ``-`` disconnect, ``>`` sent, ``<`` received, ``*``
information (certificates, TLS results).
"""

from __future__ import annotations

import csv
import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass

import pandas as pd

from ..core.schema import ClientCert
from .inputs import LogText, numbered_lines
from .model import (
    LogFormat,
    LoggedCert,
    LogRef,
    LogReply,
    LogRole,
    LogSession,
    LogWarning,
    parse_endpoint,
)

#: The columns a session needs; other columns (and their order) may vary by version.
REQUIRED = ("date-time", "session-id", "sequence-number", "local-endpoint", "remote-endpoint",
            "event", "data", "context")
DOCUMENTED_FIELDS = ("date-time", "connector-id", *REQUIRED[1:])

_TLS_OK = re.compile(r"TLS protocol (SP_PROT_(?:SSL|TLS)(\d)(?:_(\d))?\w*) negotiation "
                     r"succeeded(?: using (.*))?", re.IGNORECASE)
_TLS_FAILED = re.compile(r"TLS negotiation failed with error (\w+)", re.IGNORECASE)
_REPLY = re.compile(r"^(\d{3})[ -]")
_ALGORITHM = re.compile(r"\b(CALG_\w+)")
_ONE_LINE_CONTEXT = re.compile(r"^(Sending|Received|Remote) certificate\s+Subject", re.I)
_ATTRIBUTE = re.compile(r"^[A-Za-z][A-Za-z0-9.]*=")

#: context of the multi-line block's ``*`` lines -> LoggedCert attribute
_BLOCK_FIELDS = {
    "certificate subject": "subject",
    "certificate issuer name": "issuer",
    "certificate issuer": "issuer",
    "certificate serial number": "serial",
    "certificate thumbprint": "thumbprint",
    "certificate alternate names": "sans",
    "certificate not before": "not_before",
    "certificate not after": "not_after",
}


@dataclass(slots=True)
class _Row:
    ref: LogRef
    time: dt.datetime | None
    connector: str | None
    session: str
    sequence: int
    local: str
    remote: str
    event: str
    data: str
    context: str


def looks_like_exchange(text: str) -> bool:
    head = text[:4096]
    return "#Fields:" in head or "#Log-type: SMTP" in head or (
        "#Software: Microsoft Exchange" in head)


def _role_from_header(value: str) -> LogRole | None:
    value = value.lower()
    if "send" in value:
        return LogRole.CLIENT
    if "receive" in value:
        return LogRole.SERVER
    return None


def _time(text: str) -> dt.datetime | None:
    """UTC time of an ISO 8601 stamp (``2026-03-02T09:15:01.250Z``); None when unreadable."""
    try:
        stamp = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        try:
            parsed = pd.Timestamp(text.strip())
        except (ValueError, TypeError):
            return None
        if pd.isna(parsed):
            return None
        stamp = parsed.to_pydatetime()
    return stamp.replace(tzinfo=dt.UTC) if stamp.tzinfo is None else stamp.astimezone(dt.UTC)


class _Layout:
    """The header state while a file is read: role, columns, and whether to skip."""

    def __init__(self) -> None:
        self.role: LogRole | None = None
        self.fields: list[str] | None = None
        self.skipping = False
        self.assumed = False
        self.numbers: list[int] = []  # file line number of every line given to the reader
        self.last_number = 0


def _data_lines(log: LogText, layout: _Layout, warnings: list[LogWarning]) -> Iterator[str]:
    """The data lines for the CSV reader; header lines update ``layout`` on the way."""
    for number, line in numbered_lines(log.text):
        layout.last_number = number
        if not line.strip():
            continue
        if line.startswith("#"):
            key, _, value = line[1:].partition(":")
            key = key.strip().lower()
            if key == "log-type":
                layout.role = _role_from_header(value) or layout.role
            elif key == "fields":
                layout.fields = [f.strip().lower() for f in value.split(",")]
                missing = [f for f in REQUIRED if f not in layout.fields]
                layout.skipping = bool(missing)
                if missing:
                    warnings.append(LogWarning(log.name, number, "unknown #Fields: layout "
                                               f"(no {', '.join(missing)}): the lines under it "
                                               "are skipped"))
            continue
        if layout.skipping:
            continue
        if layout.fields is None:
            layout.fields = list(DOCUMENTED_FIELDS)
            layout.assumed = True
            warnings.append(LogWarning(log.name, number, "no #Fields: header before the first "
                                       "data line: the documented layout is assumed"))
        layout.numbers.append(number)
        yield line


def _records(log: LogText, layout: _Layout, warnings: list[LogWarning]
             ) -> Iterator[tuple[int, list[str]]]:
    """(line number, values) of every CSV record: one reader for the whole file (a reader
    per line cost more than the rest of the parsing); a malformed record is skipped."""
    lines = _data_lines(log, layout, warnings)
    while True:
        base = len(layout.numbers)
        reader = csv.reader(lines, strict=True)
        consumed = 0
        try:
            for values in reader:
                start = layout.numbers[base + consumed]
                consumed = reader.line_num
                yield start, values
            return
        except csv.Error as exc:
            number = layout.numbers[-1] if layout.numbers else layout.last_number
            warnings.append(LogWarning(log.name, number, f"line cannot be read as CSV ({exc}):"
                                       " skipped"))


def read_rows(log: LogText, warnings: list[LogWarning]) -> tuple[list[_Row], LogRole | None]:
    """The data rows of one file, with the role its ``#Log-type:`` header names."""
    rows: list[_Row] = []
    layout = _Layout()
    bad_times = 0
    for number, values in _records(log, layout, warnings):
        fields = layout.fields or list(DOCUMENTED_FIELDS)
        if len(values) < len(fields):
            if len(values) < fields.index("event") + 1 or len(values) < len(fields) - 2:
                warnings.append(LogWarning(log.name, number, f"line is cut short "
                                           f"({len(values)} of {len(fields)} fields): skipped"))
                continue
            values += [""] * (len(fields) - len(values))  # trailing empty data/context
        record = dict(zip(fields, values, strict=False))
        try:
            sequence = int(record["sequence-number"])
        except ValueError:
            if layout.assumed and not rows:
                warnings.append(LogWarning(log.name, number, "not an Exchange protocol log "
                                           "(no #Fields: header, and the lines do not fit the "
                                           "documented layout): skipped"))
                return [], layout.role
            warnings.append(LogWarning(log.name, number, "sequence-number "
                                       f"'{record['sequence-number']}' is not a number: line "
                                       "skipped"))
            continue
        stamp = _time(record["date-time"])
        if stamp is None:
            bad_times += 1
        rows.append(_Row(LogRef(log.name, number), stamp, record.get("connector-id") or None,
                         record["session-id"], sequence, record["local-endpoint"],
                         record["remote-endpoint"], record["event"].strip(), record["data"],
                         record["context"]))
    if bad_times:
        warnings.append(LogWarning(log.name, None, f"{bad_times} line(s) with an unreadable "
                                   "date-time"))
    if rows and not log.text.endswith(("\n", "\r")):
        last = rows[-1]
        if last.ref.line == layout.last_number:
            warnings.append(LogWarning(log.name, layout.last_number, "the file ends without a "
                                       "line end: its last line may be cut short"))
    return rows, layout.role


def _guess_role(rows: list[_Row], name: str) -> LogRole:
    """Without a #Log-type header: the side that receives the 220 banner is the client."""
    for row in rows:
        if row.event in "<>" and row.event and _REPLY.match(row.data or ""):
            return LogRole.CLIENT if row.event == "<" else LogRole.SERVER
    upper = name.upper()
    return LogRole.SERVER if upper.startswith("RECV") else LogRole.CLIENT


def _tls_version(protocol: str, major: str, minor: str | None) -> str:
    if "SSL" in protocol.upper():
        return f"SSL {major}.0"
    return f"TLS 1.{minor or '0'}" if major == "1" else f"TLS {major}.{minor or '0'}"


def _one_line_cert(data: str, ref: LogRef) -> LoggedCert:
    """``<subject> <issuer> <serial> <thumbprint> <notBefore> <notAfter> <SANs;...>``: the last
    five tokens from the right; the DNs split where a new attribute follows a value's end."""
    tokens = data.split()
    cert = LoggedCert(ref=ref, form="line")
    if len(tokens) < 6:
        cert.subject = data.strip() or None
        return cert
    dns, tail = tokens[:-5], tokens[-5:]
    cert.serial, cert.thumbprint = tail[0], tail[1].upper()
    cert.not_before, cert.not_after = _time(tail[2]), _time(tail[3])
    cert.sans = tuple(s for s in tail[4].split(";") if s)
    split = None
    for i in range(1, len(dns)):
        if _ATTRIBUTE.match(dns[i]) and not dns[i - 1].endswith(","):
            split = i
            break
    if split is None:
        cert.subject = " ".join(dns)
    else:
        cert.subject, cert.issuer = " ".join(dns[:split]), " ".join(dns[split:])
    return cert


def _sessions_from_rows(rows: list[_Row], role: LogRole) -> list[LogSession]:
    grouped: dict[str, list[_Row]] = {}
    for row in rows:
        grouped.setdefault(row.session, []).append(row)
    out = []
    for session_id, members in grouped.items():
        # stable sort: rows keep their file order where sequence numbers tie
        members.sort(key=lambda r: r.sequence)
        out.append(_session(session_id, members, role, members[0].ref.file))
    out.sort(key=lambda s: (s.start_time or pd.Timestamp.max.tz_localize("UTC"), s.session_id))
    return out


def _session(session_id: str, rows: list[_Row], role: LogRole, file: str) -> LogSession:
    s = LogSession(log_format=LogFormat.EXCHANGE, role=role, file=file, session_id=session_id)
    s.connector = next((r.connector for r in rows if r.connector), None)
    times = [r.time for r in rows if r.time is not None]
    s.start_time = min(times) if times else None
    s.end_time = max(times) if times else None
    for row in rows:
        if row.local and row.remote:
            local, remote = parse_endpoint(row.local), parse_endpoint(row.remote)
            client, server = (local, remote) if role == LogRole.CLIENT else (remote, local)
            s.client_ip, s.client_port = client
            s.server_ip, s.server_port = server
            break
    else:
        remote = next((r.remote for r in rows if r.remote), None)
        if remote and role == LogRole.CLIENT:
            s.server_ip, s.server_port = parse_endpoint(remote)
    from_server = "<" if role == LogRole.CLIENT else ">"
    from_client = ">" if role == LogRole.CLIENT else "<"
    last_command = ""
    in_ehlo_reply = False
    ehlo_reply_seen = False
    tls_ok = False
    block: LoggedCert | None = None
    own: LoggedCert | None = None
    remote_cert: LoggedCert | None = None
    for row in rows:
        text = row.data if row.event in "<>" and row.event else ""
        s.lines.append((row.ref, row.time, _display(row)))
        if row.event == "+":
            s.refs.setdefault("connect", row.ref)
        elif row.event == from_client and text:
            verb = text.split(" ", 1)[0].upper()
            last_command = verb
            in_ehlo_reply = False
            if verb in ("EHLO", "HELO") and s.ehlo is None:
                s.ehlo = text.split(" ", 1)[1].strip() if " " in text else None
                s.refs["ehlo"] = row.ref
            elif verb == "STARTTLS":
                s.starttls_requested = True
                s.refs["starttls"] = row.ref
        elif row.event == from_server and text:
            match = _REPLY.match(text)
            if not match:
                continue
            code = match.group(1)
            s.replies.append(LogReply(code, text, row.ref))
            if s.banner is None and code == "220" and not last_command:
                s.banner = text
                s.refs["banner"] = row.ref
                parts = text.split()
                s.server_host = parts[1] if len(parts) > 1 else None
            elif last_command == "EHLO" and code == "250" and s.starttls_requested is None:
                if not in_ehlo_reply and not ehlo_reply_seen:
                    s.refs["ehlo_reply"] = row.ref
                    in_ehlo_reply = True
                    ehlo_reply_seen = True
                    s.starttls_offered = False
                    if s.server_host is None:
                        s.server_host = text[4:].split()[0] if len(text) > 4 else None
                if in_ehlo_reply and re.search(r"\bSTARTTLS\b", text, re.IGNORECASE):
                    s.starttls_offered = True
            elif last_command == "STARTTLS" and s.starttls_accepted is None:
                s.starttls_accepted = code == "220"
                s.refs["starttls_reply"] = row.ref
        elif row.event == "*":
            joined = f"{row.data} {row.context}"
            context = row.context.strip()
            lowered = context.lower()
            if _ONE_LINE_CONTEXT.match(context) and row.data.strip():
                cert = _one_line_cert(row.data, row.ref)
                if lowered.startswith("sending"):
                    own = cert
                else:
                    remote_cert = cert
                block = None
            elif lowered in ("sending certificate", "received certificate",
                             "remote certificate") or (
                    row.data.strip().lower() in ("sending certificate", "received certificate")
                    and not context):
                side = (lowered or row.data.strip().lower()).startswith("sending")
                block = LoggedCert(ref=row.ref, form="block")
                if side:
                    own = block
                else:
                    remote_cert = block
            elif block is not None and lowered in _BLOCK_FIELDS:
                name = _BLOCK_FIELDS[lowered]
                value = row.data.strip()
                if name == "sans":
                    block.sans = tuple(v.strip() for v in value.split(";") if v.strip())
                elif name in ("not_before", "not_after"):
                    setattr(block, name, _time(value))
                elif name == "thumbprint":
                    block.thumbprint = value.replace(" ", "").upper() or None
                else:
                    setattr(block, name, value or None)
            else:
                block = None
            ok = _TLS_OK.search(joined)
            failed = _TLS_FAILED.search(joined)
            if ok:
                tls_ok = True
                s.tls_version = _tls_version(ok.group(1), ok.group(2), ok.group(3))
                algorithms = _ALGORITHM.findall(ok.group(4) or "")
                s.cipher = " ".join(algorithms) or (ok.group(4) or "").strip() or None
                s.refs["tls"] = row.ref
            elif failed:
                s.tls_error = failed.group(1)
                s.refs["tls_error"] = row.ref
        elif row.event == "-":
            s.refs["disconnect"] = row.ref
    if role == LogRole.CLIENT:
        s.client_certificate, s.server_certificate = own, remote_cert
    else:
        s.client_certificate, s.server_certificate = remote_cert, own
    if s.client_certificate is not None and s.client_certificate.ref is not None:
        s.refs["client_certificate"] = s.client_certificate.ref
    if s.replies:
        s.refs["last_reply"] = s.replies[-1].ref
    _verdict(s, tls_ok)
    return s


def _display(row: _Row) -> str:
    """One line as the HTML report shows it beside the packets."""
    if row.data and row.context:
        return f"{row.event} {row.data} | {row.context}"
    return f"{row.event} {row.data or row.context}"


def _verdict(s: LogSession, tls_ok: bool) -> None:
    cert = s.client_certificate
    own_log = s.role == LogRole.CLIENT
    if s.tls_error:
        s.client_cert = ClientCert.HANDSHAKE_FAILED
        s.verdict_reason = (f"the log records 'TLS negotiation failed with error "
                            f"{s.tls_error}' (line {s.refs['tls_error'].line})")
    elif tls_ok and cert is not None:
        s.client_cert = ClientCert.PRESENTED
        what = "'Sending certificate'" if own_log else "the remote's certificate"
        s.verdict_reason = (f"the log records {what} (line {cert.ref.line if cert.ref else '?'})"
                            f" and TLS succeeded (line {s.refs['tls'].line})")
    elif tls_ok and own_log:
        s.client_cert = ClientCert.EMPTY
        s.verdict_reason = (f"TLS succeeded (line {s.refs['tls'].line}) and the log records no "
                            "'Sending certificate': the sending server presented no "
                            "certificate (the log does not show whether the server asked)")
    elif tls_ok:
        s.client_cert = ClientCert.NOT_LOGGED
        s.verdict_reason = (f"TLS succeeded (line {s.refs['tls'].line}) but this receive log "
                            "records no remote certificate: it cannot tell whether the client "
                            "sent one")
    elif s.starttls_accepted:
        s.client_cert = ClientCert.NOT_LOGGED
        s.verdict_reason = (f"STARTTLS was accepted (line {s.refs['starttls_reply'].line}) but "
                            "the log has no TLS result line (logging level below Verbose, or "
                            "the log is cut)")
    elif s.starttls_requested and s.starttls_accepted is False:
        s.client_cert = ClientCert.NO_TLS
        s.verdict_reason = (f"the server refused STARTTLS (line "
                            f"{s.refs['starttls_reply'].line})")
    elif s.starttls_requested:
        s.client_cert = ClientCert.NOT_LOGGED
        s.verdict_reason = "STARTTLS was sent but the log ends before the server's answer"
    elif s.ehlo is not None or s.replies:
        s.client_cert = ClientCert.NO_TLS
        s.verdict_reason = ("the session never sent STARTTLS" + (
            " (the server did not offer it)" if s.starttls_offered is False else ""))
    else:
        s.client_cert = ClientCert.NOT_LOGGED
        s.verdict_reason = "the log holds no SMTP dialogue for this session"


def parse(log: LogText, warnings: list[LogWarning]) -> list[LogSession]:
    """Every session of one Exchange protocol log file."""
    return parse_files([log], warnings)[0]


def parse_files(logs: list[LogText], warnings: list[LogWarning]
                ) -> tuple[list[LogSession], list[str]]:
    """(sessions, names of the files that held rows) of several files read as one log: a
    session that continues in the next file (Exchange starts a new file every few MB) is one
    session, its lines keeping their own file names."""
    by_role: dict[LogRole, list[_Row]] = {}
    names = []
    for log in logs:
        rows, role = read_rows(log, warnings)
        if not rows:
            continue
        names.append(log.name)
        by_role.setdefault(role or _guess_role(rows, log.name), []).extend(rows)
    sessions: list[LogSession] = []
    for role, rows in by_role.items():
        sessions += _sessions_from_rows(rows, role)
    return sessions, names
