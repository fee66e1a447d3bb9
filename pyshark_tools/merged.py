"""Reports of many captures: a conversation is (capture, stream), never the stream alone.

``analyze`` on a folder, a glob or a list merges the captures' reports into one whose tables
carry a ``capture`` column (stream and frame numbers stay those of each file, as Wireshark
shows them). Renderers and views that work on one capture at a time ask this module for the
part of a report that belongs to one capture: a ``Report`` of its own, with that capture's
own summary (``file`` is one path again), so that per-stream code never mixes two files'
stream 0.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:  # pragma: no cover
    from .report import Report

#: The column ``analyze`` adds to every table of a merged report.
CAPTURE_COLUMN = "capture"

_TABLES = ("conversations", "certificates", "findings", "events")


def is_merged(report: Report) -> bool:
    """Several captures in one report (its tables carry a ``capture`` column)."""
    return CAPTURE_COLUMN in report.conversations.columns or bool(report.capture.get("files"))


def capture_files(report: Report) -> list[str]:
    """The captures of a report in their order (one entry for a single-capture report)."""
    files = report.capture.get("files")
    if files:
        return [str(f) for f in files]
    return [str(report.capture["file"])]


def resolve_capture(report: Report, capture: str | None) -> str:
    """The full capture path ``capture`` names in a merged report: the path as the report
    lists it, or a file name when only one capture has it."""
    files = capture_files(report)
    if capture is None:
        if len(files) == 1:
            return files[0]
        raise KeyError(f"this report merges {len(files)} captures: say which one "
                       f"(capture=...; one of {', '.join(files)})")
    text = str(capture)
    if text in files:
        return text
    by_name = [f for f in files if Path(f).name == text or str(Path(f)) == str(Path(text))]
    if len(by_name) == 1:
        return by_name[0]
    raise KeyError(f"no capture {text!r} in this report (captures: {', '.join(files)})")


def captures_with_stream(report: Report, stream: int) -> list[str]:
    """The captures of a merged report that hold a conversation with this tcp.stream."""
    conv = report.conversations
    if CAPTURE_COLUMN not in conv.columns:
        return capture_files(report) if (conv["stream"] == stream).any() else []
    return list(dict.fromkeys(conv.loc[conv["stream"] == stream, CAPTURE_COLUMN].astype(str)))


def one_capture(report: Report, capture: str) -> Report:
    """The part of a merged report that comes from one capture, as a report of its own."""
    if not is_merged(report):
        return report
    files = capture_files(report)
    path = resolve_capture(report, capture)
    infos = report.capture.get("captures") or []
    info = dict(infos[files.index(path)]) if len(infos) == len(files) else dict(report.capture)
    info.pop("captures", None)
    info.pop("files", None)
    info["file"] = path
    tables = {}
    for name in _TABLES:
        df: pd.DataFrame = getattr(report, name)
        if CAPTURE_COLUMN in df.columns:
            df = df[df[CAPTURE_COLUMN].astype(str) == path]
            df = df.drop(columns=[CAPTURE_COLUMN]).reset_index(drop=True)
        tables[name] = df
    return replace(report, capture=info, warnings=list(info.get("warnings") or []), **tables)


def per_capture(report: Report) -> list[Report]:
    """A merged report split into one report per capture, in the report's order."""
    if not is_merged(report):
        return [report]
    return [one_capture(report, path) for path in capture_files(report)]
