"""Run life cycle: the statuses a run passes through and the result it ends with."""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    """Every status a row of the runs table may hold (a CHECK constraint enforces it)."""

    RUNNING = "running"
    PLANNED = "planned"
    DRY_RUN = "dry_run"
    APPLYING = "applying"
    APPLIED = "applied"
    PARTIAL = "partial"
    IN_SYNC = "in_sync"
    REFUSED = "refused"
    STALE = "stale"
    FAILED = "failed"
    INTERRUPTED = "interrupted"

    @property
    def finished(self) -> bool:
        return self not in (RunStatus.RUNNING, RunStatus.APPLYING)

    @property
    def succeeded(self) -> bool:
        """Runs whose extracts a later run may compare itself with (guards, watermarks)."""
        return self in (RunStatus.APPLIED, RunStatus.IN_SYNC, RunStatus.PARTIAL)


RUN_STATUSES = tuple(s.value for s in RunStatus)
