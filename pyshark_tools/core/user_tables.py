"""The tables as a ``Report`` hands them to users: lists are lists, vocabularies categorical.

The stages keep compact separated strings internally (cheap to build and merge); at the
report boundary each such column becomes a column of Python lists (JSON arrays), and every
closed vocabulary a pandas Categorical, so that ``df.explode("sans")`` and
``df["trust"].cat.categories`` work without knowing three different separators.
"""

from __future__ import annotations

import pandas as pd

from .schema import TABLES, Severity, TrustStatus

#: (table, column) -> the separator the stages use; CSV writes the lists back with it (from
#: the tables' declaration in ``schema``).
LIST_COLUMNS: dict[tuple[str, str], str] = {
    (table, column.name): column.sep
    for table, columns in TABLES.items() for column in columns if column.sep is not None
}
#: List columns whose items are numbers.
INT_LISTS = frozenset({("findings", "evidence_frames")})

#: Conversation severity: the worst finding, "" when there is none.
SEVERITY_CATEGORIES = [s.value for s in Severity] + [""]

#: (table, column) -> categories.
CATEGORICAL_COLUMNS: dict[tuple[str, str], list[str]] = {
    ("conversations", "severity"): SEVERITY_CATEGORIES,
    ("conversations", "client_chain_trust"): [s.value for s in TrustStatus],
    ("certificates", "trust"): [s.value for s in TrustStatus],
    ("findings", "severity"): [s.value for s in Severity],
}


def split_cell(value: object, separator: str, numbers: bool = False) -> list:
    """One separated string as a list ([] for a missing or empty cell); lists pass through."""
    if isinstance(value, list | tuple):
        items = list(value)
    elif value is None or (not isinstance(value, str) and pd.isna(value)):
        items = []
    else:
        items = [p.strip() for p in str(value).split(separator.strip() or None)]
        items = [p for p in items if p]
    return [int(p) for p in items] if numbers else items


def _split_column(values: pd.Series, separator: str, numbers: bool) -> list[list]:
    """``split_cell`` of every cell, each distinct string split once (a column repeats a few
    values: the SANs of one server's certificate in every conversation with it); every cell
    gets a list of its own, so that changing one cell's list changes no other."""
    split: dict[str, list] = {}
    out = []
    for value in values:
        if type(value) is str:
            items = split.get(value)
            if items is None:
                items = split[value] = split_cell(value, separator, numbers)
            out.append(items.copy())
        else:
            out.append(split_cell(value, separator, numbers))
    return out


def for_users(table: str, df: pd.DataFrame) -> pd.DataFrame:
    """``df`` (one of the report's tables) with real lists and categorical vocabularies."""
    df = df.copy()
    for (name, column), separator in LIST_COLUMNS.items():
        if name == table and column in df.columns:
            df[column] = pd.Series(_split_column(df[column], separator,
                                                 (name, column) in INT_LISTS),
                                   index=df.index, dtype=object)
    for (name, column), categories in CATEGORICAL_COLUMNS.items():
        if name == table and column in df.columns:
            values = df[column].astype(object).where(df[column].notna(), None)
            if column == "severity" and name == "conversations":
                values = values.fillna("")
            df[column] = pd.Categorical(values, categories=categories)
    return df


def joined(table: str, df: pd.DataFrame) -> pd.DataFrame:
    """The list columns written back as the separated strings (for CSV)."""
    out = df.copy(deep=False)
    for (name, column), separator in LIST_COLUMNS.items():
        if name == table and column in out.columns:
            out[column] = [separator.join(map(str, v)) if isinstance(v, list | tuple)
                           else v for v in out[column]]
    return out
