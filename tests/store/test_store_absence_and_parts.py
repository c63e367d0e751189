"""Confirmed absences: recorded, refreshed, cleared, and read back by time, on both backends."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


def test_record_refresh_clear_and_read_by_time(store):
    assert store.record_absent(["a@x.io", "b@x.io", "a@x.io", None], T0, "r1") == 2
    assert store.absent_since(T0) == {"a@x.io": T0, "b@x.io": T0}
    later = T0 + timedelta(hours=5)
    store.record_absent(["b@x.io"], later, "r2")  # a newer confirmation replaces the older
    assert store.absent_since(T0 + timedelta(hours=1)) == {"b@x.io": later}
    assert store.clear_absent(["b@x.io", "never@x.io"]) == 1
    assert store.absent_since(T0) == {"a@x.io": T0}
    assert store.record_absent([], later, "r3") == 0 and store.clear_absent([]) == 0


def test_many_subjects_at_once(store):
    keys = [f"user{i:06d}" for i in range(3000)]  # more than one SQLite bind chunk
    assert store.record_absent(keys, T0, "r1") == 3000
    assert store.clear_absent(keys[:1500]) == 1500
    assert set(store.absent_since(T0)) == set(keys[1500:])
