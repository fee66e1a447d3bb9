"""Machine formats: JSON (all tables), CSV (one table), Markdown (for tickets and chats)."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterable
from itertools import repeat
from typing import TYPE_CHECKING, Any

import pandas as pd

from ..core.json_cells import iso_strings, json_columns, jsonable
from ..core.schema import SCHEMA_VERSION
from ..core.user_tables import joined
from ..forking import can_fork, map_forked
from ..merged import is_merged, per_capture
from ..sanitize import csv_cell
from .inline import markdown_inline, markdown_text
from .labels import items, verdict_label

if TYPE_CHECKING:  # pragma: no cover
    from ..report import Report

TABLES = ("conversations", "certificates", "findings", "events")

#: Keys of ``Report.to_dict`` after "capture", in order.
JSON_TABLES = ("conversations", "certificates", "findings")
#: Added after them when server logs were given (``--log``).
LOG_TABLES = ("log_sessions", "log_findings")

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
    are written a column at a time from ``json_columns``; only unusual cells go through json.
    """
    names = JSON_TABLES + (LOG_TABLES if len(report.log_sessions) else ())
    tables = [getattr(report, name) for name in names]
    if not all(_plain_columns(df) for df in tables):
        return json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n"
    pieces = [f'{{\n  "schema_version": {SCHEMA_VERSION},\n  "capture": ',
              _dumps(jsonable(report.capture), 1)]
    for name, text in zip(names, _json_tables(tables), strict=True):
        pieces += [f",\n  {_encode_str(name)}: ", text]
    pieces.append("\n}\n")
    return "".join(pieces)


#: Tables of more cells than this together are written by two processes: the largest one by a
#: forked worker while this process writes the others (the impaired benchmark's 56,000 records,
#: 1.4 million cells, took 1.2 s in one process, and formatting them is Python's work, under
#: one lock: threads would not help).
FORK_CELLS = 200_000


def _json_tables(tables: list[pd.DataFrame]) -> list[str]:
    """``_json_table`` of each table, the largest in a forked worker when they are big."""
    cells = [len(df) * len(df.columns) for df in tables]
    if sum(cells) < FORK_CELLS or len(tables) < 2 or not can_fork():
        return [_json_table(df) for df in tables]
    largest = cells.index(max(cells))
    others = [k for k in range(len(tables)) if k != largest]
    here, there = map_forked(lambda group: [_json_table(tables[k]) for k in group],
                             [others, [largest]], 2)
    texts = dict(zip(others, here, strict=True))
    texts[largest] = there[0]
    return [texts[k] for k in range(len(tables))]


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
    if types <= {list}:
        return [_json_list(value) for value in values]
    return [_dumps(value, 3) for value in values]


#: How json (indent=2) writes a list that is a record's value: items 8 spaces in, "]" 6 in.
_LIST_OPEN, _LIST_SEPARATOR, _LIST_CLOSE = "[\n" + " " * 8, ",\n" + " " * 8, "\n" + " " * 6 + "]"


def _json_list(value: list[Any] | None) -> str:
    """A record's list cell (``sans``, ``evidence_frames`` ...) as ``_dumps(value, 3)``
    writes it, without json's pure-Python indenting encoder when its items are all str or
    all int (a hundred thousand such cells took seconds)."""
    if value is None:
        return "null"
    if not value:
        return "[]"
    kinds = set(map(type, value))
    if kinds == {str}:
        return _LIST_OPEN + _LIST_SEPARATOR.join(map(_encode_str, value)) + _LIST_CLOSE
    if kinds == {int}:  # int's str() is json's repr; bool is another type and stays out
        return _LIST_OPEN + _LIST_SEPARATOR.join(map(str, value)) + _LIST_CLOSE
    return _dumps(value, 3)


def _json_table(df: pd.DataFrame) -> str:
    """One table as json writes its list of records one level inside the document."""
    if not len(df):
        return "[]"
    columns = json_columns(df)
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
    df: pd.DataFrame = joined(table, getattr(report, table))  # lists as separated text
    out = df.copy(deep=False)
    for i, dtype in enumerate(df.dtypes):
        if isinstance(dtype, pd.DatetimeTZDtype):
            out.isetitem(i, ["" if text is None else text for text in iso_strings(df.iloc[:, i])])
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
    return "<br>".join(markdown_text(line) for line in str(value).split("\n"))


def to_markdown(report: Report) -> str:
    if is_merged(report):
        return _merged_markdown(report)
    lines = [f"# tls-smtp-report: {report.capture['file']}", ""]
    for warning in report.warnings:
        lines.append(f"> Warning: {markdown_text(warning)}")
    lines += ["", "## Conversations", "",
              "| stream | client | server | host | TLS | client certificate | leaf | findings |",
              "|---|---|---|---|---|---|---|---|"]
    for _, c in report.conversations.iterrows():
        lines.append("| " + " | ".join(_md_cell(v) for v in (
            c["stream"], c["client"], c["server"], c["server_host"], c["tls_version"],
            verdict_label(c["client_cert"]), c["client_leaf_subject"],
            " ".join(items(c["finding_ids"])))) + " |")
    lines += ["", "## Findings", ""]
    if not len(report.findings):
        lines.append("No findings.")
    for _, f in report.findings.iterrows():
        log_lines = f.get("evidence_lines")  # present with --log
        evidence = (f"- Evidence: server log {markdown_text(log_lines)}"
                    if isinstance(log_lines, str) and log_lines and not items(
                        f["evidence_frames"])
                    else f"- Evidence frames: {' '.join(items(f['evidence_frames']))}")
        lines += [f"### Stream {f['stream']}: {f['id']} {markdown_text(f['title'])} "
                  f"({f['severity']})", "", markdown_inline(f["explanation"]), "",
                  evidence, f"- Fix: {markdown_inline(f['fix'])}", ""]
    return "\n".join(lines).rstrip() + "\n"


def _merged_markdown(report: Report) -> str:
    """Several captures: one section per capture, each with its own streams."""
    parts = per_capture(report)
    lines = [f"# tls-smtp-report: {len(parts)} captures", ""]
    for part in parts:
        for line in to_markdown(part).splitlines():
            lines.append("#" + line if line.startswith("#") else line)
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
