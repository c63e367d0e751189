"""Drift items: one row per problem occurrence, with its history.

A drift item is keyed by (subject_key, drift_class, field). While it is *live* (status
open, corrected or reported) re-detecting it updates the same row; once it is verified or
resolved the row is history and a later re-detection opens a new row. A `None` field is
stored as "" (the drift concerns the subject as a whole).

`record_drift` is set-based (see `drift_upsert`) and runs in one transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, or_, select, update

from reconcile.store.base import Row, StoreBase, as_tuple
from reconcile.store.bulk import where_in
from reconcile.store.drift_upsert import (
    by_subject,
    drift_key,
    live_ids,
    resolve,
    upsert,
)
from reconcile.store.schema import DRIFT_LIVE, DRIFT_OPEN
from reconcile.store.schema import drift_items as drift_table


class DriftMixin(StoreBase):
    """Record, query and advance drift items."""

    def report_items(self, start: datetime, end: datetime) -> list[Row]:
        """Drift items first seen by `end` that were live, or touched, at some point since `start`."""
        c = drift_table.c
        touched = func.coalesce(c.resolved_at, c.verified_at, c.corrected_at, c.last_seen_at)
        query = (select(drift_table).where(c.first_seen_at <= end)
                 .where(or_(c.status.in_(DRIFT_LIVE), touched >= start)).order_by(c.id))
        with self._read("report_items") as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def record_drift(
        self, run_id: str, items: list[Row], checked_subjects: Iterable[str], now: datetime
    ) -> dict[tuple[str, str, str | None], int]:
        """Upsert this run's drift and resolve what vanished from checked subjects.

        Returns the row id for each item, keyed by the item's own
        (subject_key, drift_class, field).
        """
        latest = {drift_key(item): item for item in items}
        checked = set(checked_subjects)
        with self._write("record_drift") as conn:
            live = live_ids(conn, {key[0] for key in latest} | checked)
            ids = upsert(conn, run_id, now, latest, live)
            vanished = [i for key, i in live.items() if key[0] in checked and key not in latest]
            resolve(conn, run_id, now, vanished)
        return {(it["subject_key"], it["drift_class"], it.get("field")): ids[drift_key(it)] for it in items}

    def open_drift(self, subject_keys: Iterable[str] | None = None) -> list[Row]:
        """Drift rows still open or corrected (awaiting verification), by id."""
        with self._read("open_drift") as conn:
            if subject_keys is None:
                query = select(drift_table).where(drift_table.c.status.in_(DRIFT_OPEN))
                return _dicts(conn, query.order_by(drift_table.c.id))
            found = by_subject(conn, select(drift_table), subject_keys)
            rows = [dict(r._mapping) for r in found if r.status in DRIFT_OPEN]
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

    def drift_items(self, run_id: str | None = None, status: str | Sequence[str] | None = None) -> list[Row]:
        """Drift rows, by id; `run_id` selects rows first seen, last seen or resolved in that run."""
        query = select(drift_table).order_by(drift_table.c.id)
        if run_id is not None:
            c = drift_table.c
            query = query.where(
                (c.first_seen_run == run_id) | (c.last_seen_run == run_id) | (c.resolved_run == run_id)
            )
        statuses = as_tuple(status)
        if statuses is not None:
            query = query.where(drift_table.c.status.in_(statuses))
        with self._read("drift_items") as conn:
            return _dicts(conn, query)

    def _advance(self, op: str, ids: Iterable[int], from_statuses: Sequence[str], values: Row) -> int:
        changed = 0
        with self._write(op) as conn:
            for predicate in where_in(conn, drift_table.c.id, sorted(set(ids))):
                where = predicate & drift_table.c.status.in_(from_statuses)
                changed += conn.execute(update(drift_table).where(where).values(**values)).rowcount
        return changed


def _dicts(conn: Connection, query: Any) -> list[Row]:
    return [dict(row._mapping) for row in conn.execute(query)]
