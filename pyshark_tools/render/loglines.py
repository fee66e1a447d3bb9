"""HTML pieces for server logs: the summary entry and a finding's log evidence (the log
lines themselves are drawn in the ladder, ``ladder.py``)."""

from __future__ import annotations

import html

import pandas as pd


def _e(value: object) -> str:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    return html.escape(str(value))


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
