"""What changed between two runs, from the drift items' own times, so the numbers add up.

An item is open from when it was first seen until it was verified in Braze or resolved
(the drift went away); a correction sent but not yet read back keeps it open. Between the
previous run's end (t0) and this run's end (t1):

    open before = open at t0
    new         = first seen after t0, by t1
    closed      = verified or resolved after t0, by t1 (split into corrected-and-verified
                  and resolved without a correction)
    open now    = open at t1 = open before + new - closed, for every class and in total

`drift found` is what this run's diff counted; an incremental run checks only part of the
universe, so it can differ from `open now`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from reconcile.engine.classes import DRIFT_CLASSES, SEVERITY

SEVERITIES = ("critical", "high", "medium", "warn", "low", "info")


def closed_at(item: Mapping[str, Any]) -> datetime | None:
    times = [t for t in (item.get("verified_at"), item.get("resolved_at")) if t is not None]
    return min(times) if times else None


def is_open(item: Mapping[str, Any], at: datetime) -> bool:
    closed = closed_at(item)
    return item["first_seen_at"] <= at and (closed is None or closed > at)


def run_end(run: Mapping[str, Any]) -> datetime:
    return run.get("finished_at") or run["started_at"]


def change_section(run: Mapping[str, Any], previous: Mapping[str, Any] | None,
                   items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The `changes` section for `run` against `previous` (None: the first run)."""
    t1 = run_end(run)
    t0 = run_end(previous) if previous else None
    found = run.get("drift_counts") or {}
    rows: list[dict[str, Any]] = []
    for cls in DRIFT_CLASSES:
        mine = [i for i in items if i["drift_class"] == cls and i["first_seen_at"] <= t1]
        closed = [i for i in mine if (c := closed_at(i)) is not None and c <= t1 and (t0 is None or c > t0)]
        rows.append({
            "drift_class": cls, "severity": SEVERITY[cls],
            "found": int(found.get(cls, 0)) if run.get("drift_counts") is not None else None,
            "before": sum(1 for i in mine if t0 is not None and is_open(i, t0)),
            "new": sum(1 for i in mine if t0 is None or i["first_seen_at"] > t0),
            "fixed": sum(1 for i in closed if i.get("corrected_at") is not None and i.get("verified_at") is not None),
            "resolved": sum(1 for i in closed if not (i.get("corrected_at") is not None
                                                      and i.get("verified_at") is not None)),
            "now": sum(1 for i in mine if is_open(i, t1)),
        })
    for r in rows:
        r["closed"] = r["fixed"] + r["resolved"]
        r["delta"] = r["now"] - r["before"]
    total = {k: sum(r[k] for r in rows) for k in ("before", "new", "fixed", "resolved", "closed", "now", "delta")}
    open_now = [i for i in items if is_open(i, t1)]
    return {
        "previous_run": previous["run_id"] if previous else None,
        "previous_status": previous.get("status") if previous else None,
        "since": t0, "until": t1,
        "by_class": rows, "total": total,
        "open_by_severity": {s: sum(1 for i in open_now if SEVERITY.get(i["drift_class"]) == s) for s in SEVERITIES},
        "out_of_sync_subjects": len({i["subject_key"] for i in open_now if i.get("last_seen_run") == run["run_id"]}),
    }
