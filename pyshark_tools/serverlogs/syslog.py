"""Log lines of Unix mail servers -> (time, program, pid, message) records.

Framings read: classic syslog (``Mar  2 09:15:00 host prog[pid]: msg``, the year comes from
the caller), RFC 3339 syslog (``2026-03-02T09:15:00.123456+00:00 host prog[pid]: msg``, also
``journalctl -o short-iso``), RFC 5424 (``<22>1 2026-... host prog pid - - msg``), and the
journal's export formats (``journalctl -o export``: KEY=value blocks; ``-o json``: one object a
line). Exim's own main log has no syslog header: ``exim.py`` reads it directly.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass

import pandas as pd

from .inputs import LogText, numbered_lines
from .model import LogRef, LogWarning

_PROGRAM = r"(?P<prog>[\w./-]+?)(?:\[(?P<pid>\d+)\])?:\s"
_CLASSIC = re.compile(r"^(?P<mon>[A-Z][a-z]{2})\s+(?P<day>\d{1,2})\s(?P<hms>\d\d:\d\d:\d\d)"
                      r"(?P<frac>\.\d+)?\s+(?P<host>\S+)\s+" + _PROGRAM + r"(?P<msg>.*)$")
_ISO = re.compile(r"^(?P<ts>\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d+)?"
                  r"(?:Z|[+-]\d\d:?\d\d)?)\s+(?P<host>\S+)\s+" + _PROGRAM + r"(?P<msg>.*)$")
_RFC5424 = re.compile(r"^<\d{1,3}>1\s(?P<ts>\S+)\s(?P<host>\S+)\s(?P<prog>\S+)\s(?P<pid>\S+)\s"
                      r"\S+\s(?:-|\[.*?\])\s?(?P<msg>.*)$")
_MONTHS = {m: i for i, m in enumerate(
    ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"], 1)}


@dataclass
class Record:
    ref: LogRef
    time: pd.Timestamp | None
    program: str  # "postfix/smtp", "exim4" ...
    pid: str
    message: str


def _utc(text: str) -> pd.Timestamp | None:
    try:
        stamp = pd.Timestamp(text)
    except (ValueError, TypeError):
        return None
    if pd.isna(stamp):
        return None
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def is_journal_export(text: str) -> bool:
    head = text[:4096]
    return "__REALTIME_TIMESTAMP=" in head and "\nMESSAGE=" in head


def is_journal_json(text: str) -> bool:
    return text.lstrip().startswith("{") and '"__REALTIME_TIMESTAMP"' in text[:4096]


def _journal_time(value: str) -> pd.Timestamp | None:
    try:
        return pd.Timestamp(int(value), unit="us", tz="UTC")
    except (ValueError, OverflowError):
        return None


def _journal_export(log: LogText) -> Iterator[Record]:
    entry: dict[str, str] = {}
    message_line = 0
    for number, line in numbered_lines(log.text + "\n"):
        if not line:
            if "MESSAGE" in entry:
                yield _journal_record(log, entry, message_line)
            entry = {}
            continue
        key, sep, value = line.partition("=")
        if sep:
            entry[key] = value
            if key == "MESSAGE":
                message_line = number


def _journal_record(log: LogText, entry: dict[str, str], number: int) -> Record:
    program = entry.get("SYSLOG_IDENTIFIER") or entry.get("_COMM") or ""
    pid = entry.get("SYSLOG_PID") or entry.get("_PID") or ""
    return Record(LogRef(log.name, number), _journal_time(entry.get("__REALTIME_TIMESTAMP", "")),
                  program, pid, entry.get("MESSAGE", ""))


def _journal_json(log: LogText, warnings: list[LogWarning]) -> Iterator[Record]:
    for number, line in numbered_lines(log.text):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            warnings.append(LogWarning(log.name, number, "journal JSON line cannot be read "
                                       "(cut short?): skipped"))
            continue
        if not isinstance(entry, dict) or not isinstance(entry.get("MESSAGE"), str):
            continue
        yield _journal_record(log, {k: str(v) for k, v in entry.items()}, number)


def records(log: LogText, year: int, warnings: list[LogWarning]) -> Iterator[Record]:
    """Every syslog-framed line of one file; lines in no known framing are counted once."""
    if is_journal_export(log.text):
        yield from _journal_export(log)
        return
    if is_journal_json(log.text):
        yield from _journal_json(log, warnings)
        return
    unknown = 0
    first_unknown = 0
    for number, line in numbered_lines(log.text):
        if not line.strip():
            continue
        ref = LogRef(log.name, number)
        match = _ISO.match(line)
        if match:
            yield Record(ref, _utc(match["ts"]), match["prog"], match["pid"] or "", match["msg"])
            continue
        match = _CLASSIC.match(line)
        if match:
            stamp = _utc(f"{year}-{_MONTHS.get(match['mon'], 1):02d}-{int(match['day']):02d} "
                         f"{match['hms']}{match['frac'] or ''}")
            yield Record(ref, stamp, match["prog"], match["pid"] or "", match["msg"])
            continue
        match = _RFC5424.match(line)
        if match:
            pid = match["pid"] if match["pid"] != "-" else ""
            yield Record(ref, _utc(match["ts"]), match["prog"], pid, match["msg"])
            continue
        unknown += 1
        first_unknown = first_unknown or number
    if unknown:
        warnings.append(LogWarning(log.name, first_unknown, f"{unknown} line(s) in no syslog "
                                   "format this tool reads (first here): skipped"))
