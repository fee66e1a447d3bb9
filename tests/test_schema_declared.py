"""Each table is declared once (``core.schema``: name, dtype, meaning) and the report keeps the
declaration: the real reports of the fixtures have exactly the declared columns and dtypes, the
JSON keys are the declared names, and ``docs/tables.md`` is written from the declaration."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from pyshark_tools.core.schema import TABLES, Column
from pyshark_tools.core.user_tables import LIST_COLUMNS
from pyshark_tools.render.tables_doc import tables_markdown

from .helpers import analyze_fixture

ROOT = Path(__file__).resolve().parents[1]
#: Fixtures whose reports fill most columns: a presented chain, an empty Certificate, a cut
#: file, TLS 1.3 with keys, and a handshake alert.
SAMPLES = [("tls12-client-cert-ok", False), ("tls12-client-cert-empty", False),
           ("cut-mid-file", False), ("tls13-client-cert-ok", True), ("handshake-alert", False)]
REPORT_TABLES = ("conversations", "certificates", "findings", "events")


def _has_declared_dtype(series: pd.Series, column: Column) -> bool:
    """The declared dtype; a column whose every cell is missing may stay ``object`` (pandas
    cannot tell its type from no value)."""
    dtype = str(series.dtype)
    values = series.tolist()
    if column.dtype == "list":
        return dtype == "object" and all(isinstance(v, list) for v in values)
    if column.dtype == "str":
        return dtype in ("str", "string") or (dtype == "object" and series.isna().all())
    return dtype == column.dtype


@pytest.fixture(scope="module")
def reports():
    return [analyze_fixture(name, with_keys=keys) for name, keys in SAMPLES]


@pytest.mark.parametrize("table", REPORT_TABLES)
def test_report_tables_are_as_declared(reports, table: str) -> None:
    declared = TABLES[table]
    for report in reports:
        df = getattr(report, table)
        assert tuple(df.columns) == tuple(c.name for c in declared)
        wrong = [f"{c.name}: {df[c.name].dtype}, declared {c.dtype}" for c in declared
                 if len(df) and not _has_declared_dtype(df[c.name], c)]
        assert wrong == [], report.capture["file"]


def test_the_dtype_check_can_fail() -> None:
    column = Column("n", "Int64", "a number")
    assert not _has_declared_dtype(pd.Series([1, 2], dtype="float64"), column)
    assert not _has_declared_dtype(pd.Series(["a", None], dtype=object),
                                   Column("s", "list", "items", sep=" "))


def test_json_keys_are_the_declared_names(reports) -> None:
    for report in reports:
        doc = json.loads(json.dumps(report.to_dict(), default=str))
        for table in ("conversations", "certificates", "findings"):
            for row in doc[table]:
                assert list(row) == [c.name for c in TABLES[table]]


def test_every_column_says_what_it_means() -> None:
    for table, columns in TABLES.items():
        assert len({c.name for c in columns}) == len(columns), table
        assert all(c.meaning.strip() for c in columns), table
        assert all((c.sep is not None) == (c.dtype == "list") for c in columns
                   if table in REPORT_TABLES), table


def test_list_columns_come_from_the_declaration() -> None:
    assert LIST_COLUMNS[("certificates", "sans")] == "; "
    assert set(LIST_COLUMNS) == {(t, c.name) for t, cs in TABLES.items() for c in cs
                                 if c.dtype == "list"}


def test_docs_tables_is_written_from_the_declaration() -> None:
    assert (ROOT / "docs" / "tables.md").read_text(encoding="utf-8") == tables_markdown(), (
        "regenerate: python -m pyshark_tools.render.tables_doc > docs/tables.md")
