"""Exim main log (``mainlog``, or Exim's lines in syslog / the journal) -> sessions.

One row per arrival (``<=``), delivery (``=>``, ``**`` failed, ``==`` deferred) and per TLS
error line. ``X=`` is the TLS version and cipher; ``CV=`` whether the peer's certificate was
verified and ``DN=`` its subject: on an arrival the peer is the sending client (its
certificate), on a delivery it is the receiving server. Exim does not log whether it sent a
client certificate of its own: deliveries over TLS are ``not_logged``.
"""

from __future__ import annotations

import re

import pandas as pd

from ..core.schema import ClientCert
from .inputs import LogText, numbered_lines
from .model import LogFormat, LoggedCert, LogRef, LogReply, LogRole, LogSession, LogWarning
from .syslog import is_journal_export, is_journal_json, records

_MSGID = r"[0-9A-Za-z]{6}-[0-9A-Za-z]{6,11}-[0-9A-Za-z]{2,4}"
_MAIN = re.compile(r"^(?P<ts>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?)(?: (?P<tz>[+-]\d{4}))?"
                   r"(?: \[\d+\])? (?P<msg>.*)$")
_EVENT = re.compile(r"^(?:(?P<id>" + _MSGID + r") )?(?P<flag><=|=>|->|\*\*|==) (?P<rest>.*)$")
_HOST = re.compile(r"\bH=(?P<name>\S+)(?: \((?P<helo>[^)]*)\))? \[(?P<ip>[^\]]+)\]"
                   r"(?::(?P<port>\d+))?")
_HELO_ONLY = re.compile(r"\bH=\((?P<helo>[^)]*)\) \[(?P<ip>[^\]]+)\](?::(?P<port>\d+))?")
_TLS = re.compile(r"\bX=(?P<proto>(?:TLS|SSL)v?[\d.]+):(?P<cipher>[^:\s]+)(?::\d+)?")
_CV = re.compile(r"\bCV=(?P<cv>yes|no|dane)\b")
_DN = re.compile(r'\bDN="(?P<dn>(?:[^"\\]|\\.)*)"')
_PROTO = re.compile(r"\bP=(?P<p>\S+)")
_CONFIRM = re.compile(r'\bC="(?P<c>(?P<code>[2-5]\d\d)[^"]*)"')
_SMTP_ERROR = re.compile(r"SMTP error from remote mail server after (?P<after>[^:]+(?::<[^>]*>)?):"
                         r" (?P<reply>(?P<code>[2-5]\d\d)[ -].*)$")
_TLS_ERROR = re.compile(r"TLS error on connection (?:(?P<dir>from|to) )?(?P<who>.*?)"
                        r"\s*\((?P<call>[^)]*)\): ?(?P<why>.*)$")
_REJECT = re.compile(r"\bH=.*?(?P<temp>temporarily )?rejected (?P<verb>RCPT|MAIL|EHLO or HELO|"
                     r"HELO|EHLO|connection|after DATA)\b[^:]*: (?P<why>.*)$")
_ENHANCED = re.compile(r"^(?P<code>[245])\.\d{1,3}\.\d{1,3}\b")
_ADDR = re.compile(r"(?P<name>\S+)?(?: \((?P<helo>[^)]*)\))? ?\[(?P<ip>[^\]]+)\]"
                   r"(?::(?P<port>\d+))?")


def looks_like_exim(text: str) -> bool:
    head = text[:65536]
    return (re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?(?: [+-]\d{4})?(?: \[\d+\])? "
                      + _MSGID + r" (?:<=|=>|\*\*|==|Completed)", head, re.MULTILINE) is not None
            or re.search(r"\bexim4?\[\d+\]: " + _MSGID, head) is not None
            or re.search(r"SYSLOG_IDENTIFIER\W+exim4?\b", head) is not None
            or re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?(?: [+-]\d{4})?(?: \[\d+\])? "
                         r"(?:.*TLS error on connection|exim \d+\.\d+ daemon started|SMTP "
                         r"connection from |H=.* rejected )", head, re.MULTILINE) is not None)


def _utc(ts: str, tz: str | None) -> pd.Timestamp | None:
    try:
        stamp = pd.Timestamp(ts + (tz or ""))
    except (ValueError, TypeError):
        return None
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _lines(log: LogText, year: int, warnings: list[LogWarning]):
    """(ref, time, message) of Exim's own lines, from a main log or a syslog/journal."""
    if is_journal_export(log.text) or is_journal_json(log.text) or not _MAIN.match(
            next((line for _, line in numbered_lines(log.text) if line.strip()), "")):
        for rec in records(log, year, warnings):
            if rec.program.split("/")[-1] in ("exim", "exim4"):
                yield rec.ref, rec.time, rec.message
        return
    bad = 0
    first_bad = 0
    for number, line in numbered_lines(log.text):
        if not line.strip():
            continue
        m = _MAIN.match(line)
        if not m:
            bad += 1
            first_bad = first_bad or number
            continue
        yield LogRef(log.name, number), _utc(m["ts"], m["tz"]), m["msg"]
    if bad:
        warnings.append(LogWarning(log.name, first_bad, f"{bad} line(s) without Exim's date and "
                                   "time (first here): skipped"))


def _version(proto: str) -> str:
    digits = re.sub(r"^(?:TLS|SSL)v?", "", proto)
    return f"{'SSL' if proto.startswith('SSL') else 'TLS'} {digits}"


def parse(log: LogText, year: int, warnings: list[LogWarning]) -> list[LogSession]:
    out: list[LogSession] = []
    for ref, time, message in _lines(log, year, warnings):
        event = _EVENT.match(message)
        if event and event["flag"] != "->":
            session = _event_session(log, ref, time, event["flag"], event["id"] or "",
                                     event["rest"])
            if session is not None:
                out.append(session)
            continue
        error = _TLS_ERROR.search(message)
        if error:
            out.append(_tls_error_session(log, ref, time, message, error))
            continue
        reject = _REJECT.search(message)
        if reject:
            session = _event_session(log, ref, time, "<=", "", message)
            if session is not None:
                why = reject["why"]
                enhanced = _ENHANCED.match(why)
                # Exim logs the reason, not the reply's basic code: "5xx" keeps the class
                klass = enhanced["code"] if enhanced else ("4" if reject["temp"] else "5")
                session.replies.append(LogReply(f"{klass}xx", f"{klass}xx {why}", ref))
                session.refs["last_reply"] = ref
                if not _TLS.search(message):
                    session.client_cert = ClientCert.NOT_LOGGED
                    session.verdict_reason = (f"the rejection (line {ref.line}) does not say "
                                              "whether TLS was used")
                out.append(session)
    return _merge_connections(out)


_RANK = {ClientCert.PRESENTED: 0, ClientCert.HANDSHAKE_FAILED: 1, ClientCert.EMPTY: 2,
         ClientCert.NO_TLS: 3, ClientCert.NOT_LOGGED: 4}


def _merge_connections(sessions: list[LogSession]) -> list[LogSession]:
    """Lines of one connection (same client address and port, Exim's +incoming_port) are one
    session: an arrival and a rejection of another recipient, say."""
    out: list[LogSession] = []
    open_by_peer: dict[tuple[str, int], LogSession] = {}
    for s in sessions:
        if s.role != LogRole.SERVER or s.client_port is None or s.client_ip is None:
            out.append(s)
            continue
        key = (s.client_ip, s.client_port)
        first = open_by_peer.get(key)
        if first is None or (s.start_time is not None and first.end_time is not None
                             and (s.start_time - first.end_time).total_seconds() > 600):
            open_by_peer[key] = s
            out.append(s)
            continue
        first.lines += s.lines
        first.replies += s.replies
        first.end_time = s.end_time or first.end_time
        first.ehlo = first.ehlo or s.ehlo
        for name in ("tls_version", "cipher", "tls_error", "client_certificate"):
            if getattr(first, name) is None:
                setattr(first, name, getattr(s, name))
        for fact, ref in s.refs.items():
            first.refs.setdefault(fact, ref)
        if s.replies:
            first.refs["last_reply"] = s.replies[-1].ref
        if _RANK.get(s.client_cert, 9) < _RANK.get(first.client_cert, 9):
            first.client_cert, first.verdict_reason = s.client_cert, s.verdict_reason
    return out


def _new(log: LogText, ref: LogRef, time, role: LogRole, ident: str, text: str) -> LogSession:
    s = LogSession(log_format=LogFormat.EXIM, role=role, file=log.name,
                   session_id=f"{ident or 'conn'}@{ref.line}", start_time=time, end_time=time)
    s.lines.append((ref, time, text))
    return s


def _event_session(log: LogText, ref: LogRef, time, flag: str, ident: str,
                   rest: str) -> LogSession | None:
    host = _HOST.search(rest) or _HELO_ONLY.search(rest)
    if host is None:
        return None  # local delivery (no SMTP peer)
    role = LogRole.SERVER if flag == "<=" else LogRole.CLIENT
    s = _new(log, ref, time, role, ident, f"{flag} {rest}")
    groups = dict(host.groupdict())
    name = groups.get("name") or ""
    if name.startswith("(") and name.endswith(")"):  # H=(helo) [ip]: no reverse DNS name
        groups["helo"], groups["name"] = name[1:-1], None
    port = int(groups["port"]) if groups.get("port") else None
    if role == LogRole.SERVER:
        s.client_ip, s.client_port = groups["ip"], port
        s.ehlo = groups.get("helo") or None
    else:
        s.server_ip, s.server_port = groups["ip"], port
        s.server_host = groups.get("name")
    tls = _TLS.search(rest)
    cv = _CV.search(rest)
    dn = _DN.search(rest)
    if tls:
        s.starttls_requested = s.starttls_accepted = True
        s.tls_version, s.cipher = _version(tls["proto"]), tls["cipher"]
        s.refs["tls"] = ref
    peer = LoggedCert(subject=dn["dn"].replace('\\"', '"'), ref=ref, form="DN") if dn else None
    confirm = _CONFIRM.search(rest)
    error = _SMTP_ERROR.search(rest)
    if confirm:
        s.replies.append(LogReply(confirm["code"], confirm["c"], ref))
    if error:
        s.replies.append(LogReply(error["code"], error["reply"], ref))
    if s.replies:
        s.refs["last_reply"] = ref
    line = ref.line
    if role == LogRole.SERVER:
        s.client_certificate = peer
        proto = _PROTO.search(rest)
        if not tls:
            s.client_cert = ClientCert.NO_TLS if proto and not proto["p"].endswith(
                ("s", "sa")) else ClientCert.NOT_LOGGED
            s.verdict_reason = (f"the arrival (line {line}) was received without TLS "
                                f"(P={proto['p'] if proto else '?'})")
        elif peer is not None:
            s.client_cert = ClientCert.PRESENTED
            s.refs["client_certificate"] = ref
            s.verdict_reason = f"Exim logged the client certificate's DN= (line {line})"
        elif cv and cv["cv"] == "yes":
            s.client_cert = ClientCert.PRESENTED
            s.refs["client_certificate"] = ref
            s.verdict_reason = f"Exim verified the client certificate, CV=yes (line {line})"
        else:
            s.client_cert = ClientCert.NOT_LOGGED
            s.verdict_reason = (f"line {line} names no client certificate DN (log_selector "
                                "+tls_peerdn) and CV= does not tell whether one was sent")
    else:
        s.server_certificate = peer
        if tls:
            s.client_cert = ClientCert.NOT_LOGGED
            s.verdict_reason = (f"the delivery went over {s.tls_version} (line {line}), but "
                                "Exim's main log does not record whether it sent a client "
                                "certificate")
        elif flag == "==":
            s.client_cert = ClientCert.NOT_LOGGED
            s.verdict_reason = (f"the deferral (line {line}) does not record whether TLS or a "
                                "client certificate was used")
        else:
            s.client_cert = ClientCert.NO_TLS
            s.verdict_reason = f"the delivery (line {line}) carries no X= field: no TLS"
            s.starttls_requested = False
    return s


def _tls_error_session(log: LogText, ref: LogRef, time, message: str,
                       error: re.Match) -> LogSession:
    outgoing = error["dir"] == "to" or message.lstrip().startswith("H=")
    role = LogRole.CLIENT if outgoing else LogRole.SERVER
    s = _new(log, ref, time, role, "", message)
    where = _HOST.search(message) or _ADDR.search(error["who"] or "")
    if where:
        groups = where.groupdict()
        port = int(groups["port"]) if groups.get("port") else None
        if outgoing:
            s.server_ip, s.server_port, s.server_host = groups["ip"], port, groups.get("name")
        else:
            s.client_ip, s.client_port = groups["ip"], port
            s.ehlo = groups.get("helo") or None
    s.starttls_requested = s.starttls_accepted = True
    s.tls_error = f"{error['call']}: {error['why']}".strip(": ")
    s.refs["tls_error"] = ref
    s.client_cert = ClientCert.HANDSHAKE_FAILED
    s.verdict_reason = f"Exim logged a TLS error (line {ref.line}): {s.tls_error}"
    return s
