"""What a mail server's log says about one SMTP session, in the conversations' vocabulary.

Every parser (Exchange protocol log, Postfix, Exim) fills the same ``LogSession``; every fact
keeps the log line it came from (``LogRef``), because those lines are the evidence.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum

import pandas as pd

from ..core.schema import ClientCert


class LogFormat(StrEnum):
    """The log formats ``read_logs`` understands (``--format`` of ``logs``)."""

    EXCHANGE = "exchange"  # Exchange Server SMTP protocol log (SmtpSend / SmtpReceive)
    POSTFIX = "postfix"  # postfix/smtp and postfix/smtpd lines (syslog, journal)
    EXIM = "exim"  # Exim main log


class LogRole(StrEnum):
    """Which end of the SMTP session wrote the log."""

    CLIENT = "client"  # the sending side (Exchange SmtpSend, postfix/smtp, Exim deliveries)
    SERVER = "server"  # the receiving side (Exchange SmtpReceive, postfix/smtpd, Exim <=)


@dataclass(frozen=True)
class LogRef:
    """One line of one log file: the evidence a finding points at."""

    file: str  # the file's name as the user gave it (folder part dropped for display)
    line: int  # 1-based, as an editor numbers it

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass
class LoggedCert:
    """A certificate as the log names it (no DER: only what the log line carries)."""

    subject: str | None = None
    issuer: str | None = None
    serial: str | None = None
    thumbprint: str | None = None  # SHA-1, upper-case hex: Get-ExchangeCertificate's value
    not_before: pd.Timestamp | None = None
    not_after: pd.Timestamp | None = None
    sans: tuple[str, ...] = ()
    ref: LogRef | None = None
    form: str = ""  # "block" (several * lines), "line" (one line), "dn" (Exim DN=) ...

    @property
    def cn(self) -> str | None:
        for part in split_dn(self.subject or ""):
            key, _, value = part.partition("=")
            if key.strip().upper() == "CN":
                return value.strip()
        return None

    @property
    def names(self) -> list[str]:
        """CN and SANs, the names a connector's TlsSenderCertificateName is matched against."""
        out = [self.cn] if self.cn else []
        return out + [s.split(":", 1)[-1].strip() for s in self.sans if s.strip()]


def split_dn(dn: str) -> list[str]:
    """``CN=a, O=b, C=c`` or ``CN=a,O=b`` -> its attribute=value parts (quotes respected)."""
    parts: list[str] = []
    current = ""
    quoted = False
    for ch in dn:
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted and not current.endswith("\\"):
            parts.append(current.strip())
            current = ""
            continue
        current += ch
    if current.strip():
        parts.append(current.strip())
    return parts


@dataclass
class LogReply:
    code: str  # "550"
    text: str  # the whole reply line, e.g. "550 5.7.64 TenantAttribution; Relay Access Denied"
    ref: LogRef


@dataclass
class LogSession:
    """One SMTP session as one log recorded it."""

    log_format: LogFormat
    role: LogRole
    file: str
    session_id: str
    connector: str | None = None
    client_ip: str | None = None
    client_port: int | None = None
    server_ip: str | None = None
    server_port: int | None = None
    start_time: dt.datetime | None = None  # UTC (pd.Timestamp or datetime)
    end_time: dt.datetime | None = None
    banner: str | None = None
    server_host: str | None = None
    ehlo: str | None = None
    starttls_offered: bool | None = None
    starttls_requested: bool | None = None
    starttls_accepted: bool | None = None
    tls_version: str | None = None
    cipher: str | None = None
    tls_error: str | None = None  # NoCredentials, UnknownCredentials, SocketError, or a text
    client_cert: ClientCert = ClientCert.NOT_LOGGED
    verdict_reason: str = ""
    client_certificate: LoggedCert | None = None
    server_certificate: LoggedCert | None = None
    replies: list[LogReply] = field(default_factory=list)
    #: evidence lines by fact: "connect", "banner", "ehlo_reply", "starttls", "tls",
    #: "client_certificate", "tls_error", "last_reply" ...
    refs: dict[str, LogRef] = field(default_factory=dict)
    #: every line of the session, (ref, time, text), for showing beside the packets
    lines: list[tuple[LogRef, dt.datetime | None, str]] = field(default_factory=list)

    @property
    def first_ref(self) -> LogRef | None:
        return self.lines[0][0] if self.lines else None

    @property
    def exchange_online(self) -> bool:
        host = (self.server_host or "").lower().rstrip(".")
        return host.endswith(".mail.protection.outlook.com") or host.endswith(
            ".mail.protection.outlook.de")


@dataclass
class LogWarning:
    """One clear line about a damaged or unreadable input (the rest is still read)."""

    file: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.message}"


def endpoint(ip: str | None, port: int | None) -> str | None:
    """``ip:port``, ``[v6]:port``, as the conversations table writes endpoints."""
    if not ip:
        return None
    host = f"[{ip}]" if ":" in ip else ip
    return f"{host}:{port}" if port is not None else host


def parse_endpoint(text: str | None) -> tuple[str | None, int | None]:
    """``1.2.3.4:25``, ``[2001:db8::1]:25`` or ``2001:db8::1:25`` -> (ip, port)."""
    if not text:
        return None, None
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.lstrip(":")
        return host, int(port) if port.isdigit() else None
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        return text, None
    return host, int(port)
