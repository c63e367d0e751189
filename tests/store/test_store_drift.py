"""Drift items: insert, update and resolve semantics, history rules, and bulk volume."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from reconcile.store.store import Store

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
DAY = timedelta(days=1)


def item(subject: str, drift_class: str = "missed_optout", field: str | None = "group:g1", **kw) -> dict:
    base = {
        "subject_key": subject,
        "drift_class": drift_class,
        "field": field,
        "expected": "unsubscribed",
        "actual": "subscribed",
        "severity": "critical",
        "reason": "Ketch denied topic t1 on email",
        "ketch_collected_at": T0 - DAY,
        "detail": {"topic": "t1"},
    }
    return {**base, **kw}


def run(store: Store, n: int) -> tuple[str, datetime]:
    run_id = f"run-{n}"
    store.start_run(run_id, mode="full", config_hash="h", started_at=T0 + n * DAY)
    return run_id, T0 + n * DAY


def correction(store: Store, run_id: str, now: datetime, action_id: str = "act-1") -> str:
    store.save_plan(f"plan-{action_id}", run_id, "fp", {}, now)
    action = {"action_id": action_id, "seq": 0, "endpoint": "/subscription/status/set", "kind": "unsubscribe"}
    store.journal_plan(f"plan-{action_id}", run_id, [action], now)
    return action_id


def by_status(store: Store) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for row in store.drift_items():
        out.setdefault(row["status"], []).append(row["subject_key"])
    return out


def test_new_items_are_inserted_open(store: Store) -> None:
    r1, now = run(store, 1)
    ids = store.record_drift(
        r1, [item("a"), item("b", "missed_deletion", None, expected="absent")], ["a", "b"], now
    )
    assert set(ids) == {("a", "missed_optout", "group:g1"), ("b", "missed_deletion", None)}
    rows = {r["id"]: r for r in store.drift_items()}
    a = rows[ids[("a", "missed_optout", "group:g1")]]
    assert (a["status"], a["first_seen_run"], a["first_seen_at"], a["last_seen_run"]) == ("open", r1, now, r1)
    assert (a["expected"], a["actual"], a["severity"], a["detail"]) == (
        "unsubscribed",
        "subscribed",
        "critical",
        {"topic": "t1"},
    )
    assert a["ketch_collected_at"] == T0 - DAY
    assert rows[ids[("b", "missed_deletion", None)]]["field"] == ""


def test_seen_again_updates_the_same_row(store: Store) -> None:
    r1, now1 = run(store, 1)
    first = store.record_drift(r1, [item("a")], ["a"], now1)
    r2, now2 = run(store, 2)
    again = store.record_drift(r2, [item("a", actual="opted_in", reason="still subscribed")], ["a"], now2)
    assert again == first
    (row,) = store.drift_items()
    assert (row["first_seen_run"], row["first_seen_at"]) == (r1, now1)
    assert (row["last_seen_run"], row["last_seen_at"]) == (r2, now2)
    assert (row["actual"], row["reason"], row["status"]) == ("opted_in", "still subscribed", "open")


def test_vanished_drift_of_checked_subjects_is_resolved(store: Store) -> None:
    r1, now1 = run(store, 1)
    store.record_drift(
        r1,
        [item("a"), item("a", "missed_blocklist", "blocklist"), item("b"), item("c")],
        ["a", "b", "c"],
        now1,
    )
    r2, now2 = run(store, 2)
    # a: one class gone; b: checked and clean; c: not checked this run (e.g. another slice)
    store.record_drift(r2, [item("a")], ["a", "b"], now2)
    rows = {(r["subject_key"], r["drift_class"]): r for r in store.drift_items()}
    assert rows[("a", "missed_optout")]["status"] == "open"
    for key in [("a", "missed_blocklist"), ("b", "missed_optout")]:
        assert (rows[key]["status"], rows[key]["resolved_at"], rows[key]["resolved_run"]) == (
            "resolved",
            now2,
            r2,
        )
    assert rows[("c", "missed_optout")]["status"] == "open"
    assert store.open_subjects() == {"a", "c"}


def test_resolved_drift_that_returns_opens_a_new_row(store: Store) -> None:
    r1, now1 = run(store, 1)
    first = store.record_drift(r1, [item("a")], ["a"], now1)
    r2, now2 = run(store, 2)
    store.record_drift(r2, [], ["a"], now2)
    r3, now3 = run(store, 3)
    third = store.record_drift(r3, [item("a")], ["a"], now3)
    assert third != first
    assert by_status(store) == {"resolved": ["a"], "open": ["a"]}


def test_verified_rows_are_history(store: Store) -> None:
    r1, now1 = run(store, 1)
    ids = store.record_drift(r1, [item("a"), item("b")], ["a", "b"], now1)
    a_id, b_id = ids[("a", "missed_optout", "group:g1")], ids[("b", "missed_optout", "group:g1")]
    action = correction(store, r1, now1)
    assert store.mark_corrected([a_id, b_id], action, now1 + timedelta(minutes=5)) == 2
    assert store.mark_verified([a_id], now1 + timedelta(minutes=15)) == 1
    assert store.mark_corrected([a_id], action, now1) == 0  # verified never goes back
    r2, now2 = run(store, 2)
    again = store.record_drift(r2, [item("a"), item("b")], ["a", "b"], now2)
    assert again[("a", "missed_optout", "group:g1")] != a_id  # a new occurrence, new row
    assert again[("b", "missed_optout", "group:g1")] == b_id  # corrected but unverified: same row
    rows = {r["id"]: r for r in store.drift_items()}
    verified = rows[a_id]
    assert (verified["status"], verified["last_seen_run"], verified["corrected_action"]) == (
        "verified",
        r1,
        action,
    )
    assert verified["verified_at"] == now1 + timedelta(minutes=15)
    assert rows[b_id]["status"] == "corrected" and rows[b_id]["last_seen_run"] == r2
    r3, now3 = run(store, 3)
    store.record_drift(r3, [], ["a", "b"], now3)
    assert store.drift_items(run_id=r1, status="verified")[0]["id"] == a_id
    assert {r["status"] for r in store.drift_items() if r["id"] != a_id} == {"resolved"}


def test_reported_rows_stay_live_but_not_open(store: Store) -> None:
    r1, now1 = run(store, 1)
    ids = store.record_drift(r1, [item("a", "missed_optin", severity="low"), item("b")], ["a", "b"], now1)
    optin = ids[("a", "missed_optin", "group:g1")]
    assert store.mark_reported([optin, 99999]) == 1
    assert store.open_subjects() == {"b"}
    r2, now2 = run(store, 2)
    assert (
        store.record_drift(r2, [item("a", "missed_optin")], ["a"], now2)[("a", "missed_optin", "group:g1")]
        == optin
    )
    assert store.drift_items(status="reported")[0]["last_seen_run"] == r2
    r3, now3 = run(store, 3)
    store.record_drift(r3, [], ["a"], now3)
    assert store.drift_items(status="resolved")[0]["id"] == optin


def test_open_drift_and_filters(store: Store) -> None:
    r1, now1 = run(store, 1)
    ids = store.record_drift(r1, [item("a"), item("b"), item("c")], ["a", "b", "c"], now1)
    store.mark_corrected([ids[("b", "missed_optout", "group:g1")]], correction(store, r1, now1), now1)
    store.mark_verified([ids[("c", "missed_optout", "group:g1")]], now1)
    assert [r["subject_key"] for r in store.open_drift()] == ["a", "b"]
    assert [r["subject_key"] for r in store.open_drift(["b", "c", "zzz"])] == ["b"]
    assert store.open_drift([]) == []
    assert store.open_subjects() == {"a", "b"}
    assert len(store.drift_items(run_id=r1)) == 3 and store.drift_items(run_id="other") == []
    assert [r["subject_key"] for r in store.drift_items(status=["open", "verified"])] == ["a", "c"]


def test_duplicate_items_in_one_call_make_one_row(store: Store) -> None:
    r1, now1 = run(store, 1)
    ids = store.record_drift(r1, [item("a", actual="x"), item("a", actual="y")], ["a"], now1)
    assert len(set(ids.values())) == 1
    (row,) = store.drift_items()
    assert row["actual"] == "y"


def test_pandas_values_and_datetimes_in_detail(store: Store) -> None:
    pd = pytest.importorskip("pandas")
    r1, now1 = run(store, 1)
    collected = pd.Timestamp("2026-03-01T12:00:00", tz="UTC")
    subjects = pd.Series(["a", "b"])
    detail = {"identity": "a@x.com", "seen": datetime(2026, 3, 1, tzinfo=timezone.utc)}
    store.record_drift(r1, [item("a", ketch_collected_at=collected, detail=detail)], subjects, now1)
    (row,) = store.drift_items()
    assert row["ketch_collected_at"] == datetime(2026, 3, 1, 12, tzinfo=timezone.utc)
    assert row["detail"] == {"identity": "a@x.com", "seen": "2026-03-01T00:00:00+00:00"}


def test_drift_needs_a_recorded_run(store: Store) -> None:
    from reconcile.errors import StoreError

    with pytest.raises(StoreError, match="record_drift failed"):
        store.record_drift("no-such-run", [item("a")], ["a"], T0)


@pytest.mark.slow
def test_bulk_record_drift(store: Store) -> None:
    n = 50_000
    subjects = [f"user-{i:06d}@example.com" for i in range(n)]
    r1, now1 = run(store, 1)
    first = store.record_drift(r1, [item(s) for s in subjects], subjects, now1)
    assert len(set(first.values())) == n
    r2, now2 = run(store, 2)
    second = store.record_drift(r2, [item(s, reason="again") for s in subjects], subjects, now2)
    assert second == first
    r3, now3 = run(store, 3)
    store.record_drift(r3, [item(s) for s in subjects[: n // 2]], subjects, now3)
    assert len(store.open_subjects()) == n // 2
    assert len(store.open_drift(subjects[-2000:])) == 0
    assert store.mark_reported(first[(s, "missed_optout", "group:g1")] for s in subjects[:2000]) == 2000
    assert len(store.drift_items(run_id=r3, status="resolved")) == n // 2
