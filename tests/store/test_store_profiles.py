"""The address -> Braze profiles mapping on SQLite and PostgreSQL: upsert, read by address,
replace what a fresh read of some addresses found, forget deleted profiles, 100k rows."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest

from reconcile.errors import StoreError
from reconcile.store.store import Store

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
T1 = T0 + timedelta(days=1)


@pytest.fixture
def runs(store: Store) -> Store:
    store.start_run("r1", mode="full", config_hash="h", started_at=T0)
    store.start_run("r2", mode="full", config_hash="h", started_at=T1)
    return store


def known(store: Store, email_keys: list[str] | None = None) -> set[tuple[str, str, str | None]]:
    frame = store.braze_profiles(email_keys)
    return {
        (r.email_key, r.braze_id, None if pd.isna(r.external_id) else r.external_id) for r in frame.itertuples()
    }


def test_upsert_normalizes_addresses_and_reads_back_a_frame(runs: Store) -> None:
    rows = [
        {"email_key": "  Ann@Example.COM ", "braze_id": "b1", "external_id": "u1"},
        {"email_key": "ann@example.com", "braze_id": "b2", "external_id": None},
        {"email_key": "bob@example.com", "braze_id": "b3", "external_id": "u3"},
    ]
    assert runs.upsert_braze_profiles(rows, T0, "r1") == 3
    frame = runs.braze_profiles(["ANN@example.com"])
    assert list(frame.columns) == ["email_key", "braze_id", "external_id", "last_seen_at"]
    assert frame["braze_id"].tolist() == ["b1", "b2"]
    assert frame["external_id"].isna().tolist() == [False, True]
    assert (frame["last_seen_at"] == pd.Timestamp(T0)).all()
    assert str(frame["last_seen_at"].dt.tz) == "UTC"
    assert len(runs.braze_profiles()) == 3
    assert runs.braze_profiles(["nobody@example.com"]).empty
    assert list(runs.braze_profiles([]).columns) == ["email_key", "braze_id", "external_id", "last_seen_at"]


def test_upsert_of_a_known_profile_moves_it_and_keeps_first_seen(runs: Store, store_url: str) -> None:
    runs.upsert_braze_profiles([{"email_key": "a@x.io", "braze_id": "b1", "external_id": None}], T0, "r1")
    frame = pd.DataFrame([{"email_key": "new@x.io", "braze_id": "b1", "external_id": "u1"}])
    runs.upsert_braze_profiles(frame, T1, "r2")
    assert known(runs) == {("new@x.io", "b1", "u1")}
    assert runs.braze_profiles()["last_seen_at"].tolist() == [pd.Timestamp(T1)]
    from sqlalchemy import select

    from reconcile.store.schema import braze_profiles

    with runs._read("test") as conn:
        row = conn.execute(select(braze_profiles)).one()
    assert (row.first_seen_at, row.last_seen_at, row.run_id) == (T0, T1, "r2")


def test_dataframe_with_missing_values_and_duplicate_ids(runs: Store) -> None:
    frame = pd.DataFrame(
        {
            "email_key": ["a@x.io", "a@x.io", "c@x.io"],
            "braze_id": ["b1", "b1", "b3"],
            "external_id": pd.Series(["old", "u1", pd.NA], dtype="string"),
            "extra": [1, 2, 3],
        }
    )
    assert runs.upsert_braze_profiles(frame, T0, "r1") == 2
    assert known(runs) == {("a@x.io", "b1", "u1"), ("c@x.io", "b3", None)}


@pytest.mark.parametrize(
    "rows, message",
    [
        ([{"email_key": "a@x.io", "braze_id": None, "external_id": None}], "without a braze_id"),
        ([{"email_key": " ", "braze_id": "b1", "external_id": None}], "without a braze_id or email_key"),
        (pd.DataFrame({"email_key": ["a@x.io"], "braze_id": ["b1"]}), "lacks column"),
    ],
)
def test_bad_rows_are_refused_without_writing(runs: Store, rows: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        runs.upsert_braze_profiles(rows, T0, "r1")  # type: ignore[arg-type]
    assert runs.braze_profiles().empty


def test_unknown_run_is_a_store_error(runs: Store) -> None:
    with pytest.raises(StoreError, match="upsert_braze_profiles failed"):
        runs.upsert_braze_profiles([{"email_key": "a@x.io", "braze_id": "b1", "external_id": None}], T0, "ghost")


def test_replace_drops_profiles_no_longer_at_the_address(runs: Store) -> None:
    runs.upsert_braze_profiles(
        [
            {"email_key": "a@x.io", "braze_id": "b1", "external_id": "u1"},
            {"email_key": "a@x.io", "braze_id": "b2", "external_id": "u2"},
            {"email_key": "b@x.io", "braze_id": "b3", "external_id": "u3"},
            {"email_key": "c@x.io", "braze_id": "b4", "external_id": "u4"},
        ],
        T0,
        "r1",
    )
    fresh = [
        {"email_key": "A@x.io", "braze_id": "b2", "external_id": "u2"},
        {"email_key": "a@x.io", "braze_id": "b5", "external_id": None},
    ]
    assert runs.replace_braze_profiles_for(["a@X.io", "b@x.io"], fresh, T1, "r2") == 2
    assert known(runs) == {("a@x.io", "b2", "u2"), ("a@x.io", "b5", None), ("c@x.io", "b4", "u4")}


def test_replace_keeps_a_profile_that_moved_between_read_addresses(runs: Store) -> None:
    runs.upsert_braze_profiles([{"email_key": "a@x.io", "braze_id": "b1", "external_id": "u1"}], T0, "r1")
    moved = [{"email_key": "b@x.io", "braze_id": "b1", "external_id": "u1"}]
    runs.replace_braze_profiles_for(["a@x.io", "b@x.io"], moved, T1, "r2")
    assert known(runs) == {("b@x.io", "b1", "u1")}


def test_replace_refuses_rows_for_other_addresses(runs: Store) -> None:
    runs.upsert_braze_profiles([{"email_key": "a@x.io", "braze_id": "b1", "external_id": None}], T0, "r1")
    stray = [{"email_key": "z@x.io", "braze_id": "b9", "external_id": None}]
    with pytest.raises(ValueError, match="1 row\\(s\\) hold an address not in email_keys"):
        runs.replace_braze_profiles_for(["a@x.io"], stray, T1, "r2")
    assert known(runs) == {("a@x.io", "b1", None)}


def test_forget_drops_only_the_given_profiles(runs: Store) -> None:
    runs.upsert_braze_profiles(
        [{"email_key": "a@x.io", "braze_id": f"b{i}", "external_id": None} for i in range(3)], T0, "r1"
    )
    assert runs.forget_braze_profiles(["b0", "b2", "never-seen"]) == 2
    assert known(runs) == {("a@x.io", "b1", None)}
    assert runs.forget_braze_profiles([]) == 0


def test_hundred_thousand_profiles(runs: Store) -> None:
    n = 100_000
    frame = pd.DataFrame(
        {
            "email_key": [f"user{i // 2}@example.com" for i in range(n)],
            "braze_id": [f"b{i:06d}" for i in range(n)],
            "external_id": [f"u{i}" if i % 3 else None for i in range(n)],
        }
    )
    started = time.perf_counter()
    runs.upsert_braze_profiles(frame, T0, "r1")
    keys = [f"user{i}@example.com" for i in range(n // 2)]
    runs.replace_braze_profiles_for(keys, frame.iloc[::2], T1, "r2")
    read = runs.braze_profiles(keys)
    elapsed = time.perf_counter() - started
    assert len(read) == n // 2 and set(read["braze_id"]) == set(frame["braze_id"].iloc[::2])
    assert (read["last_seen_at"] == pd.Timestamp(T1)).all()
    assert runs.forget_braze_profiles(read["braze_id"].iloc[:1000]) == 1000
    assert len(runs.braze_profiles()) == n // 2 - 1000
    print(f"100k profiles: upsert + replace + read in {elapsed:.1f}s")


@pytest.mark.parametrize("batch", [1, 2, 3, 10_000])
def test_replace_in_batches_equals_the_whole_replace(runs: Store, batch: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Written a few addresses a transaction, a replace leaves what one replace of all of
    them would: profiles moved between addresses of different batches (either order) end
    at their new address with their first_seen_at, profiles gone from a read address are
    dropped, addresses not read keep theirs."""
    import random

    from reconcile.store import profiles as store_profiles

    monkeypatch.setattr(store_profiles, "WRITE_BATCH", batch)
    rng = random.Random(batch)
    addresses = [f"a{i}@x.io" for i in range(9)]
    before = {f"b{i}": (rng.choice(addresses), rng.choice([None, f"u{i}"])) for i in range(20)}
    runs.upsert_braze_profiles([{"email_key": a, "braze_id": b, "external_id": x} for b, (a, x) in before.items()],
                               T0, "r1")
    read = set(rng.sample(addresses, 6))
    fresh = {b: (rng.choice(sorted(read)), x) for b, (a, x) in before.items() if rng.random() < 0.6}
    fresh.update({f"n{i}": (rng.choice(sorted(read)), None) for i in range(3)})
    runs.replace_braze_profiles_for(sorted(read), [{"email_key": a, "braze_id": b, "external_id": x}
                                                   for b, (a, x) in fresh.items()], T1, "r2")
    expected = {b: ax for b, ax in before.items() if ax[0] not in read} | fresh
    assert known(runs) == {(a, b, x) for b, (a, x) in expected.items()}
    from sqlalchemy import select

    from reconcile.store.schema import braze_profiles

    with runs._read("test") as conn:
        firsts = {r.braze_id: r.first_seen_at for r in conn.execute(select(braze_profiles))}
    kept = [b for b in fresh if b in before]
    assert kept and len(expected) > len(fresh)
    assert all(firsts[b] == T0 for b in kept) and all(firsts[b] == T1 for b in fresh if b not in before)
