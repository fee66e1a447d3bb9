"""Control characters and spreadsheet formulas from a capture (pure functions)."""

from __future__ import annotations

import os

import pytest

from pyshark_tools.sanitize import csv_cell, printable, printable_frame, printable_lines


def test_control_characters_become_visible_escapes() -> None:
    assert printable("a\x1b]0;t\x07b") == "a\\x1b]0;t\\x07b"
    assert printable("x\ny\rz\x9b\u202e") == "x\\x0ay\\x0dz\\x9b\\u202e"
    assert printable_lines("220-a\n220 b\x1b[2J") == "220-a\n220 b\\x1b[2J"
    assert printable("tab\tstays, ümlaut too") == "tab\tstays, ümlaut too"


def test_undecodable_file_name_bytes_are_shown_as_bytes() -> None:
    assert printable(os.fsdecode(b"cap\xff.pcapng")) == "cap\\xff.pcapng"


@pytest.mark.parametrize("cell", ["=1+1", "+1", "-1+cmd", "@SUM(A1)", "\tx", "\rx"])
def test_formula_cells_are_quoted(cell: str) -> None:
    assert csv_cell(cell) == "'" + cell


@pytest.mark.parametrize("cell", ["mail.contoso.com", "220 ready", 5, None, 1.5, ""])
def test_other_cells_are_unchanged(cell: object) -> None:
    assert csv_cell(cell) == cell


def test_frame_cells_are_escaped_wherever_they_hide() -> None:
    """A control character is found in a string column, an object column, a list cell, a
    nested list and next to non-ASCII text; a clean column comes back equal."""
    import pandas as pd

    df = pd.DataFrame({
        "banner": pd.Series(["220 ok", None, "220 \x1b[2J"], dtype="string"),
        "subject": pd.Series(["CN=ü", "CN=ü\u202e", None], dtype=object),
        "sans": [["a.example"], [], [["b\x07"], "c"]],
        "clean": pd.Series(["x", "ü", None], dtype=object),
        "frame": [1, 2, 3],
    })
    shown = printable_frame(df)
    assert shown["banner"].tolist()[::2] == ["220 ok", "220 \\x1b[2J"]
    assert shown["subject"].tolist()[:2] == ["CN=ü", "CN=ü\\u202e"]
    assert shown["sans"].tolist() == [["a.example"], [], [["b\\x07"], "c"]]
    assert shown["clean"].tolist()[:2] == ["x", "ü"] and shown["frame"].tolist() == [1, 2, 3]
    assert df["banner"].tolist()[2] == "220 \x1b[2J"  # the original is left as it was
