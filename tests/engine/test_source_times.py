"""Source times (engine/times.py): the accepted formats give the exact instant; anything else
is not a time, never a guess (dateutil would read '0', '12' or '1/2' as dates)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis_profiles import examples

from reconcile.engine.times import (EPOCH_PATTERN, ISO_PATTERN, PROBLEM, from_epoch, parse_time, parse_times,
                                    with_times)
from reconcile.errors import DataError

UTC = timezone.utc
T = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-03-01T12:00:00Z", T),
    ("2026-03-01T12:00Z", T),
    ("2026-03-01T13:00:00+01:00", T),
    ("2026-03-01T07:00:00-0500", T),
    ("2026-03-01T14:00:00+02", T),
    ("2026-03-01 12:00:00", T),  # no offset: UTC
    ("2026-03-01T12:00:00.250Z", T + timedelta(milliseconds=250)),
    ("2026-03-01", T - timedelta(hours=12)),
    ("  2026-03-01T12:00:00Z ", T),
    ("1772366400", T),
    ("1772366400.5", T + timedelta(milliseconds=500)),
    ("1772366400123", T + timedelta(milliseconds=123)),  # 13 digits: milliseconds
])
def test_each_accepted_format_gives_the_exact_instant(text: str, expected: datetime) -> None:
    assert parse_time(text) == expected


@pytest.mark.parametrize("text", [
    "0", "12", "1/2", "1/2/2026", "03/01/2026", "2026", "2026-3-1", "2026-03", "March 1, 2026", "1 Mar 2026",
    "now", "today", "yesterday", "NaT", "nan", "None", "2026-02-30", "2026-13-01", "2026-03-01T25:00:00Z",
    "2026-03-01Z", "2026-03-01T12:00:00 UTC", "2026-03-01T12:00:00z", "-1772366400", "1e9", "0x69a4",
    "1999-12-31T23:59:59Z", "2100-01-01T00:00:00Z", "0001-01-01", "946684799", "4102444800",
    "2026-W09-7", "20260301", "2026-03-01T12:00:00+25:00", "١٧٧٢٣٦٦٤٠٠",
])
def test_anything_else_is_not_a_time(text: str) -> None:
    parsed = parse_times(pd.Series([text], dtype="string"))
    assert parse_time(text) is None and bool(parsed.bad.iloc[0]), text


def test_an_empty_value_is_no_time_not_a_bad_one() -> None:
    parsed = parse_times(pd.Series(["", "   ", None, pd.NA], dtype=object))
    assert parsed.times.isna().all() and not parsed.bad.any()


def test_typed_columns_parquet_and_sql_give() -> None:
    stamps = pd.Series(pd.to_datetime(["2026-03-01 12:00:00", None]))  # naive: UTC
    assert parse_times(stamps).times.iloc[0] == pd.Timestamp(T) and not parse_times(stamps).bad.any()
    aware = pd.Series(pd.to_datetime(["2026-03-01T13:00:00+01:00"]))
    assert parse_times(aware).times.iloc[0] == pd.Timestamp(T)
    numbers = parse_times(pd.Series([1772366400, 0, None], dtype="Int64"))
    assert numbers.times.iloc[0] == pd.Timestamp(T) and numbers.bad.tolist() == [False, True, False]
    mixed = parse_times(pd.Series([pd.Timestamp(T), "0", 1772366400.0, datetime(1, 1, 1)], dtype=object))
    assert mixed.times.iloc[0] == pd.Timestamp(T) and mixed.times.iloc[2] == pd.Timestamp(T)
    assert mixed.bad.tolist() == [False, True, False, True]
    assert parse_times(pd.Series([True, False])).bad.all()  # a boolean column is no time


def test_ledger_numbers_follow_the_same_rules() -> None:
    assert from_epoch(1772366400) == T and from_epoch(1772366400123) == T + timedelta(milliseconds=123)
    for value in (0, 12, -5, True, None, "1772366400", float("nan"), float("inf"), 2 ** 1100, 4102444800):
        assert from_epoch(value) is None, value


moments = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31), timezones=st.just(UTC))
offsets = st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))


@settings(max_examples=examples(200), deadline=None)
@given(moments, offsets, st.sampled_from(["T", " "]))
def test_iso_times_with_any_offset_round_trip_to_the_microsecond(moment: datetime, offset: timezone,
                                                                  sep: str) -> None:
    local = moment.astimezone(offset)
    if not datetime(2000, 1, 1, tzinfo=UTC) <= local.replace(tzinfo=UTC) < datetime(2100, 1, 1, tzinfo=UTC):
        return
    assert parse_time(local.isoformat(sep=sep)) == moment
    assert parse_time(str(moment.timestamp())) is not None
    assert parse_time(str(int(moment.timestamp()))) == moment.replace(microsecond=0)


@settings(max_examples=examples(300), deadline=None)
@given(st.one_of(st.text(max_size=30), st.text(alphabet="0123456789-/:. TZ+", max_size=25)))
@example("0")
@example("12")
@example("1/2")
@example("now")
@example("2026")
def test_nothing_outside_the_two_patterns_is_ever_read_as_a_time(text: str) -> None:
    moment = parse_time(text)
    parsed = parse_times(pd.Series([text], dtype="string"))
    if moment is None:
        assert bool(parsed.bad.iloc[0]) == bool(text.strip())
        return
    assert re.fullmatch(ISO_PATTERN, text.strip()) or re.fullmatch(EPOCH_PATTERN, text.strip()), text
    assert datetime(2000, 1, 1, tzinfo=UTC) <= moment < datetime(2100, 1, 1, tzinfo=UTC)


def test_with_times_names_the_source_row_and_column_and_refuses_a_mostly_bad_source() -> None:
    df = pd.DataFrame({"identity": ["a@x.io", "b@x.io", "c@x.io"],
                       "at": pd.Series(["2026-03-01", "1/2", ""], dtype="string")})
    out = with_times(df, "at", "universe.deletions_csv d.csv", "submitted_at")
    assert out["at"].iloc[0] == pd.Timestamp("2026-03-01", tz="UTC") and out["at"].iloc[1:].isna().all()
    assert out[PROBLEM].iloc[[0, 2]].isna().all()
    assert out[PROBLEM].iloc[1].startswith("universe.deletions_csv d.csv: row 2, column 'submitted_at': '1/2' is "
                                           "not a time (accepted: ISO 8601")
    bad = pd.DataFrame({"identity": [f"p{i}@x.io" for i in range(6)], "at": ["0", "12", "3", "4", "5", "2026-01-01"]})
    with pytest.raises(DataError) as err:
        with_times(bad, "at", "universe.deletions_sql")
    assert "universe.deletions_sql: 5 of 6 values in column 'at' are not times (first: row 1, '0'" in str(err.value)
    assert "before any write" in str(err.value)
