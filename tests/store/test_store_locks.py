"""The run lock: acquire, contend, expire, release, and a real race between connections."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest

from reconcile.store.store import Store

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


def test_acquire_contend_renew_release(store: Store) -> None:
    assert store.lock_holder("apply") is None
    assert store.acquire_lock("apply", "cron-1", T0, 600)
    assert not store.acquire_lock("apply", "cli-7", T0 + timedelta(seconds=30), 600)
    assert store.acquire_lock("apply", "cron-1", T0 + timedelta(seconds=60), 600)  # renew
    holder = store.lock_holder("apply")
    assert holder["holder"] == "cron-1"
    assert holder["expires_at"] == T0 + timedelta(seconds=660)
    assert not store.release_lock("apply", "cli-7")
    assert store.lock_holder("apply")["holder"] == "cron-1"
    assert store.release_lock("apply", "cron-1")
    assert store.lock_holder("apply") is None
    assert store.acquire_lock("apply", "cli-7", T0 + timedelta(seconds=90), 600)


def test_expired_lock_is_taken_over(store: Store) -> None:
    assert store.acquire_lock("apply", "crashed", T0, 60)
    assert not store.acquire_lock("apply", "next", T0 + timedelta(seconds=59), 60)
    assert store.acquire_lock("apply", "next", T0 + timedelta(seconds=60), 60)
    assert store.lock_holder("apply")["holder"] == "next"
    assert not store.release_lock("apply", "crashed")


def test_locks_are_independent_by_name(store: Store) -> None:
    assert store.acquire_lock("apply", "a", T0, 60)
    assert store.acquire_lock("report", "b", T0, 60)
    assert store.lock_holder("report")["holder"] == "b"


def test_ttl_must_be_positive(store: Store) -> None:
    with pytest.raises(ValueError):
        store.acquire_lock("apply", "a", T0, 0)


def test_only_one_of_many_racing_stores_wins(store: Store, store_url: str) -> None:
    contenders = [Store.open(store_url) for _ in range(6)]
    barrier = threading.Barrier(len(contenders))
    results: dict[int, bool] = {}

    def contend(i: int, other: Store) -> None:
        barrier.wait()
        results[i] = other.acquire_lock("apply", f"worker-{i}", T0, 600)

    threads = [threading.Thread(target=contend, args=(i, s)) for i, s in enumerate(contenders)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    finally:
        for other in contenders:
            other.close()
    assert sorted(results.values()) == [False] * 5 + [True]
    winner = next(i for i, won in results.items() if won)
    assert store.lock_holder("apply")["holder"] == f"worker-{winner}"
