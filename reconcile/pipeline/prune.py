"""Retention: remove history older than `report.retention_months` (default 24, CCPA §7101),
recorded as a run of mode `prune` whose `summary` holds the cutoff and the counts (what is
removed: store/prune.py)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, time, timezone
from pathlib import Path

from reconcile.config import Config
from reconcile.pipeline.recorder import RunRecorder
from reconcile.reports.calendar import add_months
from reconcile.store.prune import Pruning
from reconcile.store.store import Store


def cutoff_for(now: datetime, months: int) -> datetime:
    return datetime.combine(add_months(now.astimezone(timezone.utc).date(), -months), time(0), tzinfo=timezone.utc)


def recorded_prune(store: Store, cfg: Config, clock: Callable[[], datetime], *, apply: bool,
                   months: int | None = None) -> tuple[str, Pruning]:
    """Prune (or count) and record it as a run of mode `prune`; returns (run id, what it did)."""
    now = clock()
    run_id = now.strftime("%Y%m%dT%H%M%S") + "-prune"
    rec = RunRecorder(store, clock, run_id, "prune", cfg.hash())
    with rec:
        result = store.prune(cutoff_for(now, months or cfg.report.retention_months), Path(cfg.report.dir),
                             apply=apply)
        summary = {"retention_months": months or cfg.report.retention_months, "applied": apply, **result.counts()}
        rec.update(summary=summary)
        if apply:
            rec.applying()
            rec.applied()
        else:
            rec.dry_run(0)
    return run_id, result
