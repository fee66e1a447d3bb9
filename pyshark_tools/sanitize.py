"""Text from a capture made safe to show: no terminal control, no spreadsheet formula.

A capture is written by whoever sent the packets: an SMTP banner, an EHLO name or a
certificate subject can carry escape sequences that retitle or rewrite a terminal, and a
CSV cell starting with ``=`` runs as a formula in a spreadsheet.
"""

from __future__ import annotations

import re

__all__ = ["csv_cell", "printable", "printable_lines"]

# C0 controls except TAB and LF, DEL, C1 controls, and the Unicode line/paragraph separators
# and bidirectional overrides (they reorder what a reader sees).
# Lone surrogates stand for bytes of a file name that are not UTF-8 (surrogateescape).
_CONTROL = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)
_CONTROL_AND_LF = re.compile(
    "[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte of a file name
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` with every control character written as a visible escape (``\\x1b``),
    line feeds included: for one-line values such as file names."""
    return _CONTROL_AND_LF.sub(_escape, text)


def printable_lines(text: str) -> str:
    """Like ``printable`` but line feeds stay (multi-line SMTP replies)."""
    return _CONTROL.sub(_escape, text)


#: First characters that make a spreadsheet read a cell as a formula (OWASP CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")


def csv_cell(value: object) -> object:
    """A CSV cell a spreadsheet shows as text: a string starting like a formula gets a
    leading single quote (OWASP's advice); other values are returned unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def printable_frame(df):  # pandas DataFrame -> DataFrame (pandas is imported by the caller)
    """A copy of ``df`` whose text cells (object, string and category columns) are
    ``printable_lines``."""
    import pandas as pd

    out = df.copy()
    for i, dtype in enumerate(df.dtypes):
        column = df.iloc[:, i]
        if isinstance(dtype, pd.CategoricalDtype):
            categories = dtype.categories
            if categories.dtype == object:
                renamed = [printable_lines(c) if isinstance(c, str) else c for c in categories]
                if len(set(renamed)) == len(renamed):
                    out.isetitem(i, column.cat.rename_categories(renamed))
                else:  # two categories that read the same once escaped
                    out.isetitem(i, column.astype(object).map(_printable_cell,
                                                              na_action="ignore"))
        elif isinstance(dtype, pd.StringDtype):
            if _any_control("".join(column.to_numpy(dtype=object, na_value=""))):
                out.isetitem(i, column.map(_printable_cell, na_action="ignore"))
        elif str(dtype) == "object":
            if _any_control(_joined_texts(column.tolist())):
                out.isetitem(i, column.map(_printable_cell, na_action="ignore"))
            else:  # the dtype the rewrite would have given (str+None: "str" with NaN)
                out.isetitem(i, column.infer_objects())
    return out


#: The ASCII characters ``printable_lines`` keeps as they are.
_PLAIN_ASCII = bytes(range(0x20, 0x7F)) + b"\t\n"


def _any_control(text: str) -> bool:
    """Whether ``text`` holds a character ``printable_lines`` escapes: a capture's text almost
    never does, and the events table alone has hundreds of thousands of cells, so a column is
    checked at once (a C-level byte deletion for ASCII, the pattern otherwise) before any cell
    is rewritten."""
    if text.isascii():
        return bool(text.encode("ascii").translate(None, _PLAIN_ASCII))
    return _CONTROL.search(text) is not None


def _joined_texts(cells: list) -> str:
    """Every string of ``cells``, in lists and tuples too, concatenated (a character never
    spans two of them, so searching the concatenation finds what a search per cell would)."""
    texts = [cell for cell in cells if isinstance(cell, str)]
    nested = [cell for cell in cells if isinstance(cell, (list, tuple))]
    while nested:
        texts += [item for cell in nested for item in cell if isinstance(item, str)]
        nested = [item for cell in nested for item in cell if isinstance(item, (list, tuple))]
    return "".join(texts)


def _printable_cell(value: object) -> object:
    if isinstance(value, str):
        return printable_lines(value)
    if isinstance(value, list | tuple):
        return type(value)(_printable_cell(v) for v in value)
    return value


def printable_value(value: object) -> object:
    """Strings (in dicts and lists too) through ``printable``: one-line values."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {k: printable_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(printable_value(v) for v in value)
    return value


def printable_report(report):  # Report -> Report (duck-typed: no import of the report stage)
    """A copy of a report for a terminal: every text from the capture made printable."""
    import dataclasses

    return dataclasses.replace(
        report,
        capture=printable_value(report.capture),
        conversations=printable_frame(report.conversations),
        certificates=printable_frame(report.certificates),
        findings=printable_frame(report.findings),
        events=printable_frame(report.events),
        warnings=[printable(w) for w in report.warnings],
    )
