"""Postfix ``postfix/smtp`` (sending) and ``postfix/smtpd`` (receiving) lines -> sessions.

Postfix logs one summary line per TLS session (``... TLS connection established to
host[ip]:25: TLSv1.3 with cipher ...``). Since Postfix 3.4 a TLS 1.3 line names the signature
algorithms, and ``client-signature`` appears only when the client signed with a certificate;
TLS 1.2 lines, older versions and ``smtp_tls_loglevel = 0`` do not record the client's
certificate (the receiving smtpd still says Anonymous / Untrusted / Trusted / Verified).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..core.schema import ClientCert
from .inputs import LogText
from .model import LogFormat, LoggedCert, LogReply, LogRole, LogSession, LogWarning
from .syslog import Record, records

_HOSTADDR = r"(?P<host>[^\s\[]*)\[(?P<ip>[^\]]+)\](?::(?P<port>\d+))?"
_TLS = re.compile(r"^(?P<trust>Anonymous|Untrusted|Trusted|Verified) TLS connection "
                  r"established (?P<dir>to|from) " + _HOSTADDR + r": (?P<proto>TLSv[\d.]+|SSLv\d)"
                  r" with cipher (?P<cipher>\S+)(?: \([^)]*\))?(?P<rest>.*)$")
_CONNECT = re.compile(r"^connect from " + _HOSTADDR)
_DISCONNECT = re.compile(r"^disconnect from " + _HOSTADDR + r"(?P<counts>.*)$")
_DELIVERY = re.compile(r"^(?P<qid>\w+): to=<(?P<rcpt>[^>]*)>,.*?relay=(?P<relay>[^,]+),.*?"
                       r"status=(?P<status>\w+)(?: \((?P<detail>.*)\))?$")
_RELAY = re.compile(r"^(?P<host>[^\s\[]*)\[(?P<ip>[^\]]+)\](?::(?P<port>\d+))?$")
_SAID = re.compile(r"said: (?P<reply>(?P<code>[2-5]\d\d)[ -].*?)(?: \(in reply to .*\))?$")
_QUEUED = re.compile(r"^(?P<code>[2-5]\d\d)[ -]")
_REJECT = re.compile(r"^(?:NOQUEUE|\w+): reject: \S+ from " + _HOSTADDR + r": "
                     r"(?P<reply>(?P<code>[45]\d\d) .*?);(?P<rest>.*)$")
_HELO = re.compile(r"helo=<(?P<helo>[^>]*)>")
_HANDSHAKE_ERROR = re.compile(r"^SSL_(?:connect|accept) error (?:to|from) " + _HOSTADDR
                              + r": ?(?P<why>.*)$")
_PEER_CERT = re.compile(r"^" + _HOSTADDR + r": subject_CN=(?P<cn>[^,]*), "
                        r"issuer(?:_CN)?=(?P<issuer>[^,]*)(?:, fingerprint=(?P<fp>[0-9A-Fa-f:]+))?")
_VERSION = {"TLSv1": "TLS 1.0", "TLSv1.1": "TLS 1.1", "TLSv1.2": "TLS 1.2",
            "TLSv1.3": "TLS 1.3", "SSLv3": "SSL 3.0"}


_SNIFF = re.compile(r"postfix(?:-[\w.-]+)?/(?:smtpd?|postscreen)(?:\[\d+\]:|\s\d+\s|$)|"
                    r"SYSLOG_IDENTIFIER\W+postfix(?:-[\w.-]+)?/", re.MULTILINE)


def looks_like_postfix(text: str) -> bool:
    """A syslog line (``postfix/smtp[123]:``, RFC 5424 ``postfix/smtp 123``) or a journal
    entry of Postfix's SMTP client or server."""
    return _SNIFF.search(text[:65536]) is not None


@dataclass
class _Open:
    session: LogSession
    rest: str = ""  # the TLS line's tail: key-exchange ... client-signature ...
    trust: str = ""


def _port(text: str | None) -> int | None:
    return int(text) if text else None


def parse(log: LogText, year: int, warnings: list[LogWarning]) -> list[LogSession]:
    out: list[LogSession] = []
    open_by_pid: dict[tuple[str, str], _Open] = {}
    seen_postfix = False
    for rec in records(log, year, warnings):
        program = rec.program.split("/")[-1] if "postfix" in rec.program else ""
        if program not in ("smtp", "smtpd"):
            continue
        seen_postfix = True
        key = (program, rec.pid)
        role = LogRole.CLIENT if program == "smtp" else LogRole.SERVER
        message = rec.message
        if role == LogRole.SERVER and (m := _CONNECT.match(message)):
            _close(open_by_pid.pop(key, None), out)
            s = _new(log, rec, role)
            s.client_ip, s.client_port = m["ip"], _port(m["port"])
            s.refs["connect"] = rec.ref
            open_by_pid[key] = _Open(s)
            continue
        if m := _TLS.match(message):
            current = open_by_pid.get(key)
            if role == LogRole.CLIENT:
                _close(open_by_pid.pop(key, None), out)
                s = _new(log, rec, role)
                s.server_host, s.server_ip, s.server_port = m["host"], m["ip"], _port(m["port"])
                current = open_by_pid[key] = _Open(s)
            elif current is None:
                s = _new(log, rec, role)
                s.client_ip, s.client_port = m["ip"], _port(m["port"])
                current = open_by_pid[key] = _Open(s)
            s = current.session
            _line(s, rec)
            s.starttls_requested = s.starttls_accepted = True
            s.tls_version = _VERSION.get(m["proto"], m["proto"])
            s.cipher = m["cipher"]
            s.refs["tls"] = rec.ref
            current.rest, current.trust = m["rest"], m["trust"]
            continue
        current = open_by_pid.get(key)
        if m := _HANDSHAKE_ERROR.match(message):
            if current is None or role == LogRole.CLIENT:
                _close(open_by_pid.pop(key, None), out)
                s = _new(log, rec, role)
                if role == LogRole.CLIENT:
                    s.server_host, s.server_ip, s.server_port = (m["host"], m["ip"],
                                                                 _port(m["port"]))
                else:
                    s.client_ip, s.client_port = m["ip"], _port(m["port"])
                current = open_by_pid[key] = _Open(s)
            s = current.session
            _line(s, rec)
            s.starttls_requested = s.starttls_accepted = True
            s.tls_error = m["why"] or "handshake failed"
            s.refs["tls_error"] = rec.ref
            continue
        if m := _PEER_CERT.match(message):
            if current is not None:
                s = current.session
                _line(s, rec)
                cert = LoggedCert(subject=f"CN={m['cn']}", issuer=f"CN={m['issuer']}",
                                  ref=rec.ref, form="subject_CN")
                fingerprint = (m["fp"] or "").replace(":", "").upper()
                if len(fingerprint) == 40:
                    cert.thumbprint = fingerprint
                if role == LogRole.CLIENT:
                    s.server_certificate = cert
                else:
                    s.client_certificate = cert
            continue
        if role == LogRole.CLIENT and (m := _DELIVERY.match(message)):
            relay = _RELAY.match(m["relay"].strip())
            if current is None or (relay and current.session.server_ip != relay["ip"]):
                _close(open_by_pid.pop(key, None), out)
                s = _new(log, rec, role)
                if relay:
                    s.server_host, s.server_ip, s.server_port = (relay["host"], relay["ip"],
                                                                 _port(relay["port"]))
                current = open_by_pid[key] = _Open(s)
            s = current.session
            _line(s, rec)
            detail = m["detail"] or ""
            said = _SAID.search(detail)
            queued = _QUEUED.match(detail)
            if said:
                s.replies.append(LogReply(said["code"], said["reply"], rec.ref))
            elif queued:
                s.replies.append(LogReply(queued["code"], detail, rec.ref))
            elif "Cannot start TLS" in detail or "TLS is required" in detail:
                s.tls_error = s.tls_error or detail
                s.refs.setdefault("tls_error", rec.ref)
            continue
        if current is None:
            continue
        s = current.session
        if m := _REJECT.match(message):
            _line(s, rec)
            s.replies.append(LogReply(m["code"], m["reply"], rec.ref))
            helo = _HELO.search(m["rest"])
            if helo and s.ehlo is None:
                s.ehlo = helo["helo"]
        elif m := _DISCONNECT.match(message):
            _line(s, rec)
            counts = m["counts"]
            starttls = re.search(r"\bstarttls=(\d+)(?:/(\d+))?", counts)
            if starttls:
                s.starttls_requested = True
                s.starttls_accepted = starttls[1] != "0" or s.starttls_accepted
            elif s.tls_version is None:
                s.starttls_requested = False
            s.refs["disconnect"] = rec.ref
            _close(open_by_pid.pop(key, None), out)
        elif re.match(r"^\w+: client=", message):
            _line(s, rec)
    for current in open_by_pid.values():
        _close(current, out)
    if not seen_postfix:
        warnings.append(LogWarning(log.name, None, "no postfix/smtp or postfix/smtpd lines"))
    out.sort(key=lambda s: (s.start_time is None, s.start_time, s.session_id))
    return out


def _new(log: LogText, rec: Record, role: LogRole) -> LogSession:
    s = LogSession(log_format=LogFormat.POSTFIX, role=role, file=log.name,
                   session_id=f"{rec.program}[{rec.pid}]@{rec.ref.line}")
    _line(s, rec)
    return s


def _line(s: LogSession, rec: Record) -> None:
    if s.lines and s.lines[-1][0] == rec.ref:
        return
    s.lines.append((rec.ref, rec.time, rec.message))
    if rec.time is not None:
        s.start_time = rec.time if s.start_time is None else min(s.start_time, rec.time)
        s.end_time = rec.time if s.end_time is None else max(s.end_time, rec.time)


def _close(current: _Open | None, out: list[LogSession]) -> None:
    if current is None:
        return
    s = current.session
    if s.replies:
        s.refs["last_reply"] = s.replies[-1].ref
    if s.client_certificate is not None and s.client_certificate.ref is not None:
        s.refs["client_certificate"] = s.client_certificate.ref
    rest = current.rest
    tls = s.refs.get("tls")
    if s.tls_error:
        s.client_cert = ClientCert.HANDSHAKE_FAILED
        line = s.refs.get("tls_error")
        s.verdict_reason = f"the TLS handshake failed: {s.tls_error}" + (
            f" (line {line.line})" if line else "")
    elif tls is None:
        if s.starttls_requested is False:
            s.client_cert = ClientCert.NO_TLS
            s.verdict_reason = (f"Postfix counted no STARTTLS command for this session "
                                f"(line {s.refs['disconnect'].line})")
        else:
            s.client_cert = ClientCert.NOT_LOGGED
            s.verdict_reason = ("the log has no TLS line for this session (smtp_tls_loglevel / "
                                "smtpd_tls_loglevel 0, or plain-text delivery)")
    elif "client-signature" in rest or (s.role == LogRole.SERVER
                                        and current.trust != "Anonymous"):
        s.client_cert = ClientCert.PRESENTED
        how = ("names a client-signature" if "client-signature" in rest
               else f"calls the client certificate {current.trust}")
        s.verdict_reason = f"Postfix's TLS line (line {tls.line}) {how}"
        if s.client_certificate is None:
            s.client_certificate = LoggedCert(ref=tls, form="signature")
            s.refs["client_certificate"] = tls
    elif s.role == LogRole.SERVER:
        s.client_cert = ClientCert.EMPTY
        s.verdict_reason = (f"Postfix's TLS line (line {tls.line}) says Anonymous: the client "
                            "presented no certificate (Postfix asks for one only with "
                            "smtpd_tls_ask_ccert = yes)")
    elif "server-signature" in rest or "key-exchange" in rest:
        s.client_cert = ClientCert.EMPTY
        s.verdict_reason = (f"Postfix's TLS line (line {tls.line}) names the signatures but no "
                            "client-signature: the client presented no certificate (the log "
                            "does not show whether the server asked)")
    else:
        s.client_cert = ClientCert.NOT_LOGGED
        s.verdict_reason = (f"Postfix's TLS line (line {tls.line}) names no signature "
                            "algorithms (Postfix names them for TLS 1.3 only, since 3.4): it "
                            "does not record the client certificate")
    out.append(s)
