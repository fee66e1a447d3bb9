"""The human report of a large capture: one block per problem, not per conversation.

Above :data:`GROUP_ABOVE` conversations the text report grows with the number of distinct
problems: a count of conversations per verdict, then each finding rule once (severity,
title, one explanation and the fix) followed by the conversations it affects, one plain line
each with the evidence frames to open in Wireshark. ``--details`` gives the per-conversation
report instead. Lines are joined and printed in one call: rich's per-line cost would
otherwise dominate a capture with thousands of conversations.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import pandas as pd
from rich.console import Console
from rich.text import Text

from .labels import SEVERITY_STYLES, VERDICT_STYLES, items, verdict_label

if TYPE_CHECKING:  # pragma: no cover
    from ..report import Report

#: More conversations than this: findings grouped by rule (``--details`` for everything).
GROUP_ABOVE = 20
_SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}


def _s(value: object) -> str:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    return str(value)


def render_grouped(report: Report, console: Console) -> None:
    """Verdict counts and findings grouped by rule (the header is the caller's)."""
    conv = report.conversations
    console.print()
    console.print(Text(f"{len(conv):,} conversations by client-certificate verdict", style="bold"))
    counts = conv["client_cert"].astype(str).value_counts()
    for verdict, n in counts.items():
        line = Text(f"  {n:>7,}  ")
        line.append(verdict_label(verdict), style=VERDICT_STYLES.get(str(verdict), ""))
        console.print(line)
    findings = report.findings
    if not len(findings):
        console.print(Text("No problems found.", style="green"))
        return
    ends = {int(s): (_s(c), _s(v)) for s, c, v in zip(conv["stream"], conv["client"],
                                                       conv["server"], strict=True)}
    rules = findings.assign(_order=findings["severity"].astype(str).map(_SEVERITY_ORDER))
    order = rules.groupby("id", observed=True, sort=False)["_order"].min().sort_values(
        kind="stable")
    console.print()
    console.print(Text(f"Findings by rule ({len(order)} distinct; --details for every "
                       "conversation)", style="bold"))
    by_rule = dict(tuple(findings.groupby("id", observed=True, sort=False)))
    for rule in order.index:
        group = by_rule[rule]
        first = group.iloc[0]
        sev = str(first["severity"])
        console.print()
        console.print(Text(f"[{sev.upper()}] {rule} {first['title']} -- "
                           f"{len(group):,} conversation(s)", style=SEVERITY_STYLES.get(sev, "")))
        console.print(f"  {first['explanation']} (example: stream {first['stream']})")
        console.print(f"  Fix: {first['fix']}")
        console.print("  Affected (tcp.stream: client -> server, evidence frames):")
        console.print("\n".join(_affected(group, ends)))
    sev_counts = findings["severity"].astype(str).value_counts()
    console.print()
    console.print(f"{len(conv):,} conversation(s); findings: "
                  + ", ".join(f"{sev_counts.get(s, 0):,} {s}" for s in
                              ("error", "warning", "info")))


def _affected(group: pd.DataFrame, ends: dict[int, tuple[str, str]]) -> Iterable[str]:
    for stream, frames in zip(group["stream"], group["evidence_frames"], strict=True):
        client, server = ends.get(int(stream), ("", ""))
        evidence = ", ".join(items(frames)) or "-"
        yield f"    {stream}: {client} -> {server}  frames {evidence}"
