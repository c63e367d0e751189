"""The finished parts of a chunked read (see reconcile/pipeline/parts.py).

A run reading a universe larger than `universe.chunk_size` saves each part as it finishes.
A later run of the same scope (config, mode, sweep slice) with the same number of parts
takes the newest saved copy of each part from runs that did not finish (running when
killed, failed or interrupted), within the resume period, instead of reading it again.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, select

from reconcile.models.run import RunStatus
from reconcile.store.base import StoreBase
from reconcile.store.schema import run_parts, runs

RESUMABLE = (RunStatus.RUNNING.value, RunStatus.FAILED.value, RunStatus.INTERRUPTED.value)


class PartsMixin(StoreBase):
    def save_run_part(self, *, run_id: str, scope: str, part: int, parts: int, subjects: int, payload: bytes,
                      at: datetime) -> None:
        """Keep one finished part of `run_id` (replacing an earlier copy of the same part)."""
        with self._write("save_run_part") as conn:
            conn.execute(delete(run_parts).where(run_parts.c.run_id == run_id, run_parts.c.part == part))
            conn.execute(run_parts.insert().values(run_id=run_id, part=part, scope=scope, parts=parts,
                                                   subjects=subjects, payload=payload, saved_at=at))

    def resumable_parts(self, scope: str, parts: int, since: datetime,
                        exclude_run: str) -> dict[int, tuple[str, bytes]]:
        """part -> (run id, payload): the newest copy of each part saved at or after `since`
        by an unfinished run of `scope` split into `parts`, other than `exclude_run`."""
        newest = (select(run_parts.c.part, func.max(run_parts.c.saved_at).label("at"))
                  .join(runs, runs.c.run_id == run_parts.c.run_id)
                  .where(run_parts.c.scope == scope, run_parts.c.parts == parts, run_parts.c.saved_at >= since,
                         run_parts.c.run_id != exclude_run, runs.c.status.in_(RESUMABLE))
                  .group_by(run_parts.c.part).subquery())
        query = (select(run_parts.c.part, run_parts.c.run_id, run_parts.c.payload)
                 .join(newest, (newest.c.part == run_parts.c.part) & (newest.c.at == run_parts.c.saved_at))
                 .join(runs, runs.c.run_id == run_parts.c.run_id)
                 .where(run_parts.c.scope == scope, run_parts.c.parts == parts, run_parts.c.run_id != exclude_run,
                        runs.c.status.in_(RESUMABLE)))
        with self._read("resumable_parts") as conn:
            return {row.part: (row.run_id, bytes(row.payload)) for row in conn.execute(query)}

    def drop_run_parts(self, scope: str | None = None, *, before: datetime | None = None) -> int:
        """Forget saved parts of `scope` (a read that finished), or every part saved before `before`."""
        stmt = delete(run_parts)
        if scope is not None:
            stmt = stmt.where(run_parts.c.scope == scope)
        if before is not None:
            stmt = stmt.where(run_parts.c.saved_at < before)
        with self._write("drop_run_parts") as conn:
            return conn.execute(stmt).rowcount or 0
