"""When subjects that must not exist in Braze were last confirmed to have no profile.

A subject with a deletion request or a tombstone is read on every run to prove it is
still absent. A run that finds it absent records the time here; one that finds a profile
clears the record. Incremental runs skip subjects confirmed within the recheck period
(`universe.absence_recheck_hours`), full sweeps always read them.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import delete, select

from reconcile.store.base import StoreBase, chunked
from reconcile.store.bulk import where_in
from reconcile.store.schema import absence_checks


class AbsenceMixin(StoreBase):
    def record_absent(self, subject_keys: Iterable[str], at: datetime, run_id: str) -> int:
        """These subjects were read at `at` and have no Braze profile; returns how many."""
        keys = sorted({str(k) for k in subject_keys if k is not None})
        if not keys:
            return 0
        ins = self._insert(absence_checks)
        stmt = ins.on_conflict_do_update(index_elements=["subject_key"],
                                         set_={"checked_at": ins.excluded.checked_at, "run_id": ins.excluded.run_id})
        with self._write("record_absent") as conn:
            for chunk in chunked(keys):
                conn.execute(stmt, [{"subject_key": k, "checked_at": at, "run_id": run_id} for k in chunk])
        return len(keys)

    def clear_absent(self, subject_keys: Iterable[str]) -> int:
        """These subjects were found with a profile: their absence is no longer known."""
        keys = sorted({str(k) for k in subject_keys if k is not None})
        if not keys:
            return 0
        removed = 0
        with self._write("clear_absent") as conn:
            for predicate in where_in(conn, absence_checks.c.subject_key, keys):
                removed += conn.execute(delete(absence_checks).where(predicate)).rowcount or 0
        return removed

    def absent_since(self, since: datetime) -> dict[str, datetime]:
        """subject key -> last confirmation, for subjects confirmed absent at or after `since`."""
        query = select(absence_checks.c.subject_key, absence_checks.c.checked_at).where(
            absence_checks.c.checked_at >= since)
        with self._read("absent_since") as conn:
            return {row.subject_key: row.checked_at for row in conn.execute(query)}
