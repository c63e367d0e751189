"""What happens once a run has closed: its metrics, then its notifications.

`after_run` is called from the command line layer (or a scheduler) after the run's
status, report and state are written, never from inside the apply loop. Each part is
best effort: a metrics folder that cannot be written, a Pushgateway that is down or a
receiver that fails is logged and leaves the run's outcome and exit code alone.
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


@dataclass
class AfterRun:
    metrics_path: Path | None = None
    pushed: bool = False
    deliveries: list[Any] = field(default_factory=list)


def job_name(cfg: Any) -> str:
    return cfg.path.stem if getattr(cfg, "path", None) else "reconcile"


def after_run(cfg: Any, store: Any, run_id: str, telemetry: Telemetry | None = None, *,
              environ: Mapping[str, str] | None = None, metrics_file: Path | None = None,
              report_path: str | None = None, write_metrics: bool = True, sender: Any = None,
              now: datetime | None = None) -> AfterRun:
    from reconcile.observability.metrics import oldest_critical_days

    env = os.environ if environ is None else environ
    now = now or datetime.now(timezone.utc)
    out = AfterRun()
    run = store.get_run(run_id)
    if run is None:
        return out
    job = cfg.metrics.job if cfg.metrics.job != "reconcile" else job_name(cfg)
    open_critical = oldest_critical_days(store.open_drift(), now)
    if write_metrics:
        _metrics(cfg, run, telemetry, open_critical, now, job, env, metrics_file, out)
    _notify(cfg, store, run, open_critical, job, env, report_path, sender, out)
    return out


def _metrics(cfg: Any, run: Mapping[str, Any], telemetry: Telemetry | None, open_critical: tuple[int, int],
             now: datetime, job: str, env: Mapping[str, str], metrics_file: Path | None, out: AfterRun) -> None:
    from reconcile.observability.metrics import push, run_metrics, write_textfile

    path = metrics_file or cfg.metrics.textfile
    url = env.get(cfg.metrics.pushgateway_url_env) if cfg.metrics.pushgateway_url_env else None
    if path is None and not url:
        return
    registry = run_metrics(run, telemetry, open_critical, now, job)
    if path is not None:
        try:
            out.metrics_path = write_textfile(Path(path), registry)
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
            env: Mapping[str, str], report_path: str | None, sender: Any, out: AfterRun) -> None:
    from reconcile.observability.notify import CRITICAL, Notice, events_for, send_all

    n = cfg.notify
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
