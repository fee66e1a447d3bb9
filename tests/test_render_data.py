"""The column-at-a-time JSON/CSV writers must give exactly what a plain cell-by-cell
conversion followed by ``json.dumps(indent=2)`` / ``DataFrame.to_csv`` gives."""

from __future__ import annotations

import io
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from pyshark_tools.core.schema import SCHEMA_VERSION
from pyshark_tools.core.user_tables import LIST_COLUMNS
from pyshark_tools.forking import can_fork
from pyshark_tools.render import data
from pyshark_tools.report import Report

from .helpers import analyze_fixture


def reference_cell(value: Any) -> Any:
    """The obvious per-cell conversion the fast path replaces."""
    if isinstance(value, list | tuple):
        return value
    if value is None or pd.isna(value):
        return None
    if isinstance(value, pd.Timestamp | datetime):
        return pd.Timestamp(value).isoformat().replace("+00:00", "Z")
    return value.item() if hasattr(value, "item") else value


def reference_jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: reference_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [reference_jsonable(v) for v in value]
    if isinstance(value, datetime | pd.Timestamp):
        return pd.Timestamp(value).isoformat().replace("+00:00", "Z")
    return str(value) if isinstance(value, Path) else value


def reference_dict(report: Report) -> dict[str, Any]:
    return {"schema_version": SCHEMA_VERSION, "capture": reference_jsonable(report.capture)} | {
        name: [{k: reference_cell(v) for k, v in row.items()}
               for row in getattr(report, name).astype(object).to_dict(orient="records")]
        for name in data.JSON_TABLES}


def reference_csv(df: pd.DataFrame, table: str = "") -> str:
    out = df.copy()
    for (name, column), separator in LIST_COLUMNS.items():  # lists: one cell, as text
        if name == table and column in out.columns:
            out[column] = out[column].map(
                lambda v, sep=separator: sep.join(str(x) for x in v) if isinstance(v, list) else v)
    for name in out.columns:
        if isinstance(out[name].dtype, pd.DatetimeTZDtype):
            out[name] = out[name].map(
                lambda t: "" if pd.isna(t) else t.isoformat().replace("+00:00", "Z"))
    buffer = io.StringIO()
    out.to_csv(buffer, index=False, lineterminator="\n")
    return buffer.getvalue()


def assert_same_as_reference(report: Report) -> None:
    expected = reference_dict(report)
    assert report.to_dict() == expected
    assert data.to_json(report) == json.dumps(expected, indent=2, ensure_ascii=False) + "\n"
    for table in data.TABLES:
        assert data.to_csv(report, table) == reference_csv(getattr(report, table), table), table


def odd_report() -> Report:
    """Every kind of cell the tables can hold, missing values in every dtype included."""
    utc = pd.to_datetime(["2026-03-02T09:00:00.178472Z", "2026-03-02T10:00:00Z", None],
                         utc=True, format="ISO8601")
    conversations = pd.DataFrame({
        "stream": pd.array([0, None, 2], dtype="Int64"),
        "port": np.array([25, 587, 465], dtype=np.int64),
        "big": np.array([2**63, 1, 0], dtype=np.uint64),
        "one_zero": pd.array([1, 0, None], dtype="Int64"),  # 1 == True must stay 1
        "ratio": [0.5, np.nan, np.inf],
        "share": pd.array([1.0, None, 0.25], dtype="Float64"),
        "flag": np.array([True, False, True]),
        "maybe": pd.array([True, None, False], dtype="boolean"),
        "host": pd.array(['mx "a"\n\t\u00e9\u2028', None, "%s %%"], dtype="str"),
        "name": pd.array(["x", pd.NA, "x"], dtype="string"),
        "verdict": pd.Categorical(["ok", None, "ok"]),
        "codes": pd.Categorical([250, 220, None]),
        "start_time": utc,
        "naive": np.array(["2026-01-01T00:00:00.5", "NaT", "0999-12-31"], "datetime64[us]"),
        "nanos": pd.to_datetime(["2026-01-01T00:00:00.000000001Z", None, None], utc=True,
                                format="ISO8601"),
        "seconds": utc.as_unit("s"),
        "berlin": utc.tz_convert("Europe/Berlin"),
        "duration": [0.1, 1e16, None],
        "sni": pd.Series([None, np.nan, pd.NaT], dtype=object),
        "mixed": [["a", ("b", 1)], (), {"k": [1, None]}],
        # list columns: all str, all int (big ones too), and lists json must write itself
        "sans": [["a.example", 'q "\u00e9"\n\t%s'], [], None],
        "frames": [[11, 12], [2**70, -1], None],
        "odd_lists": [[True, 1], [1.5, None], ["a", 1]],
        "numpy_cells": [np.int64(7), np.float64(0.1), np.bool_(True)],
        "stamp_cells": [pd.Timestamp("2026-01-01", tz="UTC"),
                        datetime(2026, 1, 1, 1, 2, 3, 4, tzinfo=UTC), pd.NA],
        "100% \"k\u00e9y\"": ["a", "b", "c"],
    })
    return Report(
        capture={"file": Path("/tmp/x.pcapng"), "ports": (25, 587), "when": utc[0],
                 "nested": {"empty": [], "list": [[]]}},
        conversations=conversations,
        certificates=conversations.iloc[:0],
        findings=pd.DataFrame(index=range(2)),
        events=conversations[["stream", "start_time", "nanos", "berlin"]],
    )


def test_odd_cells_match_reference() -> None:
    assert_same_as_reference(odd_report())


def test_reference_catches_a_difference() -> None:
    report = odd_report()
    report.conversations.loc[0, "ratio"] = 0.25
    expected = json.dumps(reference_dict(odd_report()), indent=2, ensure_ascii=False) + "\n"
    assert data.to_json(report) != expected


@pytest.mark.parametrize("name", ["tls12-client-cert-empty", "mixed-traffic"])
@pytest.mark.parametrize("with_keys", [False, True])
def test_real_report_matches_reference(name: str, with_keys: bool) -> None:
    report = analyze_fixture(name, with_keys, progress=False)
    assert len(report.conversations) and len(report.events)
    assert_same_as_reference(report)


@pytest.mark.skipif(not can_fork(), reason="the platform cannot fork")
@pytest.mark.parametrize("make", [odd_report,
                                  lambda: analyze_fixture("mixed-traffic", False,
                                                          progress=False)])
def test_tables_written_by_two_processes_match_reference(make, monkeypatch, tmp_path) -> None:
    """Big tables are written partly by a forked worker: the text is the same, and a worker
    other than this process did write one (the threshold lowered so that a fixture is big)."""
    writers = tmp_path / "writers"
    plain = data._json_table

    def noted(df):
        with writers.open("a") as out:
            out.write(f"{os.getpid()}\n")
        return plain(df)

    monkeypatch.setattr(data, "FORK_CELLS", 0)
    monkeypatch.setattr(data, "_json_table", noted)
    assert_same_as_reference(make())
    pids = set(writers.read_text().split())
    assert str(os.getpid()) in pids and len(pids) >= 2
