"""The run lock on SQLite and PostgreSQL: one run per job, jobs independent, leases renewed by a
heartbeat, a lost lease stopping the run before its next batch, a SIGKILLed holder freed
without waiting for its lease, and the journal's compare-and-set on each batch."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from reconcile.errors import ExitCode, RunLocked
from reconcile.pipeline.lock import LockLost, RunLock, lock_name
from reconcile.store.store import Store

ROOT = Path(__file__).resolve().parents[2]
NAME = lock_name("https://rest.iad-01.braze.com", "workspace-key-1", "nightly")
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def test_lock_names_are_per_workspace_and_job_and_never_carry_the_key():
    a = lock_name("https://rest.iad-01.braze.com", "workspace-key-1", "nightly")
    assert a.startswith("rest.iad-01.braze.com/") and a.endswith("/nightly") and "workspace-key-1" not in a
    assert a != lock_name("https://rest.iad-01.braze.com", "workspace-key-2", "nightly")
    assert a != lock_name("https://rest.iad-01.braze.com", "workspace-key-1", "hourly")
    assert lock_name("https://rest.iad-01.braze.com", "k", None).endswith("/manual")


def test_a_second_run_of_one_job_is_refused_with_exit_6_and_who_holds_it(store: Store):
    first = RunLock(store, NAME, job="nightly").acquire()
    try:
        with pytest.raises(RunLocked) as err:
            RunLock(store, NAME, job="nightly").acquire()
        message = str(err.value)
        assert err.value.exit_code == ExitCode.LOCKED == 6
        assert "another run of job 'nightly' holds the run lock" in message
        assert first.holder in message and f"pid {os.getpid()}" in message and "lease until" in message
        assert store.lock_holder(NAME)["holder"] == first.holder
    finally:
        first.release()
    assert store.lock_holder(NAME) is None
    RunLock(store, NAME, job="nightly").acquire().release()


def test_two_different_jobs_run_at_once(store: Store):
    other = lock_name("https://rest.iad-01.braze.com", "workspace-key-1", "hourly")
    a, b = RunLock(store, NAME, job="nightly").acquire(), RunLock(store, other, job="hourly").acquire()
    try:
        a.check()
        b.check()
        assert {r["name"] for r in store.list_locks()} == {NAME, other}
    finally:
        a.release()
        b.release()


def test_the_heartbeat_renews_a_short_lease_while_the_run_lives(store: Store):
    lock = RunLock(store, NAME, lease_seconds=0.6).acquire()
    try:
        first = store.lock_holder(NAME)["expires_at"]
        wait_for(lambda: store.lock_holder(NAME)["expires_at"] > first + timedelta(seconds=0.3), 5, "a renewal")
        time.sleep(0.7)  # longer than the lease itself
        lock.check()
        assert store.holds_lock(NAME, lock.holder, datetime.now(timezone.utc))
    finally:
        lock.release()


def test_a_lease_lost_to_a_forced_release_stops_the_holder_before_its_next_batch(store: Store):
    lock = RunLock(store, NAME, job="nightly").acquire()
    try:
        lock.check()
        removed = store.force_release_lock(NAME, "ops@bastion", datetime.now(timezone.utc), "pod gone")
        assert removed["holder"] == lock.holder
        with pytest.raises(LockLost) as err:
            lock.check()
        assert err.value.exit_code == 6 and "the lease was released (forced)" in str(err.value)
        assert "stopped before the next batch" in str(err.value)
        if store.has_session_locks:  # the holder is still connected: nobody else sends until it is gone
            with pytest.raises(RunLocked, match="still connected"):
                RunLock(store, NAME, job="nightly").acquire()
    finally:
        lock.release()
    (event,) = store.lock_events(NAME)
    assert (event["event"], event["holder"], event["by"]) == ("forced_release", lock.holder, "ops@bastion")
    assert event["detail"]["reason"] == "pod gone"
    RunLock(store, NAME, job="nightly").acquire().release()


def test_a_lease_taken_by_another_holder_after_it_expired_stops_the_first(store: Store):
    lock = RunLock(store, NAME, job="nightly", lease_seconds=600).acquire()
    try:
        lock._stop.set()  # no more heartbeats: as if the process had hung
        past = datetime.now(timezone.utc) + timedelta(seconds=601)
        assert store.acquire_lock(NAME, "other:1:abc", past, 600)
        with pytest.raises(LockLost, match="the lease is now held by other:1:abc"):
            lock.check()
    finally:
        lock.release()
    assert store.lock_holder(NAME)["holder"] == "other:1:abc", "releasing a lost lock leaves the new holder's lease"


def test_a_renewal_that_keeps_failing_marks_the_lock_lost_before_the_lease_runs_out(store: Store, monkeypatch):
    lock = RunLock(store, NAME, lease_seconds=0.9).acquire()
    try:
        from reconcile.errors import StoreError

        def down(*_a, **_k):
            raise StoreError("state store: connection refused")

        monkeypatch.setattr(store, "renew_lock", down)
        wait_for(lambda: lock.lost is not None, 5, "the lock to be marked lost")
        assert "could not be renewed" in lock.lost
        with pytest.raises(LockLost):
            lock.check()
    finally:
        monkeypatch.undo()
        lock.release()


HOLDER = """
import sys, time
from reconcile.pipeline.lock import RunLock
from reconcile.store.store import Store
store = Store.open(sys.argv[1])
lock = RunLock(store, sys.argv[2], job="nightly", lease_seconds=600).acquire()
print(lock.holder, flush=True)
time.sleep(120)
"""


def test_a_holder_killed_with_sigkill_is_freed_without_waiting_for_its_lease(store: Store, store_url: str):
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(HOLDER), store_url, NAME], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        dead = proc.stdout.readline().strip()
        assert dead, proc.stderr.read()
        with pytest.raises(RunLocked):
            RunLock(store, NAME, job="nightly").acquire()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    started = time.monotonic()
    mine = None
    while mine is None:
        try:
            mine = RunLock(store, NAME, job="nightly").acquire()
        except RunLocked:
            assert time.monotonic() - started < 10, "the dead holder's 600 s lease was waited for"
            time.sleep(0.1)
    try:
        assert store.lock_holder(NAME)["holder"] == mine.holder
        (event,) = store.lock_events(NAME)
        assert (event["event"], event["holder"], event["by"]) == ("taken_over", dead, mine.holder)
        expected = "database session ended" if store.has_session_locks else "its process is gone"
        assert expected in event["detail"]["reason"]
    finally:
        mine.release()


def _journaled(store: Store) -> None:
    store.start_run("run-t", mode="full", config_hash="h", started_at=T0)
    store.save_plan("plan-t", "run-t", "fp", {"plan_id": "plan-t"}, T0)
    store.journal_plan("plan-t", "run-t", [
        {"action_id": f"plan-t:{i}", "seq": i, "endpoint": "/users/delete", "kind": "delete", "payload": {},
         "subject_keys": [f"s{i}"], "drift_ids": [i]} for i in range(2)], T0)


def test_journal_sending_is_a_compare_and_set_no_two_holders_send_one_batch(store: Store, store_url: str):
    _journaled(store)
    with Store.open(store_url) as other_store:
        a = RunLock(store, NAME, job="nightly").acquire()
        b = RunLock(other_store, lock_name("https://rest.iad-01.braze.com", "workspace-key-1", "b"), job="b").acquire()
        try:
            now = datetime.now(timezone.utc)
            store.journal_sending("plan-t:0", now)
            assert store.actions(plan_id="plan-t")[0]["holder"] == a.holder
            with pytest.raises(RunLocked, match=f"is being sent by {a.holder}, which still holds its run lease"):
                other_store.journal_sending("plan-t:0", now)
            assert store.actions(plan_id="plan-t")[0]["attempts"] == 1
            a.release()  # a's process is gone: its batch left `sending` may be taken
            other_store.journal_sending("plan-t:0", now)
            row = other_store.actions(plan_id="plan-t")[0]
            assert (row["status"], row["holder"], row["attempts"]) == ("sending", b.holder, 2)
            other_store.force_release_lock(b.name, "ops", now)
            with pytest.raises(RunLocked, match="no longer holds its run lease"):
                other_store.journal_sending("plan-t:1", now)
            assert other_store.actions(plan_id="plan-t")[1]["status"] == "pending"
        finally:
            a.release()
            b.release()


def test_a_run_whose_lease_is_lost_mid_apply_stops_before_its_next_batch(pg_world):
    from reconcile.pipeline.job import run_job
    from reconcile.pipeline.lock import run_lock

    w = pg_world
    cfg = w.config(guards={"max_unsubscribe_fraction": 1.0, "max_deletion_fraction": 1.0, "max_deletions": 10000})
    w.seed(cfg, subjects=600, drift=0.3)
    with w.runtime(cfg) as rt:
        with pytest.raises(LockLost) as err:
            with run_lock(rt, "nightly") as lock:
                checks = []

                def before_batch() -> None:
                    checks.append(1)
                    if len(checks) == 3:  # two batches sent: an operator force-releases the lock
                        rt.store.force_release_lock(lock.name, "ops", datetime.now(timezone.utc), "test")
                    lock.check()

                run_job(rt, before_batch=before_batch, job="nightly")
        (run,) = rt.store.list_runs(5)
        actions = rt.store.actions(plan_id=run["plan_id"])
    assert err.value.exit_code == 6
    assert (run["status"], run["exit_code"], run["job"]) == ("failed", 6, "nightly")
    assert "lost" in run["error"] and "stopped before the next batch" in run["error"]
    statuses = [a["status"] for a in actions]
    assert statuses.count("confirmed") == 2 and "sending" not in statuses and statuses.count("pending") >= 1
