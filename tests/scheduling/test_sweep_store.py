"""The sweep and shared-budget tables on SQLite and PostgreSQL: one sweep however many workers
open it at once, distinct slices for concurrent claims (FOR UPDATE SKIP LOCKED), a lapsed claim
taken over, the sweep closed by its last slice; the atomic take of a shared rate window under
threads, and two pacers' budgets sharing one window through it."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest

from reconcile.clients.pacing import RateBudget
from reconcile.clients.shared_budget import StoreBudget
from reconcile.config import RateLimit
from reconcile.store.store import Store

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


def test_workers_opening_a_sweep_at_once_join_one(store_url: str) -> None:
    stores = [Store.open(store_url) for _ in range(6)]
    try:
        start = threading.Barrier(len(stores))

        def join(store: Store) -> str:
            start.wait(timeout=10)
            return store.open_sweep("nightly", 4, T0)["sweep_id"]

        with ThreadPoolExecutor(len(stores)) as pool:
            ids = set(pool.map(join, stores))
        assert len(ids) == 1
        (sweep_id,) = ids
        assert [s["slice"] for s in stores[0].sweep_slices(sweep_id)] == [0, 1, 2, 3]
        assert len(stores[0].list_sweeps("nightly")) == 1
        assert stores[0].open_sweep("nightly", 4, T0, sweep_id="job-uid-1")["sweep_id"] == "job-uid-1"
        assert stores[0].open_sweep("nightly", 4, T0, sweep_id="job-uid-1")["sweep_id"] == "job-uid-1"
        with pytest.raises(Exception, match="belongs to job 'nightly'"):
            stores[0].open_sweep("hourly", 4, T0, sweep_id="job-uid-1")
    finally:
        for store in stores:
            store.close()


def test_concurrent_claims_get_distinct_slices_and_the_last_one_closes_the_sweep(store_url: str) -> None:
    stores = [Store.open(store_url) for _ in range(5)]
    try:
        sweep_id = stores[0].open_sweep("nightly", 8, T0)["sweep_id"]
        start = threading.Barrier(len(stores))

        def claim_all(i: int) -> list[int]:
            start.wait(timeout=10)
            got = []
            while (row := stores[i].claim_slice(sweep_id, f"w{i}", T0, 60)) is not None:
                got.append(row["slice"])
            return got

        with ThreadPoolExecutor(len(stores)) as pool:
            claimed = list(pool.map(claim_all, range(len(stores))))
        flat = sorted(s for got in claimed for s in got)
        assert flat == list(range(8)), claimed
        owner = {s: f"w{i}" for i, got in enumerate(claimed) for s in got}
        for s in range(7):
            assert stores[0].finish_slice(sweep_id, s, owner[s], T0, run_id=None, exit_code=0)
            assert stores[0].get_sweep(sweep_id)["status"] == "open"
        assert not stores[0].finish_slice(sweep_id, 7, "somebody-else", T0), "only the claimant finishes a slice"
        assert stores[0].finish_slice(sweep_id, 7, owner[7], T0, failed=True, exit_code=1, error="boom")
        sweep = stores[0].get_sweep(sweep_id)
        assert (sweep["status"], sweep["finished_at"]) == ("done", T0)
        assert stores[0].sweep_slices(sweep_id)[7]["status"] == "failed"
    finally:
        for store in stores:
            store.close()


def test_a_lapsed_claim_is_taken_over_and_a_renewed_one_is_not(store: Store) -> None:
    sweep_id = store.open_sweep("nightly", 2, T0)["sweep_id"]
    first = store.claim_slice(sweep_id, "a", T0, 30)
    second = store.claim_slice(sweep_id, "b", T0, 30)
    assert (first["slice"], second["slice"]) == (0, 1)
    assert store.claim_slice(sweep_id, "c", T0 + timedelta(seconds=10), 30) is None
    assert store.renew_slice(sweep_id, 1, "b", T0 + timedelta(seconds=20), 30)
    late = store.claim_slice(sweep_id, "c", T0 + timedelta(seconds=31), 30)
    assert (late["slice"], late["previous_holder"], late["attempts"]) == (0, "a", 2)
    assert not store.renew_slice(sweep_id, 0, "a", T0 + timedelta(seconds=32), 30), "the old claimant lost it"
    assert store.claim_slice(sweep_id, "c", T0 + timedelta(seconds=40), 30) is None
    assert store.release_slice(sweep_id, 1, "b")
    assert store.claim_slice(sweep_id, "c", T0 + timedelta(seconds=41), 30)["slice"] == 1


@pytest.mark.postgres
def test_the_shared_take_is_atomic_under_threads_on_postgresql(pg_database: str) -> None:
    stores = [Store.open(pg_database) for _ in range(8)]
    try:
        start = threading.Barrier(len(stores))

        def hammer(store: Store) -> list[int]:
            start.wait(timeout=10)
            taken = []
            for _ in range(60):
                used = store.take_budget("ws", "shared", 1000, limit=200)
                if used is not None:
                    taken.append(used)
            return taken

        with ThreadPoolExecutor(len(stores)) as pool:
            results = list(pool.map(hammer, stores))
        taken = sorted(u for r in results for u in r)
        assert taken == list(range(1, 201)), "every take got its own count, none beyond the limit"
        assert stores[0].budget_used("ws", "shared", 1000) == 200
        assert stores[0].budget_used("ws", "shared", 2000) == 0, "another window is untouched"
        assert stores[0].take_budget("other-ws", "shared", 1000, limit=200) == 1, "workspaces are separate"
        assert stores[0].take_budget("ws", "shared", 1000, limit=300, n=5) == 205
        assert stores[0].prune_budget("ws", "shared", 1001) == 1
        assert stores[0].budget_used("ws", "shared", 1000) == 0
    finally:
        for store in stores:
            store.close()


def test_two_processes_budgets_share_one_window_with_the_share_on_top(store: Store) -> None:
    now = [1_000_000_000.0]
    backend = StoreBudget(store, "ws")
    limit = RateLimit(20, 10)
    a, b = (RateBudget("shared", limit, lambda: now[0], share=0.5, backend=backend) for _ in range(2))
    sent = 0
    for budget in [a, b] * 10:
        if budget.reserve() == 0:
            sent += 1
    assert sent == 10, "both budgets together take the share (10 of 20), not 10 each"
    assert a.sent + b.sent == 10 and a.sent and b.sent
    wait = b.reserve()
    assert wait == pytest.approx(10.0), "the next send waits for the next window"
    assert b.usage()["cap_wait_seconds"] == pytest.approx(10.0)
    now[0] += 10
    assert a.reserve() == 0 and backend.used("shared", now[0]) == 1
    now[0] += 9.999  # a send reserved at the very end of its window is charged to the next one too
    assert b.reserve() == 0
    assert backend.used("shared", now[0] + 0.001) == 1
