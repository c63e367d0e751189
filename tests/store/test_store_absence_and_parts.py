"""Confirmed absences and saved parts of chunked reads, on both backends."""

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


def test_saved_parts_resume_only_from_unfinished_runs_of_the_same_scope(store):
    for run_id, status in (("dead", None), ("failed", "failed"), ("done", "applied"), ("now", None),
                           ("other", "interrupted"), ("four", None)):
        store.start_run(run_id, mode="full", config_hash="h", started_at=T0)
        if status:
            store.update_run(run_id, status=status)
    save = store.save_run_part
    save(run_id="dead", scope="s", part=0, parts=3, subjects=5, payload=b"dead-0", at=T0)
    save(run_id="dead", scope="s", part=1, parts=3, subjects=5, payload=b"dead-1", at=T0)
    save(run_id="failed", scope="s", part=1, parts=3, subjects=5, payload=b"failed-1", at=T0 + timedelta(minutes=5))
    save(run_id="done", scope="s", part=2, parts=3, subjects=5, payload=b"done-2", at=T0 + timedelta(minutes=9))
    save(run_id="other", scope="other", part=2, parts=3, subjects=5, payload=b"other-2", at=T0)
    save(run_id="four", scope="s", part=2, parts=4, subjects=5, payload=b"four-2", at=T0)
    save(run_id="now", scope="s", part=2, parts=3, subjects=5, payload=b"now-2", at=T0 + timedelta(minutes=9))
    found = store.resumable_parts("s", 3, T0, exclude_run="now")
    assert found == {0: ("dead", b"dead-0"), 1: ("failed", b"failed-1")}  # newest copy; never a finished run's
    assert store.resumable_parts("s", 3, T0 + timedelta(minutes=1), exclude_run="now") == {1: ("failed", b"failed-1")}
    save(run_id="dead", scope="s", part=0, parts=3, subjects=6, payload=b"dead-0b", at=T0 + timedelta(minutes=2))
    assert store.resumable_parts("s", 3, T0, exclude_run="now")[0] == ("dead", b"dead-0b")  # replaced, not doubled
    assert store.drop_run_parts(before=T0 + timedelta(minutes=1)) == 3
    assert store.drop_run_parts("s") == 4 and store.resumable_parts("s", 3, T0, exclude_run="x") == {}
