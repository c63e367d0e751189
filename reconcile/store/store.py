"""The state store: the job's memory and its legal evidence.

`Store.open(url)` opens SQLite (default, a file) or PostgreSQL, migrates the schema to the
newest revision, and returns a `Store` with these parts:

    runs, run exceptions          this module
    drift items                   reconcile.store.drift
    plans, action journal         reconcile.store.journal
    run lock                      reconcile.store.locks
    address -> Braze profiles     reconcile.store.profiles
    sliced sweeps                 reconcile.store.sweeps
    shared Braze rate budgets     reconcile.store.budgets
    confirmed absences            reconcile.store.absence
    saved parts of chunked reads  reconcile.store.parts
    shared segment exports        reconcile.store.segment_exports
    queries of reports and CLI    reconcile.store.reporting
    tombstones, watermarks        this module

All timestamps are timezone-aware UTC datetimes supplied by the caller. Rows come back as
plain dicts. Failures of the database surface as `reconcile.errors.StoreError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from types import TracebackType
from typing import Any

from alembic.util import CommandError
from sqlalchemy import Connection, select, update
from sqlalchemy.engine import URL

from reconcile.errors import StoreError
from reconcile.models.run import RUN_STATUSES, RunStatus
from reconcile.store import migrate
from reconcile.store.base import (
    Row,
    ensure_sqlite_folder,
    make_engine,
    parse_url,
    safe_url,
)
from reconcile.store.absence import AbsenceMixin
from reconcile.store.budgets import BudgetsMixin
from reconcile.store.drift import DriftMixin
from reconcile.store.journal import JournalMixin
from reconcile.store.locks import LocksMixin
from reconcile.store.parts import PartsMixin
from reconcile.store.profiles import ProfilesMixin
from reconcile.store.prune import PruneMixin
from reconcile.store.reporting import ReportingMixin
from reconcile.store.segment_exports import SegmentExportsMixin
from reconcile.store.sweeps import SweepsMixin
from reconcile.store.schema import (
    RUN_FIELDS,
    run_exceptions,
    runs,
    tombstones,
    watermarks,
)

EXCEPTION_FIELDS = ("identity", "source", "reason")
TOMBSTONE_FIELDS = ("subject_key", "identity", "deleted_at", "run_id", "reason")


class Store(DriftMixin, JournalMixin, LocksMixin, ProfilesMixin, SweepsMixin, BudgetsMixin, AbsenceMixin, PruneMixin,
            PartsMixin, SegmentExportsMixin, ReportingMixin):
    """Runs, drift, plans, the action journal, tombstones, watermarks, locks, Braze profiles,
    sweeps, shared rate budgets, confirmed absences and saved parts of chunked reads."""

    @classmethod
    def open(cls, url: str | URL) -> Store:
        """Open (creating and migrating as needed) the state database at `url`."""
        parsed = parse_url(url)
        ensure_sqlite_folder(parsed)
        store = cls(make_engine(parsed), parsed)
        try:
            store._migrate()
        except BaseException:
            store.close()
            raise
        return store

    def _migrate(self) -> None:
        try:
            with self._guard("open"), self._engine.connect() as conn:
                with migrate.sqlite_foreign_keys_off(conn):
                    with conn.execution_options(sqlite_begin="IMMEDIATE").begin():
                        migrate.upgrade(conn, self.url)
        except CommandError as exc:
            raise StoreError(f"state store {self.url}: schema upgrade failed: {exc}") from exc

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({safe_url(self._url)!r})"

    # runs -------------------------------------------------------------------------------

    def start_run(
        self, run_id: str, *, mode: str, config_hash: str, started_at: datetime, job: str | None = None
    ) -> None:
        """Record a new run as `running`."""
        row = {"run_id": run_id, "mode": mode, "config_hash": config_hash, "started_at": started_at, "job": job}
        with self._write("start_run") as conn:
            conn.execute(runs.insert().values(**row, status=RunStatus.RUNNING.value))

    def update_run(self, run_id: str, **fields: Any) -> None:
        """Set any of the run's recorded fields (see `schema.RUN_FIELDS`).

        A `status` must be a `RunStatus` (or its exact value); anything else is a ValueError.
        `reconcile.pipeline.recorder.RunRecorder` is the writer of statuses; prefer it.
        """
        unknown = sorted(set(fields) - RUN_FIELDS)
        if unknown:
            raise TypeError(
                f"update_run: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(RUN_FIELDS))}"
            )
        if "status" in fields:
            fields["status"] = run_status(fields["status"]).value
        with self._write("update_run") as conn:
            _require_run(conn, run_id)
            if fields:
                conn.execute(update(runs).where(runs.c.run_id == run_id).values(**fields))

    def note_run(self, run_id: str, **notes: Any) -> None:
        """Merge `notes` into the run's `summary` JSON, keeping what else it holds (nothing
        happens for an unknown run: a note never creates one)."""
        with self._write("note_run") as conn:
            row = conn.execute(select(runs.c.summary).where(runs.c.run_id == run_id)).first()
            if row is not None:
                summary = {**(row.summary or {}), **notes}
                conn.execute(update(runs).where(runs.c.run_id == run_id).values(summary=summary))

    def get_run(self, run_id: str) -> Row | None:
        with self._read("get_run") as conn:
            row = conn.execute(select(runs).where(runs.c.run_id == run_id)).first()
        return dict(row._mapping) if row else None

    def list_runs(self, limit: int = 20, *, job: str | None = None, statuses: Sequence[str] = (),
                  since: datetime | None = None) -> list[Row]:
        """The newest runs first (of `job`, with a status in `statuses`, started at or after
        `since`, where given)."""
        query = select(runs).order_by(runs.c.started_at.desc(), runs.c.run_id.desc()).limit(limit)
        if job is not None:
            query = query.where(runs.c.job == job)
        if statuses:
            query = query.where(runs.c.status.in_(list(statuses)))
        if since is not None:
            query = query.where(runs.c.started_at >= since)
        with self._read("list_runs") as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def last_run(
        self, *, status_in: Sequence[str] | None = None, before_run: str | None = None
    ) -> Row | None:
        """The newest run (optionally with a status in `status_in`, started before `before_run`)."""
        query = select(runs).order_by(runs.c.started_at.desc(), runs.c.run_id.desc()).limit(1)
        if status_in is not None:
            query = query.where(runs.c.status.in_(list(status_in)))
        if before_run is not None:
            query = query.where(_started_before(before_run))
        with self._read("last_run") as conn:
            row = conn.execute(query).first()
        return dict(row._mapping) if row else None

    def runs_of(self, jobs: Sequence[str | None] | None = None, *, mode: str | None = None,
                status_in: Sequence[str] | None = None, limit: int = 50) -> list[Row]:
        """The newest runs of these jobs (None in it: runs without a job; `jobs` None: every
        run), optionally of one mode and with a status in `status_in`."""
        jobs = () if jobs is None else jobs
        named = [j for j in jobs if j is not None]
        cond: Any = runs.c.job.in_(named) if named else None
        if None in jobs:
            cond = runs.c.job.is_(None) if cond is None else (cond | runs.c.job.is_(None))
        query = select(runs).order_by(runs.c.started_at.desc(), runs.c.run_id.desc()).limit(limit)
        if cond is not None:
            query = query.where(cond)
        if mode is not None:
            query = query.where(runs.c.mode == mode)
        if status_in is not None:
            query = query.where(runs.c.status.in_(list(status_in)))
        with self._read("runs_of") as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    # exceptions -------------------------------------------------------------------------

    def add_exceptions(self, run_id: str, rows: list[Row]) -> None:
        """Record identities the run rejected; keys beyond identity/source/reason go to `detail`."""
        if not rows:
            return
        with self._write("add_exceptions") as conn:
            conn.execute(run_exceptions.insert(), [_exception_row(run_id, row) for row in rows])

    def exceptions(self, run_id: str) -> list[Row]:
        query = select(run_exceptions).where(run_exceptions.c.run_id == run_id).order_by(run_exceptions.c.id)
        with self._read("exceptions") as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    # tombstones -------------------------------------------------------------------------

    def add_tombstones(self, rows: list[Row]) -> None:
        """Remember deleted subjects; a subject already tombstoned keeps its first record."""
        if not rows:
            return
        stmt = self._insert(tombstones).on_conflict_do_nothing(index_elements=["subject_key"])
        with self._write("add_tombstones") as conn:
            conn.execute(stmt, [{name: row.get(name) for name in TOMBSTONE_FIELDS} for row in rows])

    def tombstones(self) -> list[Row]:
        query = select(tombstones).order_by(tombstones.c.deleted_at, tombstones.c.subject_key)
        with self._read("tombstones") as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    # watermarks -------------------------------------------------------------------------

    def get_watermark(self, name: str) -> str | None:
        with self._read("get_watermark") as conn:
            return conn.scalar(select(watermarks.c.value).where(watermarks.c.name == name))

    def set_watermark(self, name: str, value: str, at: datetime) -> None:
        ins = self._insert(watermarks).values(name=name, value=value, updated_at=at)
        stmt = ins.on_conflict_do_update(
            index_elements=[watermarks.c.name],
            set_={"value": ins.excluded.value, "updated_at": ins.excluded.updated_at},
        )
        with self._write("set_watermark") as conn:
            conn.execute(stmt)


def run_status(value: Any) -> RunStatus:
    """`value` as a RunStatus, or a ValueError listing the valid ones."""
    if isinstance(value, RunStatus):
        return value
    if isinstance(value, str) and value in RUN_STATUSES:
        return RunStatus(value)
    raise ValueError(f"run status {value!r} is not one of {', '.join(RUN_STATUSES)}")


def _require_run(conn: Connection, run_id: str) -> None:
    if conn.scalar(select(runs.c.run_id).where(runs.c.run_id == run_id)) is None:
        raise StoreError(f"no run {run_id!r} in the state store")


def _started_before(run_id: str) -> Any:
    pivot = select(runs.c.started_at).where(runs.c.run_id == run_id).scalar_subquery()
    return (runs.c.started_at < pivot) | ((runs.c.started_at == pivot) & (runs.c.run_id < run_id))


def _exception_row(run_id: str, row: Row) -> Row:
    extra = {k: v for k, v in row.items() if k not in EXCEPTION_FIELDS and k != "detail"}
    detail = {**(row.get("detail") or {}), **extra} or None
    return {"run_id": run_id, **{name: row.get(name) for name in EXCEPTION_FIELDS}, "detail": detail}
