"""Sliced sweeps shared by workers: which slices of a job's sweep are pending, claimed or done.

    open_sweep      find or create the job's sweep (and its K slice rows), atomically
    claim_slice     SELECT ... FOR UPDATE SKIP LOCKED: a pending slice, or a claimed one whose
                    lease ended (its worker is gone); marked claimed by the caller with a lease
    renew_slice     extend the caller's lease (the worker's heartbeat)
    finish_slice    done or failed, with the run; the sweep is done when no slice is left
    release_slice   give a claimed slice back (pending) when its worker stops early

On SQLite (one worker) write transactions are `BEGIN IMMEDIATE`, so the same statements are
serialised without row locks. Time is always the caller's `now`.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, select, text, update

from reconcile.errors import StoreError
from reconcile.store.base import Row, StoreBase
from reconcile.store.locks import advisory_key
from reconcile.store.schema import sweep_slices, sweeps

log = logging.getLogger(__name__)
UNFINISHED = ("pending", "claimed")


class SweepsMixin(StoreBase):
    """Create, claim, renew and finish the slices of sliced sweeps."""

    def open_sweep(self, job: str, slices: int, now: datetime, sweep_id: str | None = None) -> Row:
        """The sweep `sweep_id` (created with `slices` slices if new), or without an id the
        job's open sweep, else a new one. Concurrent callers get the same sweep."""
        if slices < 1:
            raise ValueError("slices must be at least 1")
        with self._write("open_sweep") as conn:
            if self._dialect == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": advisory_key("sweep\0" + job)})
            if sweep_id is not None:
                found = _row(conn, select(sweeps).where(sweeps.c.sweep_id == sweep_id))
                if found is not None and found["job"] != job:
                    raise StoreError(f"sweep {sweep_id!r} belongs to job {found['job']!r}, not {job!r}; "
                                     "give each job its own sweep id")
            else:
                found = _row(conn, select(sweeps).where((sweeps.c.job == job) & (sweeps.c.status == "open"))
                             .order_by(sweeps.c.started_at.desc(), sweeps.c.sweep_id.desc()).limit(1))
                sweep_id = f"{job}@{now.strftime('%Y%m%dT%H%M%S.%fZ')}"
            if found is not None:
                return found
            conn.execute(sweeps.insert().values(sweep_id=sweep_id, job=job, slices=slices, status="open",
                                                started_at=now))
            conn.execute(sweep_slices.insert(), [{"sweep_id": sweep_id, "slice": k, "status": "pending",
                                                  "attempts": 0} for k in range(slices)])
            created = _row(conn, select(sweeps).where(sweeps.c.sweep_id == sweep_id))
        assert created is not None
        log.info("sweep %s of job %s started with %d slices", sweep_id, job, slices)
        return created

    def claim_slice(self, sweep_id: str, holder: str, now: datetime, lease_seconds: float) -> Row | None:
        """Claim the first pending slice, else the first whose lease ended; None if none is free.
        The row returned has `previous_holder` (the worker a lapsed claim was taken from)."""
        claimable = ((sweep_slices.c.status == "pending")
                     | ((sweep_slices.c.status == "claimed") & (sweep_slices.c.lease_until <= now)))
        query = (select(sweep_slices).where((sweep_slices.c.sweep_id == sweep_id) & claimable)
                 .order_by((sweep_slices.c.status == "claimed"), sweep_slices.c.slice).limit(1)
                 .with_for_update(skip_locked=True))
        with self._write("claim_slice") as conn:
            row = _row(conn, query)
            if row is None:
                return None
            fields = {"status": "claimed", "claimed_by": holder, "claimed_at": now,
                      "lease_until": now + timedelta(seconds=lease_seconds), "attempts": row["attempts"] + 1}
            conn.execute(update(sweep_slices).where(_key(sweep_id, row["slice"])).values(**fields))
        previous = row["claimed_by"] if row["status"] == "claimed" else None
        return {**row, **fields, "previous_holder": previous}

    def renew_slice(self, sweep_id: str, slice_index: int, holder: str, now: datetime, lease_seconds: float) -> bool:
        """Extend `holder`'s claim; False when the slice is no longer claimed by it."""
        stmt = (update(sweep_slices).where(_key(sweep_id, slice_index) & _mine(holder))
                .values(lease_until=now + timedelta(seconds=lease_seconds)))
        with self._write("renew_slice") as conn:
            return bool(conn.execute(stmt).rowcount)

    def finish_slice(self, sweep_id: str, slice_index: int, holder: str, now: datetime, *, failed: bool = False,
                     run_id: str | None = None, exit_code: int | None = None, error: str | None = None) -> bool:
        """Mark `holder`'s slice done (or failed); closes the sweep when it was the last one."""
        fields = {"status": "failed" if failed else "done", "finished_at": now, "lease_until": None,
                  "run_id": run_id, "exit_code": exit_code, "error": (error or None) and error[:2000]}
        with self._write("finish_slice") as conn:
            if not conn.execute(update(sweep_slices).where(_key(sweep_id, slice_index) & _mine(holder))
                                .values(**fields)).rowcount:
                return False
            left = conn.scalar(select(func.count()).select_from(sweep_slices).where(
                (sweep_slices.c.sweep_id == sweep_id) & sweep_slices.c.status.in_(UNFINISHED)))
            if not left:
                conn.execute(update(sweeps).where((sweeps.c.sweep_id == sweep_id) & (sweeps.c.status == "open"))
                             .values(status="done", finished_at=now))
        return True

    def release_slice(self, sweep_id: str, slice_index: int, holder: str) -> bool:
        """Give `holder`'s claim back: the slice is pending again for any worker."""
        stmt = (update(sweep_slices).where(_key(sweep_id, slice_index) & _mine(holder))
                .values(status="pending", lease_until=None))
        with self._write("release_slice") as conn:
            return bool(conn.execute(stmt).rowcount)

    def get_sweep(self, sweep_id: str) -> Row | None:
        with self._read("get_sweep") as conn:
            return _row(conn, select(sweeps).where(sweeps.c.sweep_id == sweep_id))

    def sweep_slices(self, sweep_id: str) -> list[Row]:
        query = select(sweep_slices).where(sweep_slices.c.sweep_id == sweep_id).order_by(sweep_slices.c.slice)
        with self._read("sweep_slices") as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def list_sweeps(self, job: str | None = None, limit: int = 20) -> list[Row]:
        """The newest sweeps first (of `job` if given)."""
        query = select(sweeps).order_by(sweeps.c.started_at.desc(), sweeps.c.sweep_id.desc()).limit(limit)
        if job is not None:
            query = query.where(sweeps.c.job == job)
        with self._read("list_sweeps") as conn:
            return [dict(r._mapping) for r in conn.execute(query)]


def _row(conn: Connection, query: Any) -> Row | None:
    row = conn.execute(query).first()
    return dict(row._mapping) if row else None


def _key(sweep_id: str, slice_index: int) -> Any:
    return (sweep_slices.c.sweep_id == sweep_id) & (sweep_slices.c.slice == slice_index)


def _mine(holder: str) -> Any:
    return (sweep_slices.c.status == "claimed") & (sweep_slices.c.claimed_by == holder)
