"""A run's metrics in Prometheus text format, with prometheus-client.

`run_metrics(run, telemetry, open_critical, now, job)` fills a fresh registry with one run's
numbers (every series labelled `reconcile_job`); `write_textfile` writes it atomically for
node_exporter's textfile collector, and `push` sends it to a Pushgateway. Nothing carries
an identity: labels are drift classes, stages, services and endpoint paths.

Business days are weekdays (numpy's `busday_count`); holidays are not taken off here
(the compliance report counts them against a holiday calendar).
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
from prometheus_client import CollectorRegistry, Gauge, push_to_gateway, write_to_textfile

from reconcile.engine.classes import DRIFT_CLASSES, SEVERITY
from reconcile.observability.events import Telemetry


def business_days(start: date | datetime, end: date | datetime) -> int:
    """Weekdays from `start` (inclusive) to `end` (exclusive); 0 when `end` is not later."""
    s = start.date() if isinstance(start, datetime) else start
    e = end.date() if isinstance(end, datetime) else end
    return int(np.busday_count(s, e)) if e > s else 0


def _utc(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def oldest_critical_days(open_drift: Iterable[Mapping[str, Any]], now: datetime) -> tuple[int, int]:
    """(open critical drift items, business days since the oldest was first seen)."""
    seen = [_utc(d.get("first_seen_at")) for d in open_drift if d.get("severity") == "critical"
            or SEVERITY.get(d.get("drift_class", "")) == "critical"]
    firsts = [f for f in seen if f is not None]
    return len(firsts), (business_days(min(firsts), now) if firsts else 0)


def run_metrics(run: Mapping[str, Any], telemetry: Telemetry | None, open_critical: tuple[int, int],
                now: datetime, job: str) -> CollectorRegistry:
    reg = CollectorRegistry()
    L = ("reconcile_job",)

    def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
        return Gauge(name, doc, L + labels, registry=reg)

    info = gauge("reconcile_run_info", "The last run: its id, mode and status (value 1).", ("run_id", "mode", "status"))
    info.labels(job, str(run.get("run_id")), str(run.get("mode") or ""), str(run.get("status") or "")).set(1)
    gauge("reconcile_run_exit_code", "Exit code of the last run.").labels(job).set(int(run.get("exit_code") or 0))
    started, finished = _utc(run.get("started_at")), _utc(run.get("finished_at")) or now
    gauge("reconcile_run_finished_timestamp_seconds", "When the last run ended (Unix time).").labels(job).set(
        finished.timestamp())
    if started is not None:
        gauge("reconcile_run_duration_seconds", "Wall time of the last run.").labels(job).set(
            max(0.0, (finished - started).total_seconds()))
    drift = gauge("reconcile_drift_items", "Drift items the last run found, by class.", ("drift_class", "severity"))
    counts = run.get("drift_counts") or {}
    for c in DRIFT_CLASSES:
        drift.labels(job, c, SEVERITY[c]).set(int(counts.get(c, 0)))
    actions = gauge("reconcile_actions", "Correction batches of the last run, by state.", ("state",))
    for state, key in (("planned", "actions_planned"), ("sent", "actions_sent"), ("confirmed", "actions_confirmed"),
                       ("failed", "actions_failed")):
        actions.labels(job, state).set(int(run.get(key) or 0))
    items = gauge("reconcile_corrections", "Corrected drift items read back by the last run's verify pass.",
                  ("result",))
    items.labels(job, "verified").set(int(run.get("verified_count") or 0))
    items.labels(job, "unverified").set(int(run.get("unverified_count") or 0))
    gauge("reconcile_exceptions", "Identities the last run left out or could not check.").labels(job).set(
        int(run.get("exceptions_count") or 0))
    mirror = (run.get("summary") or {}).get("ketch_mirror")
    if mirror:
        served = gauge("reconcile_ketch_mirror_subjects",
                       "Subjects of the last run by where their Ketch state came from (ledger.mirror).", ("source",))
        for source in ("from_mirror", "backfilled", "audited", "flagged", "failed"):
            served.labels(job, source).set(int(mirror.get(source) or 0))
        gauge("reconcile_ketch_mirror_corrected",
              "Mirror entries the last run's Ketch reads found wrong and corrected.").labels(job).set(
            int(mirror.get("corrected") or 0))
    n_open, days = open_critical
    gauge("reconcile_open_critical_drift_items",
          "Critical drift items still open or unverified.").labels(job).set(n_open)
    gauge("reconcile_oldest_open_critical_drift_business_days",
          "Business days (weekdays) since the oldest open critical drift item was first seen.").labels(job).set(days)
    if telemetry is not None:
        stages = gauge("reconcile_stage_duration_seconds", "Seconds the last run spent in each stage.", ("stage",))
        for name, secs in telemetry.stage_seconds().items():
            stages.labels(job, name).set(round(secs, 6))
        reqs = gauge("reconcile_http_requests", "HTTP answers the last run received, by endpoint and status.",
                     ("service", "endpoint", "status"))
        limited = gauge("reconcile_http_rate_limited", "429 answers the last run received, by endpoint.",
                        ("service", "endpoint"))
        seen: set[tuple[str, str]] = set()
        for (service, endpoint, status), n in sorted(telemetry.requests.items()):
            reqs.labels(job, service, endpoint, status).set(n)
            seen.add((service, endpoint))
        for service, endpoint in sorted(seen):
            limited.labels(job, service, endpoint).set(telemetry.requests.get((service, endpoint, "429"), 0))
        waits = gauge("reconcile_rate_limit_wait_seconds", "Seconds the last run waited on rate limits, by endpoint.",
                      ("service", "endpoint"))
        for (service, endpoint), secs in sorted(telemetry.waits.items()):
            waits.labels(job, service, endpoint).set(round(secs, 3))
    return reg


def write_textfile(path: Path, registry: CollectorRegistry, job: str | None = None) -> Path:
    """Write atomically (a temporary file renamed into place), creating the folder. With
    `job`, the series other jobs wrote to the same file are kept (jobs of one scheduler share
    its textfile), under a lock file beside it so two processes do not lose each other's."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            kept = _other_jobs(path, job) if job is not None else []
            write_to_textfile(str(path), _Merged(registry, kept) if kept else registry)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return path


def _other_jobs(path: Path, job: str) -> list[Any]:
    """The metric families of `path` with only the samples of jobs other than `job`."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return []
    out = []
    try:
        for family in text_string_to_metric_families(text):
            family.samples = [s for s in family.samples if s.labels.get("reconcile_job") not in (None, job)]
            if family.samples:
                out.append(family)
    except ValueError:  # not ours or damaged: start over
        return []
    return out


class _Merged:
    """A registry's families with another file's samples added (a collector for write_to_textfile)."""

    def __init__(self, registry: CollectorRegistry, kept: list[Any]):
        self.registry, self.kept = registry, {f.name: f for f in kept}

    def collect(self) -> Iterable[Any]:
        seen = set()
        for family in self.registry.collect():
            seen.add(family.name)
            if family.name in self.kept:
                family.samples = list(family.samples) + list(self.kept[family.name].samples)
            yield family
        for name, family in self.kept.items():
            if name not in seen:
                yield family


def last_success_metric(registry: CollectorRegistry, job: str, at: datetime | None) -> None:
    """`reconcile_last_success_timestamp_seconds`: when the job last ran successfully (0: never)."""
    Gauge("reconcile_last_success_timestamp_seconds",
          "When the job's last successful run ended (Unix time; 0 = none recorded). Alert when "
          "time() minus this exceeds the job's expected interval.", ("reconcile_job",),
          registry=registry).labels(job).set(at.timestamp() if at else 0)


def push(url: str, registry: CollectorRegistry, job: str, timeout: float = 10.0) -> None:
    push_to_gateway(url, job="reconcile", registry=registry, grouping_key={"reconcile_job": job}, timeout=timeout)
