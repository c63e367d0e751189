"""Choosing the runs a report covers and gathering what it shows, identities in clear.

    Selection(run_id=...)   one run in detail; trends over the runs before it
    Selection(since=...)    every run started since then; the newest in detail
    Selection(job=...)      every run of a scheduled job; the newest in detail

Runs of mode `prune` (retention) are listed but never the run shown in detail, nor part
of the trends. `collect` is the one entry point; `reconcile.reports.scrub` masks its
result before anything is rendered.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib import metadata
from typing import Any


from reconcile.engine.classes import DRIFT_CLASSES, SEVERITY
from reconcile.errors import DataError
from reconcile.reports.ccpa import request_log, yearly_metrics
from reconcile.reports.changes import change_section, run_end
from reconcile.reports.channels import by_channel, sms_groups
from reconcile.reports.requests import group_requests, topic_names
from reconcile.reports.sla import SlaPolicy, done_time, sla_section
from reconcile.reports.verdict import verdict

TREND_RUNS = 90
RUN_LIMIT = 5000
CRITICAL = tuple(c for c in DRIFT_CLASSES if SEVERITY[c] == "critical")
TTR_BUCKETS = tuple(range(0, 16))  # business days; the last bucket is "15 or more"
MAINTENANCE_MODES = ("prune",)


@dataclass(frozen=True)
class Selection:
    run_id: str | None = None
    since: datetime | None = None
    job: str | None = None

    def describe(self) -> str:
        if self.run_id:
            return f"run {self.run_id}"
        parts = ([f"runs since {self.since.isoformat()}"] if self.since else []) + (
            [f"job {self.job}"] if self.job else [])
        return ", ".join(parts) or "the latest run"


DISTRIBUTION = "ketch-braze-reconcile"


def tool_version() -> str:
    """The installed distribution's version (`pip show ketch-braze-reconcile`)."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "unknown"


def select_runs(store: Any, sel: Selection) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(the run shown in detail, the runs the trends cover, oldest first)."""
    every = [r for r in reversed(store.list_runs(RUN_LIMIT))]
    runs = [r for r in every if r.get("mode") not in MAINTENANCE_MODES]
    if sel.run_id:
        idx = next((i for i, r in enumerate(runs) if r["run_id"] == sel.run_id), None)
        if idx is None:
            raise DataError(f"no run {sel.run_id!r} in the state store; see `reconcile runs list`")
        return runs[idx], runs[max(0, idx - TREND_RUNS + 1): idx + 1]
    chosen = [r for r in runs if (sel.since is None or r["started_at"] >= sel.since)
              and (sel.job is None or r.get("job") == sel.job)]
    if not chosen:
        raise DataError(f"no runs for {sel.describe()}; see `reconcile runs list`")
    return chosen[-1], chosen


def overrides(run: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Guard overrides as [{guard, actor, at}]; older runs recorded bare guard names."""
    out = []
    for entry in run.get("guard_overrides") or []:
        if isinstance(entry, Mapping):
            out.append({"guard": entry.get("guard"), "actor": entry.get("actor"), "at": entry.get("at")})
        else:
            out.append({"guard": str(entry), "actor": None, "at": None})
    return out


def run_row(run: Mapping[str, Any]) -> dict[str, Any]:
    from reconcile.reports.outcome import outcome

    counts = run.get("drift_counts") or {}
    out = outcome(run)
    return {"run_id": run["run_id"], "started_at": run.get("started_at"), "finished_at": run.get("finished_at"),
            "mode": run.get("mode"), "job": run.get("job"), "status": out["status"], "exit_code": out["exit_code"],
            "meaning": out["meaning"], "error": out["error"],
            "drift_total": sum(int(v) for v in counts.values()) if run.get("drift_counts") is not None else None,
            "critical_found": sum(int(counts.get(c, 0)) for c in CRITICAL)}


def summary(run: Mapping[str, Any]) -> dict[str, Any]:
    started, finished = run.get("started_at"), run.get("finished_at")
    return {
        "run_id": run["run_id"], "mode": run.get("mode"), "job": run.get("job"),
        "config_hash": run.get("config_hash"),
        "tool_version": (run.get("summary") or {}).get("tool_version") or "not recorded",
        "started_at": started, "finished_at": finished,
        "duration_seconds": (finished - started).total_seconds() if started and finished else None,
        "capabilities": run.get("capabilities") or {},
        "extracts": [
            {"side": "universe", "size": run.get("universe_count"), "at": None},
            {"side": "Ketch", "size": run.get("ketch_records"), "looked_up": run.get("ketch_count"),
             "at": run.get("ketch_extracted_at")},
            {"side": "Braze", "size": run.get("braze_count"), "at": run.get("braze_extracted_at")},
        ],
        "actions": {k: run.get(f"actions_{k}") for k in ("planned", "sent", "confirmed", "failed")},
        "verified": run.get("verified_count"), "unverified": run.get("unverified_count"),
        "reveals": (run.get("summary") or {}).get("reveals") or [],
        "ketch_mirror": (run.get("summary") or {}).get("ketch_mirror"),
    }


def trends(runs: Sequence[Mapping[str, Any]], items: Sequence[Mapping[str, Any]], aged: Sequence[Mapping]) -> dict:
    critical = [i for i in items if i["drift_class"] in CRITICAL]
    points = []
    for r in runs:
        at = r.get("finished_at") or r["started_at"]
        still = sum(1 for i in critical if i["first_seen_at"] <= at and not _done_by(i, at))
        points.append({"run_id": r["run_id"], "at": at, "open_critical": still,
                       "critical_found": sum(int((r.get("drift_counts") or {}).get(c, 0)) for c in CRITICAL)})
    days = [a["business_days_to_done"] for a in aged if a["business_days_to_done"] is not None]
    last = TTR_BUCKETS[-1]
    buckets = [{"label": f"{b}+" if b == last else str(b),
                "count": sum(1 for d in days if (d >= b if b == last else d == b))} for b in TTR_BUCKETS]
    return {"open_critical": points, "time_to_remediate": {"unit": "business days from request to correction",
                                                           "buckets": buckets, "items": len(days)}}


def _done_by(item: Mapping[str, Any], at: datetime) -> bool:
    done = done_time(item)
    return done is not None and done <= at


def collect(store: Any, cfg: Any, sel: Selection, now: datetime) -> dict[str, Any]:
    """Everything the report shows, in clear; mask it with `scrub.masked_report` before use."""
    from reconcile.reports.outcome import run_document

    focal, trend_runs = select_runs(store, sel)
    doc = run_document(store, focal["run_id"])
    start = trend_runs[0]["started_at"]
    end = max(now, focal.get("finished_at") or focal["started_at"])
    items = store.report_items(start, end)
    scope = doc["drift_items"] if sel.run_id else items
    policy = SlaPolicy.from_config(cfg.report, sms_groups(cfg))
    sla = sla_section(scope, policy, now)
    everything = sla_section(items, policy, now)["items"]
    groups = topic_names(cfg.mapping.topics)
    requests = group_requests(sla["items"], groups)
    log = request_log(requests, {i["id"]: i.get("reason") for i in scope})
    prior = [r for r in trend_runs if r["run_id"] != focal["run_id"] and r["started_at"] <= focal["started_at"]]
    previous = prior[-1] if prior else _previous(store, focal)
    run = doc["run"]
    since = run_end(previous) if previous else None
    changed = change_section(run, previous, store.drift_items_since(since, run_end(run)))
    return doc | {
        "report": {"generated_at": now, "tool_version": tool_version(), "selection": sel.describe(),
                   "runs_covered": len(trend_runs)},
        "summary": summary(run),
        "drift_table": [{"drift_class": c, "severity": SEVERITY[c], "count": doc["drift_counts"][c]}
                        for c in DRIFT_CLASSES],
        "drift_by_channel": by_channel(doc["drift_items"], sms_groups(cfg)),
        "guards": {"results": list(run.get("guard_result") or []), "overrides": overrides(run),
                   "judged": run.get("guard_result") is not None},
        "unverified": [i for i in doc["drift_items"] if i["status"] == "corrected"],
        "rejected": [a for a in doc["actions"] if a["status"] in ("rejected", "failed")],
        "rejected_items": [e for e in doc["exceptions"] if e.get("source") == "braze_rejected"],
        "changes": changed,
        "verdict": verdict(run, doc["outcome"], requests, changed),
        "sla": sla | {"requests": requests, "request_counts": _request_counts(requests)},
        "proposed": proposed(store, run) if not doc["actions"] else [],
        "ccpa": {"requests": log, "metrics": yearly_metrics(log)},
        "trends": trends(trend_runs, items, everything),
        "runs": [run_row(r) for r in trend_runs],
        "_identities": sorted({s for a in _actions(store, run) for s in a.get("subject_keys") or []}),
    }


def _actions(store: Any, run: Mapping[str, Any]) -> list[dict[str, Any]]:
    return store.actions(plan_id=run["plan_id"]) if run.get("plan_id") else store.actions(run_id=run["run_id"])


def _previous(store: Any, focal: Mapping[str, Any]) -> dict[str, Any] | None:
    for run in store.list_runs(50):
        if run["started_at"] < focal["started_at"] and run.get("mode") not in MAINTENANCE_MODES:
            return run
    return None


def _request_counts(requests: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    from reconcile.reports.sla import ORDER

    return {name: sum(1 for r in requests if r["sla"] == name) for name in ORDER} | {"total": len(requests)}


def proposed(store: Any, run: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The corrections a saved plan proposes (a plan or dry run journals none)."""
    plan = store.get_plan(run["plan_id"]) if run.get("plan_id") else None
    body = (plan or {}).get("body") or {}
    out = []
    for a in body.get("actions") or []:
        if not isinstance(a, Mapping):
            continue
        subjects = list(dict.fromkeys(str(t[0]) for t in a.get("targets") or [] if isinstance(t, list) and t))
        out.append({"seq": a.get("seq"), "kind": a.get("kind"), "endpoint": a.get("endpoint"),
                    "group_id": a.get("group_id"), "subjects": len(subjects),
                    "drift_items": len(a.get("drift_keys") or [])})
    return out
