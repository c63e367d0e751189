"""The run document: everything recorded about one run, and what its outcome means.

Every run has one, whatever its outcome: it opens with the run's status, exit code and,
for a run that did not apply cleanly (refused, stale, failed, interrupted, partial), the
error that says why. A run still `running` or `applying` is reported as having no
recorded outcome.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconcile.engine.classes import DRIFT_CLASSES
from reconcile.models.run import RUN_STATUSES, RunStatus

MEANING = {
    RunStatus.RUNNING: "no outcome recorded: the run is still going, or its process ended without recording one",
    RunStatus.APPLYING: "no outcome recorded: the run was applying, or its process ended while applying",
    RunStatus.PLANNED: "plan made and saved; nothing was written to Braze",
    RunStatus.DRY_RUN: "dry run; nothing was written to Braze",
    RunStatus.IN_SYNC: "no drift to correct",
    RunStatus.APPLIED: "every planned correction was sent and confirmed",
    RunStatus.PARTIAL: "applied, but some batches failed or some records were rejected",
    RunStatus.REFUSED: "a safety guard refused to apply; nothing was written to Braze",
    RunStatus.STALE: "the saved plan no longer matched Ketch/Braze; nothing was sent",
    RunStatus.FAILED: "the run failed",
    RunStatus.INTERRUPTED: "the run was stopped by a signal",
}

def outcome(run: Mapping[str, Any]) -> dict[str, Any]:
    """Status, exit code, what the status means and the recorded error, for any run."""
    status = run.get("status")
    known = RunStatus(status) if status in RUN_STATUSES else None
    return {
        "status": status,
        "exit_code": run.get("exit_code"),
        "finished": bool(run.get("finished_at")) and known is not None and known.finished,
        "meaning": MEANING[known] if known is not None else f"unknown status {status!r}",
        "error": run.get("error"),
    }


def run_document(store: Any, run_id: str) -> dict[str, Any]:
    """Everything recorded about one run, as plain JSON-able data (identities in clear)."""
    run = store.get_run(run_id)
    if run is None:
        raise KeyError(run_id)
    actions = store.actions(run_id=run_id) if not run.get("plan_id") else store.actions(plan_id=run["plan_id"])
    return {
        "run": run,
        "outcome": outcome(run),
        "drift_counts": {c: int((run.get("drift_counts") or {}).get(c, 0)) for c in DRIFT_CLASSES},
        "exceptions": store.exceptions(run_id),
        "actions": [{k: a.get(k) for k in ("action_id", "seq", "kind", "endpoint", "status", "attempts",
                                           "response_summary", "error", "sent_at", "finished_at")}
                    | {"subjects": len(a.get("subject_keys") or [])} for a in actions],
        "drift_items": store.drift_items(run_id=run_id),
    }
