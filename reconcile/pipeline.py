"""The reconciliation pipeline: universe → extract → diff → plan → guarded apply → verify.

Every step is recorded in the state store under one run id. Time comes from
`rt.clock` (tz-aware UTC) and waiting from `rt.sleep`, both injected.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import pandas as pd

from reconcile.engine import extract as ex
from reconcile.engine.apply import Executor, apply_actions
from reconcile.engine.diff import Rules, diff
from reconcile.engine.classes import DRIFT_CLASSES
from reconcile.engine.frames import Observed, isin
from reconcile.engine.guards import PlanStats, Tripped, check_guards, refused
from reconcile.engine.plan import Plan, build_plan, fingerprint, plan_from_dict, plan_to_dict
from reconcile.engine.universe import Sources, build_universe, load_deletions, load_listed, pick_slice
from reconcile.errors import ExitCode, GuardRefused, StalePlan
from reconcile.runtime import Runtime

log = logging.getLogger(__name__)


@dataclass
class PlanResult:
    run_id: str
    plan: Plan
    observed: Observed
    tripped: list[Tripped]
    exceptions: pd.DataFrame
    drift_ids: dict[tuple[str, str, str], int] = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        vc = self.plan.drift["drift_class"].value_counts() if len(self.plan.drift) else {}
        return {c: int(vc.get(c, 0)) for c in DRIFT_CLASSES}


# ----------------------------------------------------------------------------- observe


WATERMARK = "last_success_started_at"
SLICE_COUNTER = "full_sweep_slice"


def _since(rt: Runtime) -> datetime | None:
    value = rt.store.get_watermark(WATERMARK)
    return datetime.fromisoformat(value) if value else None


def _window(rt: Runtime, mode: str, since: datetime | None) -> tuple[date, date, bool]:
    """Braze list window: everything since `full_since` for full runs; for incremental runs
    the last `window_days`, widened back to the last successful run when that is older."""
    today = rt.clock().date()
    if mode == "full":
        return date.fromisoformat(rt.cfg.universe.full_since), today + timedelta(days=1), True
    start = today - timedelta(days=rt.cfg.universe.window_days)
    if since is not None:
        start = min(start, since.date() - timedelta(days=1))
    return start, today + timedelta(days=1), False


def observe(rt: Runtime, mode: str, subjects: set[str] | None = None) -> tuple[Observed, pd.DataFrame]:
    """Build the universe and extract both sides; `subjects` restricts to those keys."""
    cfg = rt.cfg
    since = _since(rt) if mode == "incremental" else None
    start, end, full = _window(rt, mode, since)
    unsub, bounced = ex.braze_lists(rt.braze, start, end, cfg)
    open_drift = pd.DataFrame([{"subject_key": d["subject_key"], "identity": (d.get("detail") or {}).get("identity")
                                or d["subject_key"]} for d in rt.store.open_drift()])
    tomb = pd.DataFrame(rt.store.tombstones())
    src = Sources(
        listed=load_listed(cfg.universe, since), deletions=load_deletions(cfg.universe), unsubscribed=unsub,
        bounced=bounced, open_drift=_keys_frame(open_drift, "identity"), tombstones=_keys_frame(tomb, "identity"))
    universe, exceptions = build_universe(src, cfg.identity.braze_key)
    if mode == "full" and subjects is None and cfg.universe.slices > 1:
        universe = pick_slice(universe, cfg.universe.slices, int(rt.store.get_watermark(SLICE_COUNTER) or 0))
    if subjects is not None:
        universe = universe[isin(universe["subject_key"], subjects)].reset_index(drop=True)
    ketch, topics, failed = ex.extract_ketch(rt.ketch, universe, cfg, rt.progress)
    if len(failed):  # unknown is not "no record": leave them out of this run, report them
        log.warning("%d Ketch lookups failed; those subjects are skipped this run", len(failed))
        universe = universe[~isin(universe["identity"], failed["identity"])].reset_index(drop=True)
        exceptions = pd.concat([exceptions, failed.assign(source="ketch")], ignore_index=True)
    braze, groups = _extract_braze(rt, universe, unsub, bounced, ketch, full, end)
    return Observed(universe, ketch, topics, braze, groups), exceptions


def _extract_braze(rt: Runtime, universe: pd.DataFrame, unsub: pd.DataFrame, bounced: pd.DataFrame,
                   ketch: pd.DataFrame, full_window: bool, today: date) -> tuple[pd.DataFrame, pd.DataFrame]:
    if rt.cfg.identity.braze_key == "email":
        return ex.extract_braze_email(rt.braze, universe, unsub, bounced, ketch, rt.cfg, full_window, today=today)
    return ex.extract_braze_external(rt.braze, universe, unsub, bounced, rt.cfg)


def _keys_frame(df: pd.DataFrame, ident: str) -> pd.DataFrame:
    if not len(df):
        return pd.DataFrame({"subject_key": pd.Series(dtype="string"), "identity": pd.Series(dtype="string")})
    return df[["subject_key", ident]].drop_duplicates("subject_key").rename(columns={ident: "identity"})


# ----------------------------------------------------------------------------- plan


def make_plan(rt: Runtime, *, mode: str = "full", run_id: str | None = None) -> PlanResult:
    cfg, store = rt.cfg, rt.store
    run_id = run_id or new_run_id(rt)
    store.start_run(run_id, mode=mode, config_hash=cfg.hash(), started_at=rt.clock())
    observed, exceptions = observe(rt, mode)
    extracted_at = rt.clock()
    rules = Rules.from_config(cfg)
    drift = diff(observed, rules)
    fp = fingerprint(cfg.hash(), observed.universe, observed.ketch, observed.ketch_topics, observed.braze,
                     observed.braze_groups)
    emails = observed.universe.set_index("subject_key")["email"].fillna(observed.braze.set_index("subject_key")["email"])
    plan = build_plan(drift, emails, rules, plan_fp=fp, plan_id=f"plan-{run_id}",
                      track_batch_size=cfg.braze.track_batch_size)
    for a in plan.actions:
        a["plan_id"] = plan.plan_id
    drift_ids = store.record_drift(run_id, _drift_records(drift), observed.universe["subject_key"], rt.clock())
    store.add_exceptions(run_id, exceptions.astype(object).where(exceptions.notna(), "").to_dict("records"))
    store.save_plan(plan.plan_id, run_id, fp, plan_to_dict(plan, run_id=run_id, config_hash=cfg.hash()), rt.clock())
    store.journal_plan(plan.plan_id, run_id, plan.actions, rt.clock())
    result = PlanResult(run_id, plan, observed, [], exceptions, drift_ids)
    result.tripped = check_guards(_stats(result), _previous(rt, run_id, mode), cfg.guards)
    store.update_run(run_id, status="planned", universe_count=len(observed.universe),
                     ketch_count=len(observed.universe), ketch_records=int(observed.ketch["has_record"].sum()),
                     ketch_extracted_at=extracted_at, braze_count=int(observed.braze["exists"].fillna(True).sum()),
                     braze_extracted_at=extracted_at, drift_counts=result.counts, exceptions_count=len(exceptions),
                     plan_id=plan.plan_id, plan_fingerprint=fp, actions_planned=len(plan.actions),
                     guard_result=[t.__dict__ for t in result.tripped])
    return result


def new_run_id(rt: Runtime) -> str:
    return rt.clock().strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]


def _drift_records(drift: pd.DataFrame) -> list[dict[str, Any]]:
    cols = ["subject_key", "drift_class", "field", "expected", "actual", "severity", "reason", "ketch_collected_at"]
    d = drift[cols].copy()
    d["ketch_collected_at"] = pd.to_datetime(d["ketch_collected_at"], utc=True)
    recs = d.astype(object).where(d.notna(), None).to_dict("records")
    extra = drift[["identity", "action", "group_id"]].astype(object).where(drift[["identity", "action", "group_id"]].notna(), None)
    for rec, x in zip(recs, extra.to_dict("records")):
        rec["detail"] = x
    return recs


def _stats(r: PlanResult) -> PlanStats:
    o = r.observed
    return PlanStats(universe=len(o.universe), ketch_records=int(o.ketch["has_record"].sum()),
                     braze_profiles=int(o.braze["exists"].fillna(True).sum()),
                     deletions=len(r.plan.deletion_subjects), unsubscribes=len(r.plan.unsubscribe_subjects))


def _previous(rt: Runtime, run_id: str, mode: str) -> dict[str, Any] | None:
    """The last completed run of the same mode: an incremental run is never compared with a
    full sweep (it is smaller by design)."""
    for run in rt.store.list_runs(100):
        if run["run_id"] != run_id and run.get("mode") == mode and run.get("status") in ("applied", "in_sync", "partial"):
            return run
    return None


# ----------------------------------------------------------------------------- apply


@dataclass
class RunSummary:
    run_id: str
    status: str
    exit_code: int
    counts: dict[str, int]
    actions_planned: int = 0
    actions_sent: int = 0
    actions_failed: int = 0
    rejected_items: int = 0
    verified: int = 0
    unverified: int = 0
    overrides: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)


def enforce_guards(rt: Runtime, result: PlanResult, overrides: set[str]) -> list[str]:
    """Raise GuardRefused (recording it) unless every tripped guard is overridden."""
    blocking = refused(result.tripped, overrides)
    if blocking:
        msg = "; ".join(t.message for t in blocking)
        names = list(dict.fromkeys(t.guard for t in blocking))
        err = GuardRefused(names, f"{msg}. Nothing was written to Braze. After review, override with "
                           + " ".join(f"--allow {n}" for n in names) + ".")
        rt.store.update_run(result.run_id, status="refused", exit_code=err.exit_code, error=str(err),
                            finished_at=rt.clock())
        rt.store.set_plan_status(result.plan.plan_id, "refused")
        raise err
    used = sorted({t.guard for t in result.tripped} & overrides)
    if used:
        rt.store.update_run(result.run_id, guard_overrides=used)
        log.warning("guards overridden by explicit flag: %s", ", ".join(used))
    return used


def apply_result(rt: Runtime, result: PlanResult, overrides: set[str] = frozenset()) -> RunSummary:
    """Guarded apply of a fresh plan, then verify; records everything in the run."""
    used = enforce_guards(rt, result, set(overrides))
    store, plan = rt.store, result.plan
    store.set_plan_status(plan.plan_id, "applying")
    store.update_run(result.run_id, status="applying")
    executor = Executor(rt.cfg, rt.braze, rt.ketch)
    outcome = apply_actions(plan.actions, store, executor, rt.clock)
    items = _corrected_items(result, outcome.corrected)
    _mark_corrected(rt, items)
    _tombstone(rt, result, outcome.deleted_subjects)
    verified, unverified = verify(rt, result, items)
    partial = outcome.failed or outcome.rejected_items
    status = "partial" if partial else "applied"
    code = ExitCode.PARTIAL if partial else ExitCode.OK
    store.set_plan_status(plan.plan_id, "applied" if not partial else "applying")
    store.add_exceptions(result.run_id, [{"identity": s, "source": "braze_rejected", "reason": why}
                                         for s, why in outcome.rejected_items])
    store.update_run(result.run_id, status=status, exit_code=code, finished_at=rt.clock(),
                     actions_sent=outcome.sent, actions_confirmed=outcome.confirmed, actions_failed=outcome.failed,
                     verified_count=verified, unverified_count=unverified,
                     error="; ".join(outcome.errors)[:2000] or None)
    return RunSummary(result.run_id, status, code, result.counts, len(plan.actions), outcome.sent, outcome.failed,
                      len(outcome.rejected_items), verified, unverified, used, outcome.errors)


def _corrected_items(result: PlanResult, corrected: dict[str, list[str]]) -> dict[str, dict[tuple, int]]:
    """action id -> {drift key: drift item id} for the subjects each action got accepted."""
    by_id = {a["action_id"]: a for a in result.plan.actions}
    out: dict[str, dict[tuple, int]] = {}
    for action_id, subjects in corrected.items():
        ok = set(subjects)
        keys = (tuple(k) for k in by_id[action_id]["drift_keys"] if k[0] in ok)
        out[action_id] = {k: result.drift_ids[k] for k in keys if k in result.drift_ids}
    return out


def _mark_corrected(rt: Runtime, items: dict[str, dict[tuple, int]]) -> None:
    for action_id, by_key in items.items():
        if by_key:
            rt.store.mark_corrected(list(by_key.values()), action_id, rt.clock())


def _tombstone(rt: Runtime, result: PlanResult, subjects: list[str]) -> None:
    if not subjects:
        return
    u = result.observed.universe.set_index("subject_key")
    rt.store.add_tombstones([{"subject_key": s, "identity": str(u.loc[s, "identity"]), "deleted_at": rt.clock(),
                              "run_id": result.run_id, "reason": "deletion request" if u.loc[s, "deletion_requested"]
                              else "resurrected"} for s in subjects if s in u.index])


def verify(rt: Runtime, result: PlanResult, items: dict[str, dict[tuple, int]]) -> tuple[int, int]:
    """Re-read corrected subjects after the consistency delay; mark what is fixed `verified`."""
    corrected = {k: i for by_key in items.values() for k, i in by_key.items()}
    if not corrected or not rt.cfg.apply.verify:
        return 0, 0
    if rt.cfg.apply.consistency_delay_seconds:
        rt.sleep(rt.cfg.apply.consistency_delay_seconds)
    o = result.observed.subset({k[0] for k in corrected})
    today = rt.clock().date()
    unsub, bounced = ex.braze_lists(rt.braze, today - timedelta(days=1), today + timedelta(days=1), rt.cfg)
    braze, groups = _extract_braze(rt, o.universe, unsub, bounced, o.ketch, True, today + timedelta(days=1))
    if rt.cfg.identity.braze_key == "email":  # the list was re-read only since yesterday: keep older unsubscribes
        earlier = braze["subject_key"].map(o.braze.set_index("subject_key")["unsubscribed_at"])
        braze["unsubscribed_at"] = braze["unsubscribed_at"].fillna(earlier)
        braze.loc[braze["unsubscribed_at"].notna() & braze["exists"].fillna(True).astype(bool), "email_subscribe"] = "unsubscribed"
    after = diff(Observed(o.universe, o.ketch, o.ketch_topics, braze, groups), Rules.from_config(rt.cfg))
    remaining = set(zip(after["subject_key"], after["drift_class"], after["field"]))
    fixed = [i for k, i in corrected.items() if k not in remaining]
    if fixed:
        rt.store.mark_verified(fixed, rt.clock())
    return len(fixed), len(corrected) - len(fixed)


# ----------------------------------------------------------------------------- saved plans and runs


def check_stale(plan_dict: dict[str, Any], drift_now: pd.DataFrame, done: dict[str, str], config_hash: str) -> None:
    """Refuse a plan whose pending corrections no longer match the world."""
    if plan_dict.get("config_hash") != config_hash:
        raise StalePlan(f"plan {plan_dict['plan_id']} was made with config {plan_dict.get('config_hash')}, "
                        f"the config is now {config_hash}; run `reconcile plan` again")
    now = {(r.subject_key, r.drift_class, r.field): r.expected for r in drift_now.itertuples()}
    planned = {(d["subject_key"], d["drift_class"], d["field"]): d["expected"] for d in plan_dict["drift"]}
    changed = []
    for a in plan_dict["actions"]:
        status = done.get(a["action_id"], "pending")
        if status in ("confirmed", "rejected", "skipped"):
            continue
        for key in map(tuple, a["drift_keys"]):
            if key not in now and status != "sending" or key in now and now[key] != planned.get(key):
                changed.append(key)
    if changed:
        sample = ", ".join(f"{k[0]} {k[1]} {k[2]}" for k in changed[:3])
        raise StalePlan(f"plan {plan_dict['plan_id']} is stale: {len(changed)} planned correction(s) no longer "
                        f"match Ketch/Braze (e.g. {sample}); nothing was sent. Run `reconcile plan` again")


def apply_saved(rt: Runtime, plan_dict: dict[str, Any], overrides: set[str] = frozenset()) -> RunSummary:
    """`reconcile apply PLAN`: re-check the planned subjects, refuse a stale plan, apply the rest."""
    plan = plan_from_dict(plan_dict)
    for a in plan.actions:
        a.setdefault("plan_id", plan.plan_id)
    rt.store.journal_plan(plan.plan_id, plan_dict.get("run_id", ""), plan.actions, rt.clock())
    done = {a["action_id"]: a["status"] for a in rt.store.actions(plan_id=plan.plan_id)}
    subjects = {s for a in plan.actions if done.get(a["action_id"]) not in ("confirmed", "rejected", "skipped")
                for s in a["subject_keys"]}
    run_id = new_run_id(rt)
    rt.store.start_run(run_id, mode="apply", config_hash=rt.cfg.hash(), started_at=rt.clock())
    rt.store.update_run(run_id, plan_id=plan.plan_id, plan_fingerprint=plan.fingerprint)
    observed, exceptions = observe(rt, "full", subjects)
    drift_now = diff(observed, Rules.from_config(rt.cfg))
    try:
        check_stale(plan_dict, drift_now, done, rt.cfg.hash())
    except StalePlan as exc:
        rt.store.set_plan_status(plan.plan_id, "stale")
        rt.store.update_run(run_id, status="stale", exit_code=ExitCode.STALE_PLAN, error=str(exc), finished_at=rt.clock())
        raise
    ids = rt.store.record_drift(run_id, _drift_records(drift_now), observed.universe["subject_key"], rt.clock())
    result = PlanResult(run_id, plan, observed, [], exceptions, ids)
    result.tripped = _planned_guards(rt, plan_dict, plan)
    rt.store.update_run(run_id, drift_counts=result.counts, actions_planned=len(plan.actions))
    return apply_result(rt, result, overrides)


def _planned_guards(rt: Runtime, plan_dict: dict[str, Any], plan: Plan) -> list[Tripped]:
    """Guards are judged at plan time, against the whole universe; a saved plan carries that
    verdict. A plan file from elsewhere is judged again on its absolute deletion count."""
    planned_run = rt.store.get_run(plan_dict.get("run_id", "")) if plan_dict.get("run_id") else None
    if planned_run is not None and planned_run.get("guard_result") is not None:
        return [Tripped(**t) for t in planned_run["guard_result"]]
    n = len(plan.deletion_subjects)
    if n > rt.cfg.guards.max_deletions:
        return [Tripped("max_deletions", f"{n} deletions planned, limit guards.max_deletions = "
                        f"{rt.cfg.guards.max_deletions}; Braze deletions cannot be undone")]
    return []


def run_once(rt: Runtime, *, mode: str = "full", dry_run: bool = False, overrides: set[str] = frozenset()) -> RunSummary:
    """`reconcile run`: resume anything a crash left behind, then plan and apply."""
    if not dry_run:
        resume_unfinished(rt, overrides)
    started = rt.clock()
    summary = _plan_and_apply(rt, mode, dry_run, overrides)
    if not dry_run and summary.status in ("applied", "in_sync"):
        rt.store.set_watermark(WATERMARK, started.isoformat(), rt.clock())
        if mode == "full" and rt.cfg.universe.slices > 1:
            counter = int(rt.store.get_watermark(SLICE_COUNTER) or 0) + 1
            rt.store.set_watermark(SLICE_COUNTER, str(counter % rt.cfg.universe.slices), rt.clock())
    return summary


def _plan_and_apply(rt: Runtime, mode: str, dry_run: bool, overrides: set[str]) -> RunSummary:
    result = make_plan(rt, mode=mode)
    if dry_run:
        code = ExitCode.DRIFT if result.plan.actions else ExitCode.OK
        rt.store.update_run(result.run_id, status="dry_run", exit_code=code, finished_at=rt.clock())
        return RunSummary(result.run_id, "dry_run", code, result.counts, len(result.plan.actions))
    if not result.plan.actions:
        rt.store.update_run(result.run_id, status="in_sync", exit_code=ExitCode.OK, finished_at=rt.clock())
        rt.store.set_plan_status(result.plan.plan_id, "applied")
        return RunSummary(result.run_id, "in_sync", ExitCode.OK, result.counts)
    return apply_result(rt, result, overrides)


def resume_unfinished(rt: Runtime, overrides: set[str] = frozenset()) -> list[RunSummary]:
    """Finish plans a crash interrupted; a stale one has its remaining batches skipped."""
    out = []
    for plan_id in rt.store.unfinished_plans():
        saved = rt.store.get_plan(plan_id)
        if not saved or saved["status"] != "applying":  # planned-only or refused plans are never auto-applied
            continue
        log.warning("resuming plan %s left unfinished by an earlier run", plan_id)
        try:
            out.append(apply_saved(rt, saved["body"], overrides))
        except StalePlan as exc:
            log.warning("%s; skipping its remaining batches", exc)
            for a in rt.store.actions(plan_id=plan_id):
                if a["status"] in ("pending", "sending"):
                    rt.store.journal_result(a["action_id"], "skipped", error="plan stale at resume", at=rt.clock())
    return out
