"""Times given by a source (a deletions file or query, an identity list's `updated_at`, a
Ketch webhook message): one parser with an explicit list of formats, never a guess.

Accepted (docs/config.md, "Times in sources"):

* ISO 8601 date-time `YYYY-MM-DDTHH:MM[:SS[.fraction]]` (or a space instead of `T`) with
  an offset `Z` or `±HH[:MM]`; without an offset it is read as UTC;
* ISO 8601 date `YYYY-MM-DD` (midnight UTC);
* epoch seconds, an unsigned number of seconds with an optional fraction; a value above
  `MILLIS_ABOVE` is epoch milliseconds (13 digits, as Ketch and Braze send them);
* a real timestamp value (a Parquet or SQL timestamp column), naive read as UTC;

and every time must fall in [`EARLIEST`, `LATEST`). Anything else (`0`, `12`, `1/2`,
`now`, `2024-1-2`, `March 1`) is not a time. An empty value is no time (the column is
optional), which is not the same thing as an unparseable one.

pandas' own `to_datetime` is only ever handed strings that already match the ISO 8601
pattern, with `format="ISO8601"`, so it never falls back to dateutil's guessing (which
reads `'0'` or `'1/2'` as dates) and never to its own words (`now`, `today`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Final

import numpy as np
import pandas as pd

from reconcile.engine.identity import shown
from reconcile.errors import DataError

UTC_TS: Final = "datetime64[ns, UTC]"
EARLIEST: Final = datetime(2000, 1, 1, tzinfo=timezone.utc)
LATEST: Final = datetime(2100, 1, 1, tzinfo=timezone.utc)
MILLIS_ABOVE: Final = 100_000_000_000  # larger epoch values are milliseconds (year 5138 in seconds)
# ASCII digits only: `\d` would also take other scripts' digits, which no export means as a time
ISO_PATTERN: Final = (r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
                      r"(?:[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,9})?)?(?:Z|[+-][0-9]{2}(?::?[0-9]{2})?)?)?")
EPOCH_PATTERN: Final = r"[0-9]{1,13}(?:\.[0-9]{1,9})?"
ACCEPTED: Final = ("ISO 8601 with an offset (2026-03-01T12:00:00Z, 2026-03-01T13:00:00+01:00; without one it "
                   "is UTC), an ISO date (2026-03-01) or epoch seconds (1772366400), between 2000-01-01 and "
                   "2100-01-01")


@dataclass(frozen=True)
class Parsed:
    """A column of source times: `times` (UTC, NaT where empty or bad) and `bad`, the rows
    that held a value that is not a time (both on the input's index)."""

    times: pd.Series
    bad: pd.Series


def not_a_time(value: Any) -> str:
    """Why `value` was refused (shown safely, clipped)."""
    return f"{shown(str(value))[:60]!r} is not a time (accepted: {ACCEPTED})"


def parse_times(values: pd.Series) -> Parsed:
    """Parse a source column by the formats above (vectorised; no per-row guessing)."""
    original, values = values.index, values.reset_index(drop=True)
    index = values.index
    out = pd.Series(pd.NaT, index=index, dtype=UTC_TS)
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        out = _utc(values)
    elif pd.api.types.is_bool_dtype(values.dtype):
        return Parsed(out.set_axis(original), values.notna().astype(bool).set_axis(original))
    elif pd.api.types.is_numeric_dtype(values.dtype):
        out = _from_epoch(pd.to_numeric(values, errors="coerce").astype("float64"))
    else:
        rest = pd.Series(True, index=index)
        if values.dtype == object:  # mixed values (Parquet object columns, rows added from the ledger)
            moments = values.map(lambda v: isinstance(v, (datetime, pd.Timestamp)) and not pd.isna(v),
                                 na_action="ignore").fillna(False).astype(bool)
            if moments.any():
                out[moments] = _utc(pd.Series(list(values[moments]), index=index[moments], dtype=object))
            numbers = values.map(lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
                                 na_action="ignore").fillna(False).astype(bool)
            if numbers.any():
                out[numbers] = _from_epoch(pd.to_numeric(values[numbers], errors="coerce").astype("float64"))
            rest = ~(moments | numbers)
        text = values[rest].astype("string").str.strip()
        epoch = text.str.fullmatch(EPOCH_PATTERN).fillna(False).astype(bool)
        iso = text.str.fullmatch(ISO_PATTERN).fillna(False).astype(bool)
        if epoch.any():
            out[epoch[epoch].index] = _from_epoch(pd.to_numeric(text[epoch]).astype("float64"))
        if iso.any():
            parsed = pd.to_datetime(text[iso], format="ISO8601", utc=True, errors="coerce")
            out[iso[iso].index] = _bounded(parsed)
    bad = _given(values) & out.isna()
    return Parsed(out.set_axis(original), bad.set_axis(original))


def parse_time(value: Any) -> datetime | None:
    """One source time by the same rules, or None when it is empty or not a time."""
    parsed = parse_times(pd.Series([value], dtype=object))
    moment = parsed.times.iloc[0]
    return None if pd.isna(moment) else moment.to_pydatetime()


def from_epoch(value: Any) -> datetime | None:
    """A JSON number of epoch seconds (milliseconds above `MILLIS_ABOVE`), or None when it is
    not a number or falls outside the accepted range (the ledger's message times)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if not (math.isfinite(value) if isinstance(value, float) else 0 <= value < LATEST.timestamp() * 1000):
        return None
    seconds = value / 1000 if value > MILLIS_ABOVE else value
    if not EARLIEST.timestamp() <= seconds < LATEST.timestamp():
        return None
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


def _given(values: pd.Series) -> pd.Series:
    """Rows holding a value: not missing, and not an empty or blank string."""
    present = values.notna().astype(bool)
    if values.dtype == object:
        blank = values.map(lambda v: isinstance(v, str) and not v.strip(), na_action="ignore")
        present &= ~blank.fillna(False).astype(bool)
    elif pd.api.types.is_string_dtype(values.dtype):
        present &= ~(values.str.strip() == "").fillna(False).astype(bool)
    return present


def _from_epoch(seconds: pd.Series) -> pd.Series:
    """Epoch seconds (milliseconds above `MILLIS_ABOVE`) as UTC, to the microsecond; NaT
    outside the range. Whole microseconds stay exact in a float64 up to 2^53 (year 2255)."""
    micros = (seconds * 1e6).where(seconds <= MILLIS_ABOVE, seconds * 1e3).round()
    inside = (micros >= EARLIEST.timestamp() * 1e6) & (micros < LATEST.timestamp() * 1e6)
    return pd.to_datetime(micros.where(inside), unit="us", utc=True).astype(UTC_TS)


def _utc(values: pd.Series) -> pd.Series:
    """Real timestamps as UTC (naive ones are UTC); NaT outside the range."""
    try:
        parsed = pd.to_datetime(values, utc=True, errors="coerce")
    except (ValueError, TypeError, OverflowError):
        return pd.Series(pd.NaT, index=values.index, dtype=UTC_TS)
    return _bounded(parsed)


def _bounded(parsed: pd.Series) -> pd.Series:
    """A tz-aware series of any unit in the compact dtype, NaT outside [EARLIEST, LATEST)."""
    inside = ((parsed >= pd.Timestamp(EARLIEST)) & (parsed < pd.Timestamp(LATEST))).fillna(False).astype(bool)
    return parsed.where(inside).astype(UTC_TS)


PROBLEM: Final = "_time_problem"  # a row's message when its time column holds something that is not a time
MIN_BAD_ROWS: Final = 5
MOSTLY_BAD_FRACTION: Final = 0.5


def with_times(df: pd.DataFrame, column: str, what: str, source_column: str | None = None,
               refuse_mostly_bad: bool = True) -> pd.DataFrame:
    """`df` with `column` parsed to UTC. A row whose value is not a time keeps NaT and gets
    its message in the `PROBLEM` column ("<what>: row N, column C: '…' is not a time …",
    N counted from 1 over the source's data rows); the caller decides what such a row may
    do. A source where most given values are not times (a wrong column, a broken export) is
    refused whole with `DataError`. Rows already carrying a problem keep it."""
    if column not in df.columns or not len(df):
        return df
    raw = df[column]
    parsed = parse_times(raw)
    out = df.assign(**{column: parsed.times})
    if not parsed.bad.any():
        return out
    name = source_column or column
    positions = parsed.bad.to_numpy().nonzero()[0]
    labels = df.index[positions]
    rows = [int(label) + 1 if isinstance(label, (int, np.integer)) else int(p) + 1
            for label, p in zip(labels, positions)]
    given = int(_given(raw).sum())
    if refuse_mostly_bad and len(positions) >= MIN_BAD_ROWS and len(positions) > MOSTLY_BAD_FRACTION * given:
        raise DataError(f"{what}: {len(positions)} of {given} values in column {name!r} are not times (first: row "
                        f"{rows[0]}, {not_a_time(raw.iloc[positions[0]])}); the column looks mis-mapped "
                        "or the export broken, so the run stopped before any write. Fix the source")
    messages = pd.Series(pd.NA, index=df.index, dtype="string")
    messages.iloc[positions] = [f"{what}: row {row}, column {name!r}: {not_a_time(raw.iloc[p])}"
                                for row, p in zip(rows, positions)]
    if PROBLEM in df.columns:
        messages = df[PROBLEM].astype("string").fillna(messages)
    return out.assign(**{PROBLEM: messages})
