"""The verdict a report opens with: is the workspace in compliance, and what says so.

    not in compliance   a request breached its deadline (still open past it, or honoured
                        late) in the period the report covers
    at risk             no breach, but a deadline is near, critical drift is still open,
                        or the run did not finish cleanly (its findings are incomplete)
    in compliance       none of the above

The badge colour follows the verdict, never the run's own status: a run that applied
every correction can still report requests honoured after their deadline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from reconcile.reports.requests import oldest

CLEAN_STATUSES = ("applied", "in_sync", "planned", "dry_run")
LEVELS = {"not_in_compliance": "Not in compliance", "at_risk": "At risk", "in_compliance": "In compliance"}


def verdict(run: Mapping[str, Any], outcome: Mapping[str, Any], requests: Sequence[Mapping[str, Any]],
            changes: Mapping[str, Any]) -> dict[str, Any]:
    breached = [r for r in requests if r["sla"] == "breached"]
    open_breached = [r for r in breached if r["done_at"] is None]
    nearing = [r for r in requests if r["sla"] == "nearing"]
    severity = dict(changes["open_by_severity"])
    universe = run.get("universe_count")
    out_of_sync = int(changes["out_of_sync_subjects"])
    in_sync_pct = round(100.0 * max(0, universe - out_of_sync) / universe, 1) if universe else None
    reasons = []
    if breached:
        reasons.append(f"{len(breached)} request(s) breached their deadline: {len(open_breached)} still open, "
                       f"{len(breached) - len(open_breached)} honoured late")
    if nearing:
        reasons.append(f"{len(nearing)} request(s) near their deadline")
    if severity.get("critical"):
        reasons.append(f"{severity['critical']} critical drift item(s) still open")
    finished_clean = outcome.get("status") in CLEAN_STATUSES
    if not finished_clean:
        reasons.append(f"the run ended {outcome.get('status')}: {outcome.get('meaning')}")
    if breached:
        level = "not_in_compliance"
    elif reasons:
        level = "at_risk"
    else:
        level = "in_compliance"
    return {
        "level": level, "label": LEVELS[level], "reasons": reasons,
        "breached": len(breached), "breached_open": len(open_breached), "nearing": len(nearing),
        "oldest_breached": _brief(oldest(breached, "breached")),
        "oldest_nearing": _brief(oldest(nearing, "nearing")),
        "open_by_severity": severity, "open_total": sum(severity.values()),
        "universe": universe, "out_of_sync_subjects": out_of_sync, "in_sync_percent": in_sync_pct,
        "run_status": outcome.get("status"),
    }


def _brief(request: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if request is None:
        return None
    return {"subject_key": request["subject_key"], "kind": request["kind"], "requested_at": request["source_at"],
            "due_at": request["due_at"], "done_at": request["done_at"], "places": list(request["places"]),
            "business_days_open": request["business_days_open"], "business_days_left": request["business_days_left"]}
