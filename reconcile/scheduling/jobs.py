"""Run one job of schedules.toml: what the scheduler does at each fire, and `run --job` once.

    outcome = run_scheduled(job, fire_time=fire)     # the daemon
    outcome = run_scheduled(job)                     # reconcile run --job NAME

Steps: load the job's config (with the schedule's slices and guard thresholds), open the
runtime, take the job's run lock (RunLocked, exit 6, when another run of the job holds it),
claim the fire (a scheduler replica that finds the fire already claimed skips it), then run
the pipeline with signal handling (a SIGINT/SIGTERM lets the batch in flight finish and be
journaled; the run closes as interrupted) and the lock's fencing check before each batch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Mapping

from reconcile.config.schedules import Job

log = logging.getLogger(__name__)

FIRE_MARK = "scheduler.fire:"  # watermark name prefix: the newest fire claimed per lock


@dataclass(frozen=True)
class JobOutcome:
    job: str
    exit_code: int
    run_id: str | None = None
    status: str | None = None
    skipped: str | None = None  # why nothing ran (fire already claimed by another scheduler)
    result: Any = None


def claim_fire(store: Any, lock_name: str, fire_time: datetime, now: datetime) -> bool:
    """Record `fire_time` as run for this lock unless it (or a later fire) already was.
    Called while holding the job's run lock, so the check and the write cannot interleave."""
    key = FIRE_MARK + lock_name
    seen = store.get_watermark(key)
    fire = fire_time.astimezone(timezone.utc)
    if seen and datetime.fromisoformat(seen) >= fire:
        return False
    store.set_watermark(key, fire.isoformat(), now)
    return True


def run_scheduled(job: Job, *, fire_time: datetime | None = None, environ: Mapping[str, str] | None = None,
                  lease_seconds: float | None = None, open_session: Callable[..., Any] | None = None,
                  progress: Any = None) -> JobOutcome:
    """Run `job` once (see the module docstring); raises RunLocked, Interrupted, ReconcileError.
    `progress` receives the run's events (`observability.events.RunIds` keeps the run ids)."""
    from reconcile.config import braze_api_key, load_config
    from reconcile.pipeline.interrupts import deferred, handle_signals
    from reconcile.pipeline.job import run_job
    from reconcile.pipeline.lock import LEASE_SECONDS, run_lock
    from reconcile.pipeline.session import open_session as default_open

    cfg = job.job_config(load_config(job.config, environ))
    opener = open_session or default_open
    with opener(cfg, environ, progress=progress) as rt:
        with run_lock(rt, job.name, api_key=braze_api_key(cfg, environ),
                      lease_seconds=lease_seconds or LEASE_SECONDS) as lock:
            if fire_time is not None and not claim_fire(rt.store, lock.name, fire_time, rt.clock()):
                why = f"the fire at {fire_time.isoformat()} was already run by another scheduler"
                return JobOutcome(job.name, 0, skipped=why)
            with handle_signals():
                result = run_job(rt, mode=job.run_mode, dry_run=job.dry_run, overrides=set(job.allow),
                                 batch_guard=deferred, before_batch=lock.check, job=job.name)
    status = getattr(result.status, "value", result.status)
    return JobOutcome(job.name, int(result.exit_code), result.run_id, str(status), result=result)
