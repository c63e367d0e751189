"""Checks on a whole identity source (a universe file or query, a deletions file or
query) before any of it is used: a source that is mostly malformed, or that carries a
field far larger than any identity or timestamp, stops the run before anything is written.

* **Mostly malformed**: more than `MOSTLY_MALFORMED_FRACTION` of its rows rejected by
  identity normalisation, and at least `MIN_REJECTED_ROWS` of them. Such a source is a
  wrong column, a swapped layout or a broken export; applying the rest of the run would
  act on a universe the operator did not mean (a Parquet file of garbage silently
  contributes nothing, a deletions file with swapped columns erases no one).
* **Oversized field**: any value longer than `MAX_FIELD_CHARS` characters, in any column.
  An over-long identity is also rejected row by row (engine/identity.py); a field this
  long anywhere is a corrupted or hostile export, refused with its row and column, never
  its value.

Both raise `DataError` naming the source and the fix.
"""

from __future__ import annotations

import pandas as pd

from reconcile.engine.identity import normalize
from reconcile.errors import DataError

MOSTLY_MALFORMED_FRACTION = 0.5
MIN_REJECTED_ROWS = 5
MAX_FIELD_CHARS = 65_536


def refuse_oversized_fields(df: pd.DataFrame, what: str, limit: int = MAX_FIELD_CHARS) -> None:
    for column in df.columns:
        values = df[column]
        if not (pd.api.types.is_string_dtype(values) or values.dtype == object):
            continue
        lengths = values.map(lambda v: len(v) if isinstance(v, (str, bytes)) else 0, na_action="ignore")
        too_long = lengths.fillna(0) > limit
        if too_long.any():
            row = int(too_long.to_numpy().nonzero()[0][0])
            raise DataError(f"{what}: row {row + 1}, column {column!r} holds {int(lengths.iloc[row])} characters "
                            f"(at most {limit} are read from any field); nothing was written. Fix the export, or "
                            "select only the identity and timestamp columns")


def refuse_mostly_malformed(df: pd.DataFrame, key_type: str, what: str) -> None:
    if "identity" not in df.columns or not len(df):
        return
    _valid, invalid = normalize(df["identity"], key_type)
    rejected, total = len(invalid), len(df)
    if rejected >= MIN_REJECTED_ROWS and rejected > MOSTLY_MALFORMED_FRACTION * total:
        reasons = invalid["reason"].value_counts()
        top = ", ".join(f"{n} {reason}" for reason, n in reasons.head(3).items())
        raise DataError(f"{what}: {rejected} of {total} rows have no valid {key_type} ({top}); the source looks "
                        "mis-mapped (wrong column, swapped columns or a broken export), so the run stopped before "
                        "any write. Fix the source or its column settings")


def checked(df: pd.DataFrame, key_type: str | None, what: str) -> pd.DataFrame:
    """`df` unchanged, once it passed both checks (`key_type` None: the field check only)."""
    refuse_oversized_fields(df, what)
    if key_type is not None:
        refuse_mostly_malformed(df, key_type, what)
    return df
