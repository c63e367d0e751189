"""Drift items: one row per problem occurrence, with its history.

A drift item is keyed by (subject_key, drift_class, field). While it is *live* (status
open, corrected or reported) re-detecting it updates the same row; once it is verified or
resolved the row is history and a later re-detection opens a new row. A `None` field is
stored as "" (the drift concerns the subject as a whole).

`record_drift` works in bulk, in one transaction: live rows are looked up by chunked IN
clauses, new rows are inserted with one executemany, re-seen rows are updated by a single
UPDATE joined to a temporary staging table, and vanished rows are resolved by id chunks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Column, Connection, MetaData, Table, select, update

from reconcile.store.base import StoreBase, as_tuple, chunk_size, chunked
from reconcile.store.schema import DRIFT_LIVE, DRIFT_OPEN, BigId
from reconcile.store.schema import drift_items as drift_table

DriftKey = tuple[str, str, str]
UPDATED = ("expected", "actual", "severity", "reason", "ketch_collected_at", "detail")


def drift_key(item: Mapping[str, Any]) -> DriftKey:
    return (item["subject_key"], item["drift_class"], item.get("field") or "")


class DriftMixin(StoreBase):
    """Record, query and advance drift items."""

    def record_drift(
        self, run_id: str, items: list[dict], checked_subjects: Iterable[str], now: datetime
    ) -> dict[tuple[str, str, str | None], int]:
        """Upsert this run's drift and resolve what vanished from checked subjects.

        Returns the row id for each item, keyed by the item's own
        (subject_key, drift_class, field).
        """
        latest = {drift_key(item): item for item in items}
        checked = set(checked_subjects)
        with self._write("record_drift") as conn:
            live = _live_ids(conn, {key[0] for key in latest} | checked)
            ids = {key: live[key] for key in latest if key in live}
            _update_seen(conn, run_id, now, [(ids[key], latest[key]) for key in ids])
            ids.update(_insert_new(conn, run_id, now, [it for key, it in latest.items() if key not in live]))
            vanished = [i for key, i in live.items() if key[0] in checked and key not in latest]
            _resolve(conn, run_id, now, vanished)
        return {(it["subject_key"], it["drift_class"], it.get("field")): ids[drift_key(it)] for it in items}

    def open_drift(self, subject_keys: Iterable[str] | None = None) -> list[dict]:
        """Drift rows still open or corrected (awaiting verification), by id."""
        query = select(drift_table).where(drift_table.c.status.in_(DRIFT_OPEN))
        with self._read("open_drift") as conn:
            if subject_keys is None:
                return _dicts(conn, query.order_by(drift_table.c.id))
            rows: list[dict] = []
            for chunk in chunked(set(subject_keys)):
                rows += _dicts(conn, query.where(drift_table.c.subject_key.in_(chunk)))
        return sorted(rows, key=lambda row: row["id"])

    def open_subjects(self) -> set[str]:
        """Subjects with open or corrected drift (re-checked by every run)."""
        query = select(drift_table.c.subject_key).where(drift_table.c.status.in_(DRIFT_OPEN)).distinct()
        with self._read("open_subjects") as conn:
            return set(conn.scalars(query))

    def mark_corrected(self, ids: Iterable[int], action_id: str, at: datetime) -> int:
        """Live rows -> corrected by `action_id`; returns how many changed."""
        values = {"status": "corrected", "corrected_action": action_id, "corrected_at": at}
        return self._advance("mark_corrected", ids, DRIFT_LIVE, values)

    def mark_verified(self, ids: Iterable[int], at: datetime) -> int:
        """Live rows -> verified (history from now on); returns how many changed."""
        return self._advance("mark_verified", ids, DRIFT_LIVE, {"status": "verified", "verified_at": at})

    def mark_reported(self, ids: Iterable[int]) -> int:
        """Open rows -> reported (report-only drift, still live); returns how many changed."""
        return self._advance("mark_reported", ids, ("open",), {"status": "reported"})

    def drift_items(self, run_id: str | None = None, status: str | Sequence[str] | None = None) -> list[dict]:
        """Drift rows, by id; `run_id` selects rows first seen, last seen or resolved in that run."""
        query = select(drift_table).order_by(drift_table.c.id)
        if run_id is not None:
            c = drift_table.c
            query = query.where((c.first_seen_run == run_id) | (c.last_seen_run == run_id) | (c.resolved_run == run_id))
        statuses = as_tuple(status)
        if statuses is not None:
            query = query.where(drift_table.c.status.in_(statuses))
        with self._read("drift_items") as conn:
            return _dicts(conn, query)

    def _advance(self, op: str, ids: Iterable[int], from_statuses: Sequence[str], values: dict) -> int:
        changed = 0
        with self._write(op) as conn:
            for chunk in chunked(set(ids)):
                where = drift_table.c.id.in_(chunk) & drift_table.c.status.in_(from_statuses)
                changed += conn.execute(update(drift_table).where(where).values(**values)).rowcount
        return changed


def _dicts(conn: Connection, query: Any) -> list[dict]:
    return [dict(row._mapping) for row in conn.execute(query)]


def _live_ids(conn: Connection, subjects: Iterable[str]) -> dict[DriftKey, int]:
    c = drift_table.c
    query = select(c.id, c.subject_key, c.drift_class, c.field).where(c.status.in_(DRIFT_LIVE))
    live: dict[DriftKey, int] = {}
    for chunk in chunked(sorted(set(subjects)), chunk_size(conn)):
        for row in conn.execute(query.where(c.subject_key.in_(chunk))):
            live[(row.subject_key, row.drift_class, row.field)] = row.id
    return live


def _insert_new(conn: Connection, run_id: str, now: datetime, items: list[dict]) -> dict[DriftKey, int]:
    """Insert new open rows (one executemany) and return their ids."""
    if not items:
        return {}
    conn.execute(drift_table.insert(), [_new_row(run_id, now, item) for item in items])
    keys = {drift_key(item) for item in items}
    return {key: i for key, i in _live_ids(conn, (key[0] for key in keys)).items() if key in keys}


def _new_row(run_id: str, now: datetime, item: dict) -> dict:
    subject, drift_class, field = drift_key(item)
    row = {name: item.get(name) for name in UPDATED}
    row.update(subject_key=subject, drift_class=drift_class, field=field, status="open")
    row.update(first_seen_run=run_id, first_seen_at=now, last_seen_run=run_id, last_seen_at=now)
    return row


def _update_seen(conn: Connection, run_id: str, now: datetime, seen: list[tuple[int, dict]]) -> None:
    """Update re-seen rows in one statement, joined to a temporary staging table."""
    if not seen:
        return
    staging = _staging_table()
    staging.create(conn)
    conn.execute(staging.insert(), [{"id": i, **{n: item.get(n) for n in UPDATED}} for i, item in seen])
    values = {name: staging.c[name] for name in UPDATED}
    stmt = update(drift_table).where(drift_table.c.id == staging.c.id)
    conn.execute(stmt.values(last_seen_run=run_id, last_seen_at=now, **values))
    staging.drop(conn)


def _staging_table() -> Table:
    columns = [Column(name, drift_table.c[name].type) for name in UPDATED]
    return Table("drift_seen_staging", MetaData(), Column("id", BigId, primary_key=True), *columns, prefixes=["TEMPORARY"])


def _resolve(conn: Connection, run_id: str, now: datetime, ids: list[int]) -> None:
    stmt = update(drift_table).values(status="resolved", resolved_at=now, resolved_run=run_id)
    for chunk in chunked(ids, chunk_size(conn)):
        conn.execute(stmt.where(drift_table.c.id.in_(chunk)))
