"""pandas cells as JSON values: whole columns converted at once (per-cell work was slow).

The JSON document (``Report.to_dict``) and the JSON/CSV writers share these conversions, so
a timestamp, a missing value or a categorical cell is written the same way everywhere.
"""

from __future__ import annotations

from datetime import datetime
from itertools import repeat
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["iso_strings", "json_columns", "jsonable", "records"]


def jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime | pd.Timestamp):
        return pd.Timestamp(value).isoformat().replace("+00:00", "Z")
    if isinstance(value, Path):
        return str(value)
    return value


def records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts, built from whole converted columns (per-cell work was slow)."""
    columns = json_columns(df)
    if not columns:
        return [{} for _ in range(len(df))]
    names = [name for name, _ in columns]
    rows = zip(*(values for _, values in columns), strict=True)
    return list(map(dict, map(zip, repeat(names), rows)))


def json_columns(df: pd.DataFrame) -> list[tuple[Any, list[Any]]]:
    """Each column as (name, JSON-ready values); shared by ``_records`` and the JSON writer."""
    return [(name, _column_values(df.iloc[:, i])) for i, name in enumerate(df.columns)]


#: Cell types that ``_cell`` returns unchanged unless they are missing (NaN).
_PLAIN_TYPES = frozenset({str, int, float, bool, type(None)})


def _column_values(column: pd.Series) -> list[Any]:
    """One column converted as ``_cell`` would convert each cell, but whole-column where the
    dtype (or a look at the cell types) shows the cells are plain Python scalars."""
    dtype = column.dtype
    if isinstance(dtype, pd.DatetimeTZDtype) or (isinstance(dtype, np.dtype) and dtype.kind == "M"):
        return iso_strings(column)
    if isinstance(dtype, pd.CategoricalDtype):
        # Convert each category once; code -1 (missing) picks the trailing None.
        lookup = [_cell(value) for value in dtype.categories.tolist()] + [None]
        return list(map(lookup.__getitem__, column.cat.codes.tolist()))
    values = column.tolist()
    if dtype.kind in "biu" or isinstance(dtype, pd.StringDtype):
        # tolist() gave Python scalars, and a missing marker exactly where isna() says so.
        missing = column.isna().to_numpy(dtype=bool)
    elif dtype.kind == "f" or set(map(type, values)) <= _PLAIN_TYPES:
        # Python scalars too, but a float NaN can sit outside a masked array's NA mask.
        missing = pd.isna(np.array(values, dtype=object))
    else:
        return [_cell(value) for value in values]
    for i in np.flatnonzero(missing).tolist():
        values[i] = None
    return values


def _cell(value: Any) -> Any:
    """The per-cell conversion, for object/category columns whose cells can be anything."""
    if value is None or (not isinstance(value, list | tuple) and pd.isna(value)):
        return None
    if isinstance(value, pd.Timestamp | datetime):
        return jsonable(value)
    if hasattr(value, "item"):
        return value.item()
    return value


def iso_strings(column: pd.Series) -> list[str | None]:
    """Datetimes as ``Timestamp.isoformat()`` with ``+00:00`` written ``Z``; NaT as None.

    numpy formats UTC/naive columns at microsecond precision in one call; anything else
    (other zones, nanoseconds, years outside 1000-9999) goes through ``_cell``.
    """
    tz = getattr(column.dtype, "tz", None)
    if tz is not None and str(tz) != "UTC":
        return [_cell(value) for value in column.tolist()]
    naive = column.dt.tz_localize(None) if tz is not None else column
    stamps = naive.to_numpy()
    micro = stamps.astype("datetime64[us]")
    missing = np.isnat(stamps)
    present = micro[~missing]
    if len(present) and ((present != stamps[~missing]).any()
                         or present.min() < np.datetime64("1000-01-01", "us")
                         or present.max() >= np.datetime64("10000-01-01", "us")):
        return [_cell(value) for value in column.tolist()]
    text = np.datetime_as_string(micro, unit="us").astype(object)
    whole = (micro.view(np.int64) % 1_000_000 == 0) & ~missing
    text[whole] = [s[:-7] for s in text[whole]]  # isoformat drops a zero fraction
    if tz is not None:
        text = text + "Z"
    text[missing] = None
    return text.tolist()
