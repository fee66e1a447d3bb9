"""Machine formats: JSON (all tables), CSV (one table), Markdown (for tickets and chats)."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterable
from itertools import repeat
from typing import Any

import pandas as pd

from ..report import Report, _columns, _iso_strings, _jsonable
from ..sanitize import csv_cell
from .labels import verdict_label

TABLES = ("conversations", "certificates", "findings", "events")

#: Keys of ``Report.to_dict`` after "capture", in order.
JSON_TABLES = ("conversations", "certificates", "findings")

#: What ``json.dumps(..., ensure_ascii=False)`` uses for strings (the C version when built).
_encode_str = json.encoder.encode_basestring

#: Cell text for bools and missing cells. Ints and floats need none: the record template's
#: %s writes them with str(), which equals json's int.__repr__/float.__repr__.
_JSON_LITERALS = {True: "true", False: "false", None: "null"}
#: Only None, so that get(value, value) cannot match 1 == True or 0.0 == False.
_JSON_NULL = {None: "null"}


def to_json(report: Report) -> str:
    """``json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\\n"``, byte for byte.

    json's indented encoder is pure Python and took seconds on big captures, so the tables
    are written a column at a time from ``_columns``; only unusual cells go through json.
    """
    tables = [getattr(report, name) for name in JSON_TABLES]
    if not all(_plain_columns(df) for df in tables):
        return json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n"
    pieces = ['{\n  "capture": ', _dumps(_jsonable(report.capture), 1)]
    for name, df in zip(JSON_TABLES, tables, strict=True):
        pieces += [f",\n  {_encode_str(name)}: ", _json_table(df)]
    pieces.append("\n}\n")
    return "".join(pieces)


def _plain_columns(df: pd.DataFrame) -> bool:
    """Column names json writes as they are: str keys, none repeated (to_dict would merge)."""
    return df.columns.is_unique and all(type(name) is str for name in df.columns)


def _dumps(value: object, level: int) -> str:
    """``value`` as json writes it nested ``level`` deep with indent=2: the same text with
    every line break indented further (encoded strings never hold a raw line break)."""
    return json.dumps(value, indent=2, ensure_ascii=False).replace("\n", "\n" + "  " * level)


def _json_cells(values: list[Any]) -> list[Any]:
    """Each cell as json writes it inside a record (or an int/finite float, which %s writes
    the same way): one encoder per column when all cells share a plain type, ``_dumps`` for
    anything else (lists, NaN, subclasses, ...)."""
    types = set(map(type, values))
    types.discard(type(None))
    if types <= {bool}:
        return list(map(_JSON_LITERALS.__getitem__, values))
    if types <= {int} or (types <= {float}
                          and all(math.isfinite(v) for v in values if v is not None)):
        # get(value, value): "null" for None, the number itself otherwise.
        return list(map(_JSON_NULL.get, values, values)) if None in values else values
    if types <= {str}:
        # Encode each distinct string once: most columns repeat a handful of values.
        lookup = {value: "null" if value is None else _encode_str(value)
                  for value in set(values)}
        return list(map(lookup.__getitem__, values))
    return [_dumps(value, 3) for value in values]


def _json_table(df: pd.DataFrame) -> str:
    """One table as json writes its list of records one level inside the document."""
    if not len(df):
        return "[]"
    columns = _columns(df)
    if columns:
        # One %-template per table fills a whole record in a single C-level call.
        keys = (_encode_str(name).replace("%", "%%") + ": %s" for name, _ in columns)
        template = "{\n      " + ",\n      ".join(keys) + "\n    }"
        cells = zip(*(_json_cells(values) for _, values in columns), strict=True)
        rows: Iterable[str] = map(template.__mod__, cells)
    else:
        rows = repeat("{}", len(df))
    return "[\n    " + ",\n    ".join(rows) + "\n  ]"


def to_csv(report: Report, table: str = "conversations") -> str:
    """One table as CSV, zone-aware datetimes as ISO 8601 with Z (converted a column at a
    time: a per-cell map took seconds on the events table)."""
    df: pd.DataFrame = getattr(report, table)
    out = df.copy(deep=False)
    for i, dtype in enumerate(df.dtypes):
        if isinstance(dtype, pd.DatetimeTZDtype):
            out.isetitem(i, ["" if text is None else text for text in _iso_strings(df.iloc[:, i])])
        elif str(dtype) == "object" or isinstance(dtype, pd.CategoricalDtype | pd.StringDtype):
            # a cell a spreadsheet would run as a formula is quoted (OWASP)
            cells = df.iloc[:, i].astype(object)
            quoted = [csv_cell(v) for v in cells]
            if any(q is not v for q, v in zip(quoted, cells, strict=True)):
                out.isetitem(i, pd.Series(quoted, index=df.index, dtype=object))
    buffer = io.StringIO()
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
