"""One run per job at a time: a short lease, renewed by a heartbeat, fenced before every batch.

    with run_lock(rt, job="nightly") as lock:        # RunLocked (exit 6) if another run has it
        run_job(rt, ..., before_batch=lock.check)    # LockLost (exit 6) once the lease is gone

The lock's name is the Braze workspace (REST endpoint host and a hash of the API key, never
the key) and the job's name, so two jobs, or two workspaces sharing one state database, do
not block each other. The lease lasts `LEASE_SECONDS` and a heartbeat thread renews it every
third of that while the run lives; a renewal that finds the lease gone, or that cannot reach
the database before the lease would run out, marks the lock lost, and `check()` (called
before each batch) stops the run there: the batch already sent is journaled, the next one
is not sent.

A lease whose holder is dead is taken over at once, recorded in `lock_events`: on
PostgreSQL when the session-level advisory lock the holder kept on its own connection is
free (the server drops it when that connection dies), elsewhere when the holder ran in this
boot and PID namespace and its process is gone (`reconcile.pipeline.holder`). Any other
lease is honoured until it expires. `journal_sending` records the holder on each batch and
refuses a batch another live holder is sending.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any

from reconcile.errors import RunLocked
from reconcile.pipeline.holder import holder_name, identity, known_dead

from reconcile.pipeline.session import Session, workspace_id

log = logging.getLogger(__name__)

LEASE_SECONDS = 60.0
MANUAL = "manual"  # the job name of runs started without --job


class LockLost(RunLocked):
    """This run's lease was lost (expired, taken over or force-released) before it finished."""


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def lock_name(rest_endpoint: str, api_key: str, job: str | None) -> str:
    return f"{workspace_id(rest_endpoint, api_key)}/{job or MANUAL}"


def describe_holder(row: dict[str, Any] | None) -> str:
    if not row:
        return "nobody"
    ident = row.get("identity") or {}
    where = f" (pid {ident.get('pid')} on {ident.get('host')})" if ident.get("host") else ""
    renewed = row.get("renewed_at") or row.get("acquired_at")
    return (f"{row['holder']}{where} since {_iso(row.get('acquired_at'))}, renewed {_iso(renewed)}, "
            f"lease until {_iso(row.get('expires_at'))}")


def _iso(value: Any) -> str:
    return value.isoformat(timespec="seconds") if isinstance(value, datetime) else str(value)


class RunLock:
    """A job's lease held by this process (see the module docstring)."""

    def __init__(self, store: Any, name: str, *, job: str | None = None, lease_seconds: float = LEASE_SECONDS,
                 clock: Callable[[], datetime] = utc_now):
        if lease_seconds <= 0:
            raise ValueError("lease_seconds must be positive")
        self.store, self.name, self.job = store, name, job or MANUAL
        self.lease_seconds, self.clock = float(lease_seconds), clock
        self.identity = identity()
        self.holder = holder_name(self.identity)
        self.lost: str | None = None
        self._session: Any = None
        self._last_renewed: datetime | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def interval(self) -> float:
        return self.lease_seconds / 3

    # taking and giving back ------------------------------------------------------------

    def acquire(self) -> RunLock:
        """Take the lease (or a dead holder's) and start the heartbeat; RunLocked if held."""
        self._session = self.store.session_lock(self.name)
        try:
            if self._session is not None and not self._session.try_acquire():
                raise self._refused("its database session is alive")
            if not self._take():
                raise self._refused("its lease has not expired")
        except BaseException:
            self._close_session()
            raise
        self.store.lock_owner = self.holder
        self._thread = threading.Thread(target=self._beat, name=f"lease {self.job}", daemon=True)
        self._thread.start()
        log.info("run lock %s taken by %s (lease %.0fs)", self.name, self.holder, self.lease_seconds)
        return self

    def _take(self) -> bool:
        now = self.clock()
        if self.store.acquire_lock(self.name, self.holder, now, self.lease_seconds, self.identity):
            self._last_renewed = now
            return True
        current = self.store.lock_holder(self.name)
        if current is None:  # released between the two statements
            return self._take_once_more()
        if self._session is not None:
            reason = "its database session ended (the advisory lock was free)"
        elif known_dead(current.get("identity"), self.identity):
            reason = "its process is gone (same host, boot and PID namespace)"
        else:
            return False
        if not self.store.take_over_lock(self.name, self.holder, current["holder"], now, self.lease_seconds,
                                         self.identity, reason):
            return False
        log.warning("run lock %s taken over from %s: %s", self.name, current["holder"], reason)
        self._last_renewed = now
        return True

    def _take_once_more(self) -> bool:
        now = self.clock()
        if self.store.acquire_lock(self.name, self.holder, now, self.lease_seconds, self.identity):
            self._last_renewed = now
            return True
        return False

    def _refused(self, why: str) -> RunLocked:
        current = self.store.lock_holder(self.name)
        who = describe_holder(current) if current else "a process whose lease was released but which is still connected"
        return RunLocked(
            f"another run of job {self.job!r} holds the run lock {self.name}: {who} ({why}). "
            "Wait for it to finish; if that process is gone, the lock frees itself when the lease ends "
            f"(at most {self.lease_seconds:.0f}s), or run `reconcile lock release --force` for this job")

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.lease_seconds)
        if getattr(self.store, "lock_owner", None) == self.holder:
            self.store.lock_owner = None
        try:
            self.store.release_lock(self.name, self.holder)
        finally:
            self._close_session()
        log.info("run lock %s released by %s", self.name, self.holder)

    def _close_session(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    # staying the holder ------------------------------------------------------------------

    def check(self) -> None:
        """Fencing: raise LockLost unless this process still holds a live lease (before each batch)."""
        if self.lost is None:
            now = self.clock()
            if self._session is not None and not self._session.alive():
                self._lose("the database session holding the advisory lock ended")
            elif not self.store.holds_lock(self.name, self.holder, now):
                current = self.store.lock_holder(self.name)
                self._lose("the lease expired" if current and current["holder"] == self.holder
                           else f"the lease is now held by {describe_holder(current)}" if current
                           else "the lease was released (forced)")
        if self.lost is not None:
            raise LockLost(f"run lock {self.name} lost: {self.lost}; stopped before the next batch "
                           "(the batches already sent are journaled, the next run resumes the rest)")

    def _lose(self, why: str) -> None:
        if self.lost is None:
            self.lost = why
            log.error("run lock %s lost by %s: %s", self.name, self.holder, why)

    def renew(self) -> bool:
        """One heartbeat: extend the lease; False (and lost) when it is no longer ours."""
        now = self.clock()
        if self._session is not None and not self._session.alive():
            self._lose("the database session holding the advisory lock ended")
            return False
        if not self.store.renew_lock(self.name, self.holder, now, self.lease_seconds):
            current = self.store.lock_holder(self.name)
            self._lose(f"the lease is now held by {describe_holder(current)}" if current
                       else "the lease was released (forced)")
            return False
        self._last_renewed = now
        return True

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                if not self.renew():
                    return
            except Exception as exc:  # noqa: BLE001 - the database may come back before the lease runs out
                last = self._last_renewed or self.clock()
                left = last + timedelta(seconds=self.lease_seconds) - self.clock()
                log.warning("run lock %s: renewal failed (%s); %.0fs of lease left", self.name,
                            type(exc).__name__, left.total_seconds())
                if left.total_seconds() <= self.interval:
                    self._lose(f"the lease could not be renewed ({type(exc).__name__}) before it ran out")
                    return


@contextmanager
def run_lock(rt: Session, job: str | None = None, *, api_key: str | None = None,
             lease_seconds: float = LEASE_SECONDS) -> Iterator[RunLock]:
    """Hold `job`'s run lock for the block, or raise RunLocked (exit 6). The lock is named
    for the session's Braze workspace (or the workspace of `api_key`, when given)."""
    workspace = rt.workspace if api_key is None else workspace_id(rt.cfg.braze.rest_endpoint, api_key)
    lock = RunLock(rt.store, f"{workspace}/{job or MANUAL}", job=job, lease_seconds=lease_seconds).acquire()
    try:
        yield lock
    finally:
        lock.release()
