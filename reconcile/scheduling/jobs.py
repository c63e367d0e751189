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
from typing import TYPE_CHECKING, Any, Callable, Mapping

from reconcile.config.schedules import Job

if TYPE_CHECKING:
    from reconcile.observability.events import RunIds

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
                  display: Callable[[Any], Any] | None = None, sender: Any = None,
                  progress: RunIds | None = None) -> JobOutcome:
    """Run `job` once (see the module docstring); raises RunLocked, Interrupted, ReconcileError.
    Whatever the outcome, each run it started goes through the post-run path (run-end event,
    metrics, notifications with the job's name and its `notify` targets); a failure before any
    run started is notified as `fire_skipped` with the reason, then raised.
    `display(telemetry)`: a progress display to attach (returns an object with `stop()`);
    `progress` (a `RunIds`) keeps the ids of the runs started, for a caller that names them."""
    from reconcile.config import braze_api_key, load_config
    from reconcile.observability.events import Telemetry, observing
    from reconcile.observability.logs import ContextListener
    from reconcile.pipeline.interrupts import Interrupted, deferred, handle_signals
    from reconcile.pipeline.job import run_job
    from reconcile.pipeline.lock import LEASE_SECONDS, run_lock
    from reconcile.pipeline.session import open_session as default_open

    try:
        cfg = job.job_config(load_config(job.config, environ))
    except Exception as exc:
        tell_failure(None, job, fire_time, exc, environ, sender)
        raise
    opener = open_session or default_open
    telemetry = Telemetry()
    telemetry.listeners.append(ContextListener(job.name))
    shown = display(telemetry) if display is not None else None
    if progress is not None:
        progress.inner = telemetry
    feed = progress if progress is not None else telemetry
    try:
        with observing(telemetry), opener(cfg, environ, progress=feed) as rt:
            report_path: str | None = None
            try:
                with run_lock(rt, job.name, api_key=braze_api_key(cfg, environ),
                              lease_seconds=lease_seconds or LEASE_SECONDS) as lock:
                    if fire_time is not None and not claim_fire(rt.store, lock.name, fire_time, rt.clock()):
                        why = f"the fire at {fire_time.isoformat()} was already run by another scheduler"
                        return JobOutcome(job.name, 0, skipped=why)
                    with handle_signals():
                        result = run_job(rt, mode=job.run_mode, dry_run=job.dry_run, overrides=set(job.allow),
                                         batch_guard=deferred, before_batch=lock.check, job=job.name)
            except BaseException:
                report_path = written_report(cfg, telemetry.run_ids)
                raise
            finally:  # on the run's own store and clock
                telemetry.finish()
                if shown is not None:
                    shown.stop()
                    shown = None
                after_job_runs(cfg, job, telemetry, environ=environ, report_path=report_path, sender=sender,
                               store=rt.store, now=rt.clock())
    except BaseException as exc:
        if not telemetry.run_ids and not isinstance(exc, Interrupted):
            tell_failure(cfg, job, fire_time, exc, environ, sender)
        raise
    finally:
        if shown is not None:
            shown.stop()
    status = getattr(result.status, "value", result.status)
    return JobOutcome(job.name, int(result.exit_code), result.run_id, str(status), result=result)


def written_report(cfg: Any, run_ids: list[str]) -> str | None:
    """The report of the last run started, once it is written (a run that failed still writes one)."""
    from pathlib import Path

    path = Path(cfg.report.dir) / f"{run_ids[-1]}.md" if run_ids else None
    return str(path) if path is not None and path.exists() else None


def after_job_runs(cfg: Any, job: Job, telemetry: Any, *, environ: Mapping[str, str] | None = None,
                   report_path: str | None = None, sender: Any = None, store: Any = None,
                   now: datetime | None = None) -> None:
    """The post-run path for every run `telemetry` saw start, named for `job` (a sweep's slices
    too: their successes count for the job); then the stall check."""
    from contextlib import nullcontext

    from reconcile.config import state_url
    from reconcile.observability.postrun import after_runs
    from reconcile.store.store import Store

    if not telemetry.run_ids:
        return
    names = job_run_names(job)
    try:
        with (nullcontext(store) if store is not None else Store.open(state_url(cfg, environ))) as st:
            after_runs(cfg, st, telemetry, report_path=report_path, environ=environ, sender=sender,
                       job=job.name, targets=job.notify, success_jobs=names, now=now)
            check_stalled(st, job, cfg, now or datetime.now(timezone.utc), environ=environ, sender=sender)
    except Exception:  # noqa: BLE001 - what is said after a run must not change its outcome
        log.warning("job %s: post-run metrics and notifications failed", job.name, exc_info=True)


def slice_job(job: str, index: int) -> str:
    """The job name a slice's runs and run lock use (scheduling/sweeps.py)."""
    return f"{job}/slice-{index}"


def job_run_names(job: Job) -> tuple[str | None, ...]:
    """The `job` values of a job's runs: its name, and each slice's for a sliced job."""
    names: tuple[str | None, ...] = (job.name,)
    if job.scope == "sliced" and job.slices:
        names += tuple(slice_job(job.name, i) for i in range(int(job.slices)))
    return names


def tell_failure(cfg: Any, job: Job, fire_time: datetime | None, exc: BaseException,
                 environ: Mapping[str, str] | None = None, sender: Any = None) -> None:
    """A fire that ended before any run started (bad config, state store down, lock held):
    logged at WARNING or above and notified as `fire_skipped`."""
    from reconcile.errors import RunLocked
    from reconcile.observability.postrun import notify_fire

    what = "another run holds the job's run lock" if isinstance(exc, RunLocked) else "it failed before its run started"
    level = logging.WARNING if isinstance(exc, RunLocked) else logging.ERROR
    when = fire_time.isoformat() if fire_time else None
    log.log(level, "skip: job %s fire%s did not run: %s: %s", job.name, f" at {when}" if when else "", what, exc,
            extra={"event": "fire_skipped", "job": job.name, "fire_time": when, "reason": str(exc)[:500]})
    notify_fire(job_notify(cfg, job), job.name, "fire_skipped", f"the fire did not run: {what}",
                fire_time=fire_time, error=str(exc)[:300], environ=environ, sender=sender)


def job_notify(cfg: Any, job: Job) -> Any:
    """The notify settings of a job: its config's `[notify]` (defaults when the config could not
    be read) with the job's own `notify` targets added."""
    from reconcile.config.notify import NotifyConfig

    base = cfg.notify if cfg is not None else NotifyConfig()
    return base.with_targets(job.notify)


STALL_MARK = "scheduler.stalled:"  # watermark: the last-success time a stall was already told for


def stalled_since(store: Any, job: Job, now: datetime, started: datetime | None = None) -> datetime | None:
    """When `job` was last successful (or `started`, when it never was), if two of its fires
    (and their grace time) have passed since without a success; else None."""
    from datetime import timedelta

    from reconcile.observability.postrun import last_success

    since = last_success(store, job_run_names(job)) or started
    if since is None:
        return None
    fires = job.next_runs(since, 2)
    if len(fires) < 2 or now <= fires[1] + timedelta(seconds=job.misfire_grace_time):
        return None
    return since


def check_stalled(store: Any, job: Job, cfg: Any, now: datetime, *, started: datetime | None = None,
                  environ: Mapping[str, str] | None = None, sender: Any = None) -> bool:
    """Tell once (per last success) that `job` has stalled; True when it has."""
    since = stalled_since(store, job, now, started)
    if since is None:
        return False
    key = STALL_MARK + job.name
    if store.get_watermark(key) == since.isoformat():
        return True
    store.set_watermark(key, since.isoformat(), now)
    detail = (f"no successful run since {since.isoformat()}: two or more fires of '{job.when}' have passed "
              "without one; see `reconcile runs list` and the last run's report")
    log.error("stalled: job %s %s", job.name, detail, extra={"event": "stalled", "job": job.name})
    notify_fire_cfg = job_notify(cfg, job)
    from reconcile.observability.postrun import notify_fire

    notify_fire(notify_fire_cfg, job.name, "stalled", detail, environ=environ, sender=sender)
    return True
