"""The one Braze segment export of a run or sweep, shared by its parts and workers.

A scope (`run:<run id>`, or `sweep:<sweep id>` for the workers of a sliced sweep) starts
at most one `/users/export/segment`. The first caller of `claim_segment_export` for a
scope holds it and starts the export; everyone else sees the holder's row and waits for
it to turn `ready` (the profiles are in `segment_export_rows`) or `unavailable` (read
profile by profile instead; the reason says why). `drop_segment_export` forgets a scope
once its run or sweep is done; `prune_segment_exports` forgets any older than a cutoff
(a run that stopped before dropping its own).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import delete, select, update

from reconcile.store.base import Row, StoreBase, chunked
from reconcile.store.bulk import where_in
from reconcile.store.schema import segment_export_rows as rows_table
from reconcile.store.schema import segment_exports as exports

ROW_COLUMNS = ("braze_id", "email_key", "email", "external_id", "email_subscribe", "phone")
WRITE_CHUNK = 10_000


class SegmentExportsMixin(StoreBase):
    def claim_segment_export(self, scope: str, segment_id: str, holder: str, now: datetime) -> tuple[bool, Row]:
        """(whether `holder` holds the scope's running export and must start it, the scope's
        row). Concurrent callers get one holder; give each caller its own `holder`."""
        with self._write("claim_segment_export") as conn:
            conn.execute(self._insert(exports).values(scope=scope, segment_id=segment_id, status="running",
                                                      holder=holder, started_at=now)
                         .on_conflict_do_nothing(index_elements=["scope"]))
            row = dict(conn.execute(select(exports).where(exports.c.scope == scope)).mappings().one())
        return row["holder"] == holder and row["status"] == "running", row

    def segment_export(self, scope: str) -> Row | None:
        with self._read("segment_export") as conn:
            row = conn.execute(select(exports).where(exports.c.scope == scope)).mappings().first()
        return dict(row) if row is not None else None

    def add_segment_export_rows(self, scope: str, frame: pd.DataFrame) -> int:
        """Keep profiles of the scope's export (columns ROW_COLUMNS, a missing one kept empty;
        a braze_id seen twice keeps its first row)."""
        if not len(frame):
            return 0
        clean = frame.reindex(columns=list(ROW_COLUMNS)).drop_duplicates("braze_id")
        records: list[dict[str, Any]] = [
            {"scope": scope, **{c: (None if pd.isna(v) else str(v)) for c, v in zip(ROW_COLUMNS, values)}}
            for values in clean.itertuples(index=False, name=None)]
        stmt = self._insert(rows_table).on_conflict_do_nothing(index_elements=["scope", "braze_id"])
        with self._write("add_segment_export_rows") as conn:
            for chunk in chunked(records, WRITE_CHUNK):
                conn.execute(stmt, chunk)
        return len(records)

    def finish_segment_export(self, scope: str, holder: str, status: str, now: datetime, *,
                              profiles: int | None = None, reason: str | None = None) -> bool:
        """Mark the scope's export `ready` or `unavailable`; False when `holder` no longer holds it."""
        if status not in ("ready", "unavailable"):
            raise ValueError(f"status must be ready or unavailable, got {status!r}")
        with self._write("finish_segment_export") as conn:
            done = conn.execute(update(exports).where(exports.c.scope == scope, exports.c.holder == holder,
                                                      exports.c.status == "running")
                                .values(status=status, finished_at=now, profiles=profiles,
                                        reason=(reason or None) and str(reason)[:1000]))
            return bool(done.rowcount)

    def give_up_segment_export(self, scope: str, now: datetime, reason: str) -> None:
        """A running export whose holder went quiet for too long is unavailable to everyone."""
        with self._write("give_up_segment_export") as conn:
            conn.execute(update(exports).where(exports.c.scope == scope, exports.c.status == "running")
                         .values(status="unavailable", finished_at=now, reason=reason[:1000]))

    def segment_export_rows(self, scope: str, email_keys: Iterable[str]) -> pd.DataFrame:
        """The scope's exported profiles holding any of `email_keys` (columns ROW_COLUMNS)."""
        keys = sorted({str(k) for k in email_keys if k is not None})
        found: list[Any] = []
        cols = [rows_table.c[c] for c in ROW_COLUMNS]
        with self._read("segment_export_rows") as conn:
            for predicate in where_in(conn, rows_table.c.email_key, keys):
                found.extend(conn.execute(select(*cols).where(rows_table.c.scope == scope, predicate)).all())
        return pd.DataFrame([tuple(r) for r in found], columns=list(ROW_COLUMNS)).astype("string")

    def drop_segment_export(self, scope: str) -> None:
        """Forget the scope's export and its profiles (its run or sweep is done)."""
        with self._write("drop_segment_export") as conn:
            conn.execute(delete(rows_table).where(rows_table.c.scope == scope))
            conn.execute(delete(exports).where(exports.c.scope == scope))

    def prune_segment_exports(self, before: datetime) -> int:
        """Forget exports started before `before` (left behind by runs that stopped early)."""
        with self._write("prune_segment_exports") as conn:
            old = [r.scope for r in conn.execute(select(exports.c.scope).where(exports.c.started_at < before))]
            for scope in old:
                conn.execute(delete(rows_table).where(rows_table.c.scope == scope))
                conn.execute(delete(exports).where(exports.c.scope == scope))
        return len(old)
