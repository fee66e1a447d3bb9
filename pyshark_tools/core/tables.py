"""Small helpers for walking the tables conversation by conversation.

pandas operations on per-conversation slices cost about a millisecond each; on captures with
thousands of conversations that dominated the run. The stages therefore split a table once
into plain Python rows per stream and work on those.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Sequence
from typing import Any

import pandas as pd

#: One row as a dict, missing values as None.
Record = dict[str, Any]


def _columns(df: pd.DataFrame, missing_as_none: bool) -> list[list[Any]]:
    """Each column as a list of Python values (one conversion per column, not per cell)."""
    out = []
    for name in df.columns:
        column = df[name]
        numpy_type = getattr(column.dtype, "numpy_dtype", None)  # Int64, boolean ...
        if numpy_type is not None and not column.hasnans:
            values = column.to_numpy(numpy_type).tolist()  # no per-cell boxing
        else:
            values = column.tolist()
        if missing_as_none:
            mask = column.isna().to_numpy()
            if mask.any():
                values = [None if m else v for v, m in zip(values, mask, strict=True)]
        out.append(values)
    return out


def records_by_stream(df: pd.DataFrame) -> dict[int, list[Record]]:
    """The rows of a table as dicts, grouped by their ``stream`` (missing values as None)."""
    out: dict[int, list[Record]] = {}
    if not len(df):
        return out
    names = list(df.columns)
    at = names.index("stream")
    for values in zip(*_columns(df, True), strict=True):
        out.setdefault(int(values[at]), []).append(dict(zip(names, values, strict=True)))
    return out


def tuples_by_stream(df: pd.DataFrame,
                     columns: Sequence[str] | None = None) -> dict[int, list[Any]]:
    """The rows of a table as named tuples (attribute access), grouped by ``stream``;
    ``columns``: only these (converting a column costs; datetimes most)."""
    out: dict[int, list[Any]] = {}
    if not len(df):
        return out
    names = list(dict.fromkeys(["stream", *columns])) if columns is not None else list(df.columns)
    row_type = namedtuple("Row", names, rename=True)  # as itertuples names them
    at = names.index("stream")
    for values in zip(*_columns(df[names], False), strict=True):
        out.setdefault(int(values[at]), []).append(row_type._make(values))
    return out


def records(df: pd.DataFrame) -> list[Record]:
    """``df.to_dict(orient="records")``, built column by column."""
    names = list(df.columns)
    return [dict(zip(names, values, strict=True))
            for values in zip(*_columns(df, False), strict=True)]
