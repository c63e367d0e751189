"""What happens once a run has closed: its run-end event, its metrics, its notifications.

`after_run` (through `after_runs`, for each run a caller saw start) is the one post-run path
of every way a run starts: the interactive commands
(`reconcile.cli.common.observed`), each scheduler fire and `run --job`
(`reconcile.scheduling.jobs.run_scheduled`), and each slice of a sweep worker. It is called
after the run's status, report and state are written, never from inside the apply loop,
with the name of the schedules.toml job (the metrics' `reconcile_job` label and the
notices' job) and the job's own `notify` targets, which are added to the config's.
`notify_fire` tells of what happened without a run: a missed or skipped fire, a fire that
failed before its run started, a stalled job.

Each part is best effort: a metrics folder that cannot be written, a Pushgateway that is
down or a receiver that fails is logged and leaves the run's outcome and exit code alone.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from reconcile.models.run import RunStatus
from reconcile.observability.events import Telemetry

log = logging.getLogger(__name__)
EVENTS_LOGGER = "reconcile.events"  # run-end events (the scheduler shows them at INFO too)


@dataclass
class AfterRun:
    metrics_path: Path | None = None
    pushed: bool = False
    deliveries: list[Any] = field(default_factory=list)


def job_name(cfg: Any) -> str:
    return cfg.path.stem if getattr(cfg, "path", None) else "reconcile"


SUCCESS = (RunStatus.APPLIED.value, RunStatus.IN_SYNC.value)
PLAN_ONLY = (RunStatus.PLANNED.value, RunStatus.DRY_RUN.value)
WARN_STATUSES = (RunStatus.REFUSED, RunStatus.FAILED, RunStatus.PARTIAL, RunStatus.INTERRUPTED, RunStatus.STALE)


def successful(run: Mapping[str, Any]) -> bool:
    """A run that did its job: applied or in sync, or a plan-only run (a `report` job) no guard refused."""
    status = run.get("status")
    return status in SUCCESS or (status in PLAN_ONLY and not run.get("guard_result"))


def last_success(store: Any, jobs: tuple[str | None, ...]) -> datetime | None:
    """When the newest successful run of these jobs ended (None: never)."""
    for run in store.runs_of(list(jobs), status_in=SUCCESS + PLAN_ONLY, limit=200):
        if successful(run):
            value = run.get("finished_at") or run.get("started_at")
            return value if value is None or value.tzinfo else value.replace(tzinfo=timezone.utc)
    return None


def after_run(cfg: Any, store: Any, run_id: str, telemetry: Telemetry | None = None, *,
              environ: Mapping[str, str] | None = None, metrics_file: Path | None = None,
              report_path: str | None = None, write_metrics: bool = True, sender: Any = None,
              now: datetime | None = None, job: str | None = None, targets: Any = (),
              success_jobs: tuple[str | None, ...] | None = None) -> AfterRun:
    """The post-run path (module docstring). `job`: the schedules.toml job (default: the
    config's `metrics.job`, else its file name); `targets`: the job's own notify targets;
    `success_jobs`: the run `job` values whose successes count for the job (default: this
    run's; a sweep passes every slice's)."""
    from reconcile.observability.metrics import oldest_critical_days

    env = os.environ if environ is None else environ
    now = now or datetime.now(timezone.utc)
    out = AfterRun()
    run = store.get_run(run_id)
    if run is None:
        return out
    label = job or (cfg.metrics.job if cfg.metrics.job != "reconcile" else job_name(cfg))
    run_end(run, label)
    open_critical = oldest_critical_days(store.open_drift(), now)
    if write_metrics:
        succeeded = last_success(store, success_jobs if success_jobs is not None else (run.get("job"),))
        _metrics(cfg, run, telemetry, open_critical, now, label, env, metrics_file, out, succeeded)
    _notify(cfg, store, run, open_critical, label, env, report_path, sender, out, targets)
    return out


def after_runs(cfg: Any, store: Any, telemetry: Telemetry, *, report_path: str | None = None,
               **kwargs: Any) -> None:
    """`after_run` for each run `telemetry` saw start, in order; the last one (the run the
    caller's outcome is about) gets the telemetry, the report path and the metrics."""
    for i, run_id in enumerate(telemetry.run_ids):
        last = i == len(telemetry.run_ids) - 1
        after_run(cfg, store, run_id, telemetry if last else None, report_path=report_path if last else None,
                  write_metrics=last, **kwargs)


def run_end(run: Mapping[str, Any], job: str) -> None:
    """The run-end event: outcome and counts, at WARNING for a run that did not do its job."""
    status = str(run.get("status"))
    counts = {k: int(v) for k, v in (run.get("drift_counts") or {}).items() if v}
    numbers = {"exit_code": int(run.get("exit_code") or 0), "universe": int(run.get("universe_count") or 0),
               "actions_planned": int(run.get("actions_planned") or 0),
               "actions_sent": int(run.get("actions_sent") or 0), "actions_failed": int(run.get("actions_failed") or 0),
               "verified": int(run.get("verified_count") or 0), "unverified": int(run.get("unverified_count") or 0),
               "exceptions": int(run.get("exceptions_count") or 0), **{f"drift.{k}": v for k, v in counts.items()}}
    level = logging.WARNING if status in WARN_STATUSES else logging.INFO
    why = f": {str(run.get('error'))[:300]}" if run.get("error") and level == logging.WARNING else ""
    logging.getLogger(EVENTS_LOGGER).log(
        level, "run %s of job %s ended %s (exit %d)%s", run.get("run_id"), job, status, numbers["exit_code"], why,
        extra={"event": "run_end", "job": job, "run_id": run.get("run_id"), "outcome": status, "counts": numbers})


def notify_fire(notify: Any, job: str, event: str, detail: str, *, fire_time: datetime | None = None,
                error: str | None = None, environ: Mapping[str, str] | None = None, sender: Any = None) -> list[Any]:
    """Tell `notify`'s targets of `event` about `job` without a run (missed, skipped, stalled)."""
    from reconcile.observability.notify import Notice, send_all

    env = os.environ if environ is None else environ
    notice = Notice(run_id=None, job=job, status=event, exit_code=None, events=(event,),
                    sla_business_days=notify.sla_business_days, error=error, detail=detail,
                    fire_time=fire_time.isoformat() if fire_time else None)
    try:
        return send_all(notify, notice, env, sender)
    except Exception:  # noqa: BLE001 - telling must never stop the scheduler
        log.warning("notify: could not send %s for job %s", event, job, exc_info=True)
        return []


def _metrics(cfg: Any, run: Mapping[str, Any], telemetry: Telemetry | None, open_critical: tuple[int, int],
             now: datetime, job: str, env: Mapping[str, str], metrics_file: Path | None, out: AfterRun,
             succeeded: datetime | None = None) -> None:
    from reconcile.observability.metrics import last_success_metric, push, run_metrics, write_textfile

    path = metrics_file or cfg.metrics.textfile
    url = env.get(cfg.metrics.pushgateway_url_env) if cfg.metrics.pushgateway_url_env else None
    if path is None and not url:
        return
    registry = run_metrics(run, telemetry, open_critical, now, job)
    last_success_metric(registry, job, succeeded)
    if path is not None:
        try:
            out.metrics_path = write_textfile(Path(path), registry, job)
        except OSError as exc:
            log.warning("metrics: could not write %s: %s", path, exc.strerror or exc)
    if url:
        try:
            push(url, registry, job)
            out.pushed = True
        except Exception as exc:  # noqa: BLE001 - metrics must never fail the run
            log.warning("metrics: push to the Pushgateway (%s) failed: %s", cfg.metrics.pushgateway_url_env,
                        type(exc).__name__)


def _notify(cfg: Any, store: Any, run: Mapping[str, Any], open_critical: tuple[int, int], job: str,
            env: Mapping[str, str], report_path: str | None, sender: Any, out: AfterRun, targets: Any = ()) -> None:
    from reconcile.observability.notify import CRITICAL, Notice, events_for, send_all

    n = cfg.notify.with_targets(targets)
    if not n.targets:
        return
    events = events_for(run, open_critical[1], n.sla_business_days)
    if not events:
        return
    try:
        from reconcile.reports.masking import mask, mask_key, mask_text

        key = mask_key(cfg, env)
        examples = _examples(store, run["run_id"], key, mask)
        error = mask_text(str(run["error"])[:300], key) if run.get("error") else None
    except Exception:  # noqa: BLE001 - without a mask key, say less rather than nothing
        log.debug("notify: no masked examples", exc_info=True)
        examples, error = (), None
    counts = run.get("drift_counts") or {}
    report = report_path or _report_path(cfg, run["run_id"])
    if report and n.report_url:
        report = n.report_url.rstrip("/") + "/" + Path(report).name
    notice = Notice(run_id=run["run_id"], job=job, status=str(run.get("status")), exit_code=run.get("exit_code"),
                    events=tuple(events), critical_counts={c: int(counts.get(c, 0)) for c in CRITICAL},
                    open_critical=open_critical[0], oldest_critical_business_days=open_critical[1],
                    sla_business_days=n.sla_business_days, guards=_guards(run), examples=examples,
                    report=report, error=error)
    out.deliveries = send_all(n, notice, env, sender)


def _examples(store: Any, run_id: str, key: bytes, mask: Any, limit: int = 3) -> tuple[str, ...]:
    rows = [d for d in store.drift_items(run_id=run_id) if d.get("severity") == "critical"]
    return tuple(f"{d['drift_class']} {mask(str(d['subject_key']), key)}" for d in rows[:limit])


def _guards(run: Mapping[str, Any]) -> tuple[str, ...]:
    if run.get("status") != RunStatus.REFUSED:
        return ()
    return tuple(dict.fromkeys(str(t.get("guard")) for t in (run.get("guard_result") or []) if isinstance(t, dict)))


def _report_path(cfg: Any, run_id: str) -> str | None:
    md = Path(cfg.report.dir) / f"{run_id}.md"
    return str(md) if md.exists() else None
