"""Paths -> sessions of every log format, and the tables: ``read_logs``."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..core.findings import Options
from ..core.schema import EXIT_OK, EXIT_PROBLEMS, Severity
from ..errors import LogsUnreadable
from . import exchange, exim, postfix
from .inputs import LogText, read_texts
from .model import LogFormat, LogSession, LogWarning
from .rows import build


@dataclass
class LogReport:
    """Sessions from mail server logs, as tables (``log_sessions``, ``findings``)."""

    files: list[str]
    sessions: list[LogSession]
    log_sessions: pd.DataFrame
    findings: pd.DataFrame
    warnings: list[str] = field(default_factory=list)

    @property
    def problems(self) -> pd.DataFrame:
        sev = self.findings["severity"].astype(str)
        return self.findings[sev.isin([Severity.ERROR.value, Severity.WARNING.value])]

    def exit_code(self) -> int:
        return EXIT_PROBLEMS if len(self.problems) else EXIT_OK


def sniff(log: LogText) -> LogFormat | None:
    if exchange.looks_like_exchange(log.text):
        return LogFormat.EXCHANGE
    if exim.looks_like_exim(log.text):
        return LogFormat.EXIM
    if postfix.looks_like_postfix(log.text):
        return LogFormat.POSTFIX
    return None


def parse_text(log: LogText, fmt: LogFormat | None, year: int,
               warnings: list[LogWarning]) -> list[LogSession]:
    """The sessions of one decoded file (format sniffed unless given)."""
    found = fmt or sniff(log)
    if found is None:
        warnings.append(LogWarning(log.name, None, "not a mail server log this tool reads "
                                   "(Exchange protocol log, Postfix, Exim): skipped"))
        return []
    if found == LogFormat.EXCHANGE:
        return exchange.parse(log, warnings)
    if found == LogFormat.EXIM:
        return exim.parse(log, year, warnings)
    return postfix.parse(log, year, warnings)


def _year(path: Path) -> int:
    try:
        return dt.datetime.fromtimestamp(path.stat().st_mtime, tz=dt.UTC).year
    except OSError:
        return dt.datetime.now(tz=dt.UTC).year


def read_sessions(paths: Iterable[str | os.PathLike], *, log_format: str | None = None,
                  year: int | None = None) -> tuple[list[str], list[LogSession], list[str]]:
    """(files that held sessions, sessions, warning lines). ``year``: for syslog stamps
    without one (default: each file's modification year)."""
    fmt = LogFormat(log_format) if log_format else None
    texts, warnings = read_texts([os.fspath(p) for p in paths])
    sessions: list[LogSession] = []
    files = []
    exchange_logs: list[LogText] = []
    for log in texts:
        if (fmt or sniff(log)) == LogFormat.EXCHANGE:
            exchange_logs.append(log)  # read together: sessions span rolled-over files
            continue
        before = len(warnings)
        found = parse_text(log, fmt, year or _year(log.path), warnings)
        if found:
            files.append(log.name)
        elif len(warnings) == before:
            warnings.append(LogWarning(log.name, None, "holds no SMTP session"))
        sessions += found
    if exchange_logs:
        before = len(warnings)
        found, names = exchange.parse_files(exchange_logs, warnings)
        sessions += found
        files += names
        if len(warnings) == before:
            warnings += [LogWarning(log.name, None, "holds no SMTP session")
                         for log in exchange_logs if log.name not in names]
    sessions.sort(key=lambda s: (s.start_time is None,
                                 s.start_time if s.start_time is not None else 0, s.file,
                                 s.session_id))
    return files, sessions, [str(w) for w in warnings]


def read_logs(paths: str | os.PathLike | Iterable[str | os.PathLike], *,
              log_format: str | None = None, expect_cert_name: str | None = None,
              accepted_domains: Iterable[str] = (), sender_ips: Iterable[str] = (),
              year: int | None = None) -> LogReport:
    """Read mail server logs (files, folders, globs, ``.gz``) into one report.

    Raises ``LogsUnreadable`` when no input held a single session (the warnings say why).
    """
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    files, sessions, warnings = read_sessions(paths, log_format=log_format, year=year)
    if not sessions:
        raise LogsUnreadable("; ".join(warnings) or "no log given")
    options = Options(expect_cert_name=expect_cert_name,
                      accepted_domains=tuple(accepted_domains), sender_ips=tuple(sender_ips))
    table, findings = build(sessions, options)
    return LogReport(files=files, sessions=sessions, log_sessions=table, findings=findings,
                     warnings=warnings)
