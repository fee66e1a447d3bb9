"""Machine formats: JSON (all tables), CSV (one table), Markdown (for tickets and chats)."""

from __future__ import annotations

import io
import json

import pandas as pd

from ..report import Report
from .labels import verdict_label

TABLES = ("conversations", "certificates", "findings", "events")


def to_json(report: Report) -> str:
    return json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n"


def to_csv(report: Report, table: str = "conversations") -> str:
    df: pd.DataFrame = getattr(report, table)
    buffer = io.StringIO()
    out = df.copy()
    for name in out.columns:
        if isinstance(out[name].dtype, pd.DatetimeTZDtype):
            out[name] = out[name].map(lambda t: t.isoformat().replace("+00:00", "Z")
                                      if not pd.isna(t) else "")
    out.to_csv(buffer, index=False, lineterminator="\n")
    return buffer.getvalue()


def _md_cell(value: object) -> str:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    return str(value).replace("|", "\\|").replace("\n", "<br>")


def to_markdown(report: Report) -> str:
    lines = [f"# tls-smtp-report: {report.capture['file']}", ""]
    for warning in report.warnings:
        lines.append(f"> Warning: {warning}")
    lines += ["", "## Conversations", "",
              "| stream | client | server | host | TLS | client certificate | leaf | findings |",
              "|---|---|---|---|---|---|---|---|"]
    for _, c in report.conversations.iterrows():
        lines.append("| " + " | ".join(_md_cell(v) for v in (
            c["stream"], c["client"], c["server"], c["server_host"], c["tls_version"],
            verdict_label(c["client_cert"]), c["client_leaf_subject"], c["finding_ids"])) + " |")
    lines += ["", "## Findings", ""]
    if not len(report.findings):
        lines.append("No findings.")
    for _, f in report.findings.iterrows():
        lines += [f"### Stream {f['stream']}: {f['id']} {f['title']} ({f['severity']})", "",
                  f"{f['explanation']}", "",
                  f"- Evidence frames: {f['evidence_frames']}", f"- Fix: {f['fix']}", ""]
    return "\n".join(lines).rstrip() + "\n"
