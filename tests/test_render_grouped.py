"""The text report of a large capture: findings grouped by rule, ``--details`` for all."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from pyshark_tools.render import grouped, text

from .helpers import analyze_fixture


def _render(report, details: bool) -> str:
    out = io.StringIO()
    console = Console(file=out, width=200, markup=False, highlight=False, no_color=True,
                      soft_wrap=True)
    text.render_text(report, console, details)
    return out.getvalue()


@pytest.fixture(scope="module")
def mixed():
    return analyze_fixture("mixed-traffic", False, progress=False)


def test_findings_grouped_by_rule_above_the_threshold(mixed, monkeypatch) -> None:
    monkeypatch.setattr(text, "GROUP_ABOVE", 3)
    shown = _render(mixed, details=False)
    findings = mixed.findings
    assert "Findings by rule" in shown and "Stream " not in shown
    for rule, group in findings.groupby("id", observed=True):
        header = [line for line in shown.splitlines() if f"] {rule} " in line]
        assert len(header) == 1 and f"{len(group)} conversation(s)" in header[0]
        assert shown.count(f"Fix: {group.iloc[0]['fix']}") == 1
        for stream, frames in zip(group["stream"], group["evidence_frames"], strict=True):
            assert f"    {stream}: " in shown
            assert f"frames {', '.join(map(str, frames))}" in shown
    counts = mixed.conversations["client_cert"].astype(str).value_counts()
    for verdict, n in counts.items():
        assert f"{n}  {grouped.verdict_label(verdict)}" in shown


def test_details_and_small_captures_show_every_conversation(mixed, monkeypatch) -> None:
    assert len(mixed.conversations) <= grouped.GROUP_ABOVE
    small = _render(mixed, details=False)
    monkeypatch.setattr(text, "GROUP_ABOVE", 3)
    detailed = _render(mixed, details=True)
    assert small == detailed and "Findings by rule" not in detailed
    for stream in mixed.findings["stream"].unique():
        assert f"Stream {stream}:" in detailed
