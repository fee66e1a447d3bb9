"""Small helpers for walking the tables conversation by conversation.

pandas operations on per-conversation slices cost about a millisecond each; on captures with
thousands of conversations that dominated the run. The stages therefore split a table once
into plain Python rows per stream and work on those.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

#: One row as a dict, missing values as None.
Record = dict[str, Any]


def records_by_stream(df: pd.DataFrame) -> dict[int, list[Record]]:
    """The rows of a table as dicts, grouped by their ``stream`` (missing values as None)."""
    out: dict[int, list[Record]] = {}
    if not len(df):
        return out
    for row in df.astype(object).where(df.notna(), None).to_dict(orient="records"):
        out.setdefault(int(row["stream"]), []).append(row)
    return out


def tuples_by_stream(df: pd.DataFrame) -> dict[int, list[Any]]:
    """The rows of a table as named tuples (attribute access), grouped by ``stream``."""
    out: dict[int, list[Any]] = {}
    for row in df.itertuples(index=False):
        out.setdefault(int(row.stream), []).append(row)
    return out
