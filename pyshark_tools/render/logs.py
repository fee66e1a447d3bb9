"""``tls-smtp-report logs``: the log sessions as text, JSON or CSV."""

from __future__ import annotations

import io
import json

import pandas as pd
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..serverlogs.reader import LogReport
from .labels import SEVERITY_STYLES, VERDICT_STYLES, verdict_label


def _s(value: object) -> str:
    if value is None or (not isinstance(value, str | list | dict) and pd.isna(value)):
        return ""
    return str(value)


def _when(value: object) -> str:
    if value is None or pd.isna(value):
        return "time not logged"
    return f"{pd.Timestamp(value):%Y-%m-%d %H:%M:%S} UTC"


def render_text(report: LogReport, console: Console) -> None:
    console.print(Text(f"Server logs: {', '.join(report.files)}", style="bold"))
    for warning in report.warnings:
        console.print(Text(f"warning: {warning}", style="yellow"))
    table = Table(title="Log sessions", header_style="bold")
    for name in ("#", "log", "client", "server", "TLS", "client certificate", "findings"):
        table.add_column(name, overflow="fold")
    for _, row in report.log_sessions.iterrows():
        verdict = _s(row["client_cert"])
        server = _s(row["server_host"]) or _s(row["server"])
        if row["exchange_online"]:
            server += " (Exchange Online)"
        leaf = _s(row["client_leaf_subject"])
        table.add_row(
            _s(row["session"]), f"{row['log_format']} {row['role']}\n{_s(row['line_first'])}",
            _s(row["client"]) or _s(row["ehlo"]), server,
            _s(row["tls_version"]) or _s(row["tls_error"]) or ("none" if verdict == "no_tls"
                                                               else ""),
            Text(verdict_label(verdict) + (f"\n{leaf}" if leaf else ""),
                 style=VERDICT_STYLES.get(verdict, "")),
            Text(_s(row["finding_ids"]) or "-",
                 style=SEVERITY_STYLES.get(_s(row["severity"]), "")))
    console.print(table)
    findings = report.findings
    if not len(findings):
        console.print(Text("No problems found.", style="green"))
        return
    sessions = report.log_sessions.set_index("session")
    for session, group in findings.groupby("session", sort=True):
        row = sessions.loc[session]
        console.print()
        console.print(Text(f"Session {session}: {row['file']} {row['session_id']} "
                           f"({_s(row['client']) or '?'} -> {_s(row['server']) or '?'}, "
                           f"{_when(row['start_time'])})", style="bold"))
        console.print(f"  client certificate: {verdict_label(row['client_cert'])}: "
                      f"{_s(row['verdict_reason'])}")
        if _s(row["client_leaf_subject"]):
            thumb = _s(row["client_leaf_sha1"])
            console.print(f"  client leaf: {row['client_leaf_subject']}"
                          + (f" (thumbprint {thumb})" if thumb else ""))
        for _, f in group.iterrows():
            sev = str(f["severity"])
            console.print(Text(f"  [{sev.upper()}] {f['id']} {f['title']}",
                               style=SEVERITY_STYLES.get(sev, "")))
            console.print(f"    {f['explanation']}", highlight=False)
            if f["evidence_lines"]:
                console.print(f"    Evidence: {f['evidence_lines']}", highlight=False)
            console.print(f"    Fix: {f['fix']}", highlight=False)
    counts = findings["severity"].astype(str).value_counts()
    console.print()
    console.print(f"{len(report.log_sessions)} session(s); findings: "
                  + ", ".join(f"{counts.get(s, 0)} {s}" for s in ("error", "warning", "info")))


def _records(df: pd.DataFrame) -> list[dict[str, object]]:
    out = []
    for row in df.astype(object).to_dict(orient="records"):
        clean = {}
        for key, value in row.items():
            if isinstance(value, pd.Timestamp):
                value = value.isoformat().replace("+00:00", "Z")
            elif value is not None and not isinstance(value, str | bool | int | float):
                value = value.item() if hasattr(value, "item") else str(value)
            if value is not None and not isinstance(value, str) and pd.isna(value):
                value = None
            clean[key] = value
        out.append(clean)
    return out


def to_json(report: LogReport) -> str:
    doc = {"logs": report.files, "warnings": report.warnings,
           "sessions": _records(report.log_sessions), "findings": _records(report.findings)}
    return json.dumps(doc, indent=2) + "\n"


def to_csv(report: LogReport, table: str) -> str:
    df = report.findings if table == "findings" else report.log_sessions
    buffer = io.StringIO()
    df.to_csv(buffer, index=False, date_format="%Y-%m-%dT%H:%M:%S.%fZ")
    return buffer.getvalue()
