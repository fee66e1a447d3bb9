"""HTML: the server log lines of a conversation, beside its ladder of packets."""

from __future__ import annotations

import html

import pandas as pd

from ..report import Report

CSS = """
.tsr .with-log { display: flex; gap: 16px; align-items: flex-start; flex-wrap: wrap; }
.tsr table.log-lines td { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace;
  font-size: 12px; }
.tsr table.log-lines td.text { max-width: 520px; overflow-wrap: anywhere; }
"""


def _e(value: object) -> str:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    return html.escape(str(value))


def log_lines_html(report: Report, stream: int) -> str:
    """A table of the joined log lines (capture clock), or "" when no log joined."""
    lines = report.log_lines
    if not len(lines):
        return ""
    mine = lines[lines["stream"] == stream]
    if not len(mine):
        return ""
    rows = []
    for _, row in mine.iterrows():
        when = row["capture_time"]
        stamp = f"{pd.Timestamp(when):%H:%M:%S.%f}"[:-3] if pd.notna(when) else ""
        rows.append(f'<tr><td class="num">{stamp}</td><td>{_e(row["line"])}</td>'
                    f'<td class="text">{_e(row["text"])}</td></tr>')
    return ('<table class="log-lines"><tr><th>time (capture clock)</th><th>server log line</th>'
            f"<th>logged</th></tr>{''.join(rows)}</table>")


def evidence_html(finding: pd.Series) -> str:
    lines = finding.get("evidence_lines")
    if lines is None or (not isinstance(lines, str)) or not lines:
        return ""
    return f"<p>Evidence: server log {_e(lines)}</p>"


def logs_summary_html(logs: dict) -> str:
    """The capture summary's "Server logs" entry: files, joined sessions, clock skew."""
    skews = ", ".join(f"{skew:+.2f} s in <code>{_e(name)}</code>"
                      for name, skew in (logs.get("skew_s_by_file") or {}).items())
    files = ", ".join(f"<code>{_e(name)}</code>" for name in logs.get("files", [])) or "none"
    text = f"{files}: {logs['sessions']} session(s), {logs['joined']} joined to a conversation"
    if skews:
        text += f" (clock skew {skews}; tolerance &plusmn;{logs['tolerance_s']:g} s)"
    return text
