"""Saved plans: `reconcile apply PLAN`, and plans a crash left unfinished.

A plan file is applied only as the state store saved it (same plan id, same actions); its
planned subjects are read again and a plan whose pending corrections no longer match the
world is refused as stale before anything is sent.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterable

import pandas as pd

from reconcile.engine.diff import Rules, diff
from reconcile.engine.guards import Tripped
from reconcile.engine.plan import drift_keys, plan_from_document
from reconcile.errors import DataError, ExitCode, StalePlan
from reconcile.models.plan import ActionStatus, Plan, PlanStatus
from reconcile.models.run import RunResult, RunStatus
from reconcile.pipeline.read import observe
from reconcile.pipeline.recorder import close_abandoned
from reconcile.pipeline.run import Planned, apply_planned, record_drift, recorder, reported, result_of, running
from reconcile.pipeline.session import Session

log = logging.getLogger(__name__)


def check_stale(doc: dict[str, Any], plan: Plan, drift_now: pd.DataFrame, done: dict[str, str],
                config_hash: str) -> None:
    """Refuse a plan whose pending corrections no longer match the world."""
    if doc.get("config_hash") != config_hash:
        raise StalePlan(f"plan {plan.plan_id} was made with config {doc.get('config_hash')}, "
                        f"the config is now {config_hash}; run `reconcile plan` again")
    now = dict(zip(drift_keys(drift_now), drift_now["expected"]))
    planned_rows = pd.DataFrame(doc.get("drift") or [])
    planned = dict(zip(drift_keys(planned_rows), planned_rows["expected"])) if len(planned_rows) else {}
    changed = []
    for a in plan.actions:
        status = ActionStatus(done.get(a.action_id, ActionStatus.PENDING))
        if status.done:
            continue
        for key in a.drift_keys:
            if key not in now and status is not ActionStatus.SENDING or key in now and now[key] != planned.get(key):
                changed.append(key)
    if changed:
        raise StalePlan(f"plan {plan.plan_id} is stale: {len(changed)} planned correction(s) no longer match "
                        f"Ketch/Braze (e.g. {changed[0].drift_class} {changed[0].stored_field}); nothing was sent. "
                        "Run `reconcile plan` again")


def _trusted(rt: Session, doc: dict[str, Any]) -> tuple[Plan, dict[str, Any]]:
    """A plan file is applied only as the state store saved it: same plan id, same actions."""
    plan = plan_from_document(doc)
    saved = rt.store.get_plan(plan.plan_id)
    if not saved:
        raise DataError(f"plan {plan.plan_id} is not in this state store; only plans made by `reconcile plan` "
                        "against this store can be applied")
    stored = plan_from_document(saved["body"])
    if stored.actions_hash() != plan.actions_hash() or doc.get("actions_hash") not in (None, stored.actions_hash()):
        raise DataError(f"plan {plan.plan_id}: the file's actions differ from the plan the state store saved "
                        "(edited or corrupted); nothing was sent. Run `reconcile plan` again")
    return stored, saved["body"]


def apply_saved(rt: Session, doc: dict[str, Any], overrides: Iterable[str] = (), *, batch_guard: Any = None,
                before_batch: Callable[[], None] | None = None, actor: str | None = None,
                job: str | None = None) -> RunResult:
    """`reconcile apply PLAN`: re-check the planned subjects, refuse a stale plan, apply the rest."""
    plan, body = _trusted(rt, doc)
    journal = rt.store.actions(plan_id=plan.plan_id)
    done = {a["action_id"]: a["status"] for a in journal}
    # the caller holds the job's run lock: a run of this plan still open has no live holder
    for run_id in sorted(({str(body.get("run_id") or "")} | {str(a.get("run_id") or "") for a in journal}) - {""}):
        close_abandoned(rt.store, run_id, rt.clock)
    subjects = {s for a in plan.actions if not ActionStatus(done.get(a.action_id, ActionStatus.PENDING)).done
                for s in a.subject_keys}
    rec = recorder(rt, "apply", job=job)
    with running(rt, rec):
        rec.update(plan_id=plan.plan_id, plan_fingerprint=plan.fingerprint)
        obs = observe(rt, "full", rec.run_id, subjects)
        drift_now = diff(obs.observed, Rules.from_config(rt.cfg))
        try:
            check_stale(body, plan, drift_now, done, rt.cfg.hash())
        except StalePlan as exc:
            rec.plan_status(plan.plan_id, PlanStatus.STALE)
            rec.stale(str(exc))
            return reported(rt, rec, result_of(rec, None, RunStatus.STALE, ExitCode.STALE_PLAN, messages=(str(exc),)))
        ids = record_drift(rt, rec.run_id, drift_now, obs.observed.universe["subject_key"], obs.observed.universe)
        planned = Planned(rec.run_id, obs, drift_now, plan, ids, _planned_guards(rt, body))
        rec.update(drift_counts=planned.counts, actions_planned=len(plan.actions))
        result = apply_planned(rt, rec, planned, overrides, batch_guard=batch_guard, before_batch=before_batch,
                               actor=actor)
    return reported(rt, rec, result)


def _planned_guards(rt: Session, body: dict[str, Any]) -> list[Tripped]:
    """Guards are judged at plan time, against the whole universe; a saved plan carries that verdict."""
    run = rt.store.get_run(body.get("run_id", "")) if body.get("run_id") else None
    return [Tripped.from_json(t) for t in (run or {}).get("guard_result") or []]


def resume_unfinished(rt: Session, overrides: Iterable[str] = (), job: str | None = None,
                      **kwargs: Any) -> list[RunResult]:
    """Finish plans a crash interrupted (only `job`'s: another job's plan belongs to its own
    lock, and maybe to another workspace); a stale one has its remaining batches skipped."""
    out = []
    for plan_id in rt.store.unfinished_plans():
        saved = rt.store.get_plan(plan_id)
        if not saved or saved["status"] != PlanStatus.APPLYING:  # planned-only or refused plans are never auto-applied
            continue
        if (rt.store.get_run(saved["run_id"]) or {}).get("job") != job:
            continue
        log.warning("resuming plan %s left unfinished by an earlier run", plan_id)
        result = apply_saved(rt, saved["body"], overrides, job=job, **kwargs)
        out.append(result)
        if result.status is RunStatus.STALE:
            for a in rt.store.actions(plan_id=plan_id):
                if a["status"] in (ActionStatus.PENDING, ActionStatus.SENDING):
                    rt.store.journal_result(a["action_id"], ActionStatus.SKIPPED, error="plan stale at resume",
                                            at=rt.clock())
    return out
