"""The set-based core of `record_drift`.

One call costs a few statements whatever the volume: live rows are looked up by subject
(chunked), this run's items are loaded into a temporary staging table, then one
UPDATE ... FROM refreshes re-seen rows, one INSERT ... SELECT ... RETURNING opens new rows,
and vanished rows are resolved by id.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Column, Connection, String, insert, literal, select, update

from reconcile.store.base import Row
from reconcile.store.bulk import temp_table, where_in
from reconcile.store.schema import DRIFT_LIVE, BigId
from reconcile.store.schema import drift_items as drift_table

DriftKey = tuple[str, str, str]
KEY = ("subject_key", "drift_class", "field")
UPDATED = ("expected", "actual", "severity", "reason", "ketch_collected_at", "detail")


def drift_key(item: Mapping[str, Any]) -> DriftKey:
    """(subject_key, drift_class, field), with a missing field stored as ""."""
    return (item["subject_key"], item["drift_class"], item.get("field") or "")


def by_subject(conn: Connection, query: Any, subjects: Iterable[str]) -> Iterator[Any]:
    """Rows of `query` for the given subjects.

    Callers filter status in Python: given a status term, SQLite's planner (which has no
    statistics) would walk the status index instead of looking subjects up.
    """
    for predicate in where_in(conn, drift_table.c.subject_key, sorted(set(subjects))):
        yield from conn.execute(query.where(predicate))


def live_ids(conn: Connection, subjects: Iterable[str]) -> dict[DriftKey, int]:
    """Ids of live (open, corrected, reported) rows for these subjects."""
    c = drift_table.c
    rows = by_subject(conn, select(c.id, c.subject_key, c.drift_class, c.field, c.status), subjects)
    return {(r.subject_key, r.drift_class, r.field): r.id for r in rows if r.status in DRIFT_LIVE}


def upsert(
    conn: Connection, run_id: str, now: datetime, latest: dict[DriftKey, Row], live: dict[DriftKey, int]
) -> dict[DriftKey, int]:
    """Refresh re-seen live rows and insert new ones; return every item's row id."""
    rows = [_staged(key, item, live.get(key)) for key, item in latest.items()]
    seen = {key: live[key] for key in latest if key in live}
    with temp_table(conn, "drift_staging", _staging_columns(), rows) as staging:
        if seen:
            conn.execute(_update_from(staging, run_id, now))
        if len(seen) < len(latest):
            inserted = conn.execute(_insert_from(staging, run_id, now))
            seen.update({(r.subject_key, r.drift_class, r.field): r.id for r in inserted})
    return seen


def resolve(conn: Connection, run_id: str, now: datetime, ids: list[int]) -> None:
    stmt = update(drift_table).values(status="resolved", resolved_at=now, resolved_run=run_id)
    for predicate in where_in(conn, drift_table.c.id, ids):
        conn.execute(stmt.where(predicate))


def _staged(key: DriftKey, item: Row, row_id: int | None) -> Row:
    return {"id": row_id, **dict(zip(KEY, key, strict=True)), **{name: item.get(name) for name in UPDATED}}


def _staging_columns() -> list[Column[Any]]:
    return [Column("id", BigId)] + [Column(name, drift_table.c[name].type) for name in KEY + UPDATED]


def _update_from(staging: Any, run_id: str, now: datetime) -> Any:
    values = {name: staging.c[name] for name in UPDATED}
    stmt = update(drift_table).where(drift_table.c.id == staging.c.id)
    return stmt.values(last_seen_run=run_id, last_seen_at=now, **values)


def _insert_from(staging: Any, run_id: str, now: datetime) -> Any:
    c = drift_table.c
    run = literal(run_id, String())
    at = literal(now, c.first_seen_at.type)
    extra = {
        "status": literal("open", String()),
        "first_seen_run": run,
        "first_seen_at": at,
        "last_seen_run": run,
        "last_seen_at": at,
    }
    copied = [staging.c[name] for name in KEY + UPDATED]
    source = select(*copied, *extra.values()).where(staging.c.id.is_(None))
    stmt = insert(drift_table).from_select([*KEY, *UPDATED, *extra], source)
    return stmt.returning(c.id, c.subject_key, c.drift_class, c.field)
