"""The reconciliation pipeline: observe → diff → plan → guards → journal → apply → verify.

`run_job` reads straight through; every status change of the run goes through one
`RunRecorder`, which also closes the run as failed or interrupted when anything escapes.
Time comes from `rt.clock` (tz-aware UTC) and waiting from `rt.sleep`, both injected.
"""

from __future__ import annotations

import logging
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Iterator

import pandas as pd

from reconcile.pipeline.crashpoints import crash_point, crash_wrapped
from reconcile.engine.apply import ApplyOutcome, Executor, apply_actions
from reconcile.engine.classes import DRIFT_CLASSES
from reconcile.engine.diff import Rules, diff
from reconcile.engine.baseline import Baseline, find_baseline, note_scope, run_scope
from reconcile.engine.guards import ALL_KINDS, PlanStats, Tripped, Verdict, judge, refused
from reconcile.engine.plan import build_plan, drift_keys, plan_document
from reconcile.engine.sms import sms_addresses, subject_phones
from reconcile.errors import ExitCode, GuardRefused
from reconcile.models.plan import ActionKind, DriftKey, Plan, PlanStatus
from reconcile.models.run import RunResult, RunStatus
from reconcile.observability.events import counting, run_started, stage
from reconcile.pipeline import owed
from reconcile.pipeline.read import SLICE_COUNTER, Observation, ReadBack, observe_and_diff, reobserve
from reconcile.pipeline.recorder import RunRecorder, recording
from reconcile.pipeline.session import Session

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Planned:
    """A planned run: what was observed, the drift, the plan and the guards' verdict."""

    run_id: str
    obs: Observation
    drift: pd.DataFrame
    plan: Plan
    drift_ids: dict[DriftKey, int]
    tripped: list[Tripped]
    verdicts: list[Verdict] = field(default_factory=list)  # every guard's verdict, tripped or not

    @property
    def counts(self) -> dict[str, int]:
        vc = self.drift["drift_class"].value_counts() if len(self.drift) else pd.Series(dtype=int)
        return {c: int(vc.get(c, 0)) for c in DRIFT_CLASSES}


def new_run_id(rt: Session) -> str:
    return rt.clock().strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]


def recorder(rt: Session, mode: str, run_id: str | None = None, job: str | None = None) -> RunRecorder:
    run_id = run_id or new_run_id(rt)
    run_started(rt.progress, run_id, mode)
    return RunRecorder(rt.store, rt.clock, run_id or new_run_id(rt), mode, rt.cfg.hash(), job=job)


def _record_usage(rt: Session, rec: RunRecorder) -> None:
    """Merge the API clients' use (Braze per rate class and endpoint, 429s, waits; the Ketch
    pace reached) into the run's summary as `api_usage`, keeping what else it holds."""
    rec.note(api_usage={"braze": rt.braze.usage(), "ketch": rt.ketch.usage()})


def _report(rt: Session, rec: RunRecorder) -> str | None:
    from reconcile.reports.build import write_report

    run_id = rec.run_id
    try:
        _record_usage(rt, rec)
    except Exception:  # noqa: BLE001 - recording the use must not hide the run's own outcome
        log.exception("could not record the API use of run %s", run_id)
    stage(rt.progress, "report")
    crash_point("report")
    try:
        return str(write_report(rt.store, run_id, rt.cfg))
    except Exception:  # noqa: BLE001 - a report failure must not hide the run's own outcome
        log.exception("could not write the report of run %s", run_id)
        return None


@contextmanager
def running(rt: Session, rec: RunRecorder) -> Iterator[None]:
    """Record the run from start to close; on any escape, the run is closed (failed or
    interrupted) and its report written. A caller learns the run's id from its progress
    object (`run_started`; `observability.events.RunIds`), not from the exception."""
    try:
        with recording(rec):
            yield
    except BaseException:
        _report(rt, rec)
        raise


def reported(rt: Session, rec: RunRecorder, result: RunResult) -> RunResult:
    """`result` with the path of the report written for it."""
    return replace(result, report_path=_report(rt, rec))


# ----------------------------------------------------------------------------- plan


def _drift_records(drift: pd.DataFrame, universe: pd.DataFrame | None = None) -> list[dict[str, Any]]:
    """Store rows; `detail` keeps the identity, the action, the group and, for deletions, the
    time the deletion was requested (the source time its deadline is aged from)."""
    cols = ["subject_key", "drift_class", "expected", "actual", "severity", "reason", "ketch_collected_at"]
    d = drift[cols].copy()
    d["ketch_collected_at"] = pd.to_datetime(d["ketch_collected_at"], utc=True)
    recs = d.astype(object).where(d.notna(), None).to_dict("records", into=dict[str, Any]())
    extra = drift[["identity", "action", "group_id"]].copy()
    if universe is not None and "deletion_requested_at" in universe.columns:
        asked = universe.drop_duplicates("subject_key").set_index("subject_key")["deletion_requested_at"]
        found = asked.reindex(pd.Index(drift["subject_key"].astype(object).to_numpy()))
        when = pd.Series(pd.to_datetime(found.to_numpy(), utc=True), index=drift.index)
        extra["requested_at"] = [t.isoformat() if not pd.isna(t) else None for t in when]
    details = extra.astype(object).where(extra.notna(), None).to_dict("records")
    for rec, key, x in zip(recs, drift_keys(drift), details):
        rec["field"] = key.stored_field
        rec["detail"] = x
    return recs


def record_drift(rt: Session, run_id: str, drift: pd.DataFrame, checked: pd.Series,
                  universe: pd.DataFrame | None = None) -> dict[DriftKey, int]:
    ids = rt.store.record_drift(run_id, _drift_records(drift, universe), checked, rt.clock())
    return {DriftKey.from_stored(s, c, f or ""): i for (s, c, f), i in ids.items()}


def _stats(obs: Observation, plan: Plan, mode: str, base: Baseline) -> PlanStats:
    universe, ketch_records, braze_profiles = obs.totals
    return PlanStats(universe=universe, ketch_records=ketch_records,
                     braze_profiles=braze_profiles, deletions=len(plan.deletion_subjects),
                     unsubscribes=len(plan.unsubscribe_subjects), subscribes=len(plan.subscribe_subjects),
                     workspace_profiles=base.workspace[0], workspace_universe=base.workspace[1],
                     mode=mode, source_rows=obs.source_rows, scope=base.scope)


def make_plan(rt: Session, rec: RunRecorder, mode: str, subjects: set[str] | None = None,
              slice_index: int | None = None) -> Planned:
    """Observe, diff, plan and judge the guards; saves the plan (not journaled yet)."""
    cfg, run_id = rt.cfg, rec.run_id
    rules = Rules.from_config(cfg)
    obs, drift, fp = observe_and_diff(rt, mode, rec, rules, subjects, slice_index)
    o = obs.observed
    if subjects is None:
        owed.settle(rt.store, o.universe, obs.exceptions, cfg.identity.braze_key, rt.clock())
    stage(rt.progress, "plan", drift=len(drift))
    emails = o.universe.set_index("subject_key")["email"].fillna(o.braze.set_index("subject_key")["email"])
    plan = build_plan(drift, emails, o.braze_profiles, rules, plan_fp=fp, plan_id=f"plan-{run_id}",
                      track_batch_size=cfg.braze.track_batch_size,
                      sms_targets=sms_addresses(o.universe, o.braze_profiles, cfg),
                      phones=subject_phones(o.universe, o.braze_profiles, cfg))
    drift_ids = record_drift(rt, run_id, drift, o.universe["subject_key"], o.universe)
    rt.store.add_exceptions(run_id, obs.exceptions.astype(object).where(obs.exceptions.notna(), "")
                            .to_dict("records", into=dict[str, Any]()))
    rec.save_plan(plan.plan_id, fp, plan_document(plan, drift, run_id=run_id, config_hash=cfg.hash()))
    crash_point("plan")
    stage(rt.progress, "guards", actions=len(plan.actions))
    scope = run_scope(cfg, mode, rec.job, slice_index, rt.store.get_watermark(SLICE_COUNTER))
    base = find_baseline(rt.store, run_id, scope)
    verdicts = judge(_stats(obs, plan, mode, base), base.previous, cfg.guards)
    tripped = [Tripped(v.guard, v.message) for v in verdicts if v.tripped]
    note_scope(rt.store, run_id, scope, obs.source_rows, verdicts)
    planned = Planned(run_id, obs, drift, plan, drift_ids, tripped, verdicts)
    universe_count, ketch_records, braze_count = obs.totals
    rec.planned(universe_count=universe_count, ketch_count=universe_count,
                ketch_records=ketch_records, ketch_extracted_at=obs.extracted_at,
                braze_count=braze_count, braze_extracted_at=obs.extracted_at,
                drift_counts=planned.counts, exceptions_count=len(obs.exceptions), plan_id=plan.plan_id,
                plan_fingerprint=fp, actions_planned=len(plan.actions),
                guard_result=[t.to_json() for t in tripped], capabilities=obs.caps.as_record())
    return planned


# ----------------------------------------------------------------------------- apply and verify


def _refusal(planned: Planned, blocking: list[Tripped]) -> GuardRefused:
    msg = "; ".join(t.message for t in blocking)
    names = list(dict.fromkeys(t.guard for t in blocking))
    return GuardRefused(names, f"{msg}. Nothing was written to Braze. After review, override with "
                        + " ".join(f"--allow {n}" for n in names) + ".")


def apply_planned(rt: Session, rec: RunRecorder, planned: Planned, overrides: Iterable[str] = (),
                  only: frozenset[ActionKind] = ALL_KINDS, *, batch_guard: Any = None,
                  before_batch: Callable[[], None] | None = None, actor: str | None = None) -> RunResult:
    """Guards, then journal, apply and verify the kinds in `only`."""
    store, overrides = rt.store, set(overrides)
    blocking = refused(planned.tripped, overrides, only)
    if blocking:
        err = _refusal(planned, blocking)
        rec.plan_status(planned.plan.plan_id, PlanStatus.REFUSED)
        rec.refused(str(err), err.exit_code)
        return result_of(rec, planned, RunStatus.REFUSED, err.exit_code, messages=(str(err),))
    used = tuple(sorted({t.guard for t in planned.tripped} & overrides))
    if used:
        log.warning("guards overridden by explicit flag: %s", ", ".join(used))
        rec.update(guard_overrides=_overrides(rt, used, actor))
    plan = planned.plan.only(set(only))
    rejected = "; ".join(m for m in (rejected_deletions(planned.obs.exceptions),
                                     owed.unread_message(planned.obs.exceptions)) if m) or None
    if not plan.actions:
        rec.plan_status(plan.plan_id, PlanStatus.APPLIED)
        if rejected:
            rec.applying()
            rec.partial(error=rejected, actions_sent=0, actions_confirmed=0, actions_failed=0)
            return result_of(rec, planned, RunStatus.PARTIAL, ExitCode.PARTIAL, overrides=used, messages=(rejected,))
        rec.in_sync()
        return result_of(rec, planned, RunStatus.IN_SYNC, ExitCode.OK, overrides=used)
    store.journal_plan(plan.plan_id, planned.run_id, [_journal_row(a, planned.drift_ids) for a in plan.actions],
                       rt.clock())
    crash_point("journal")
    rec.plan_status(plan.plan_id, PlanStatus.APPLYING)
    rec.applying()
    kwargs = {"batch_guard": batch_guard} if batch_guard is not None else {}
    stage(rt.progress, "apply", actions=len(plan.actions))
    executor = crash_wrapped(Executor(rt.cfg, rt.braze, rt.ketch, rt.clock))
    outcome = apply_actions(plan.actions, planned.run_id, store, executor, rt.clock,
                            before_batch=counting(rt.progress, "apply", len(plan.actions), before_batch), **kwargs)
    items = _corrected_items(planned, plan, outcome)
    for action_id, ids in items.items():
        if ids:
            store.mark_corrected(ids, action_id, rt.clock())
    _tombstone(rt, planned, outcome.deleted_subjects)
    verified, unverified = verify(rt, planned, plan, items)
    partial = bool(outcome.failed or outcome.rejected_items)
    rec.plan_status(plan.plan_id, PlanStatus.APPLYING if partial else PlanStatus.APPLIED)
    partial = partial or bool(rejected)
    store.add_exceptions(planned.run_id, [{"identity": s, "source": "braze_rejected", "reason": why}
                                          for s, why in outcome.rejected_items])
    fields = dict(actions_sent=outcome.sent, actions_confirmed=outcome.confirmed, actions_failed=outcome.failed,
                  verified_count=verified, unverified_count=unverified,
                  error="; ".join([*outcome.errors, *([rejected] if rejected else [])])[:2000] or None)
    (rec.partial if partial else rec.applied)(**fields)
    status, code = (RunStatus.PARTIAL, ExitCode.PARTIAL) if partial else (RunStatus.APPLIED, ExitCode.OK)
    return result_of(rec, planned, status, code, outcome=outcome, verified=verified, unverified=unverified,
                   overrides=used, planned_actions=len(plan.actions), messages=(rejected,) if rejected else ())


def rejected_deletions(exceptions: pd.DataFrame) -> str | None:
    """What to say when deletion requests were rejected (malformed identities): the run is
    partial (exit 4), never a clean success, while an erasure someone asked for was not done."""
    if not len(exceptions) or "source" not in exceptions.columns:
        return None
    ignored = exceptions["reason"].fillna("").str.contains("not an erasure right", regex=False)  # other DSR rights
    rows = exceptions[(exceptions["source"] == "deletions") & ~ignored]
    if not len(rows):
        return None
    reasons = rows["reason"].value_counts()
    top = ", ".join(f"{n} {reason}" for reason, n in reasons.head(3).items())
    return (f"{len(rows)} deletion request(s) rejected and not executed ({top}); they are listed in the run's "
            "exceptions. Fix the deletion source and run again")


def _overrides(rt: Session, used: tuple[str, ...], actor: str | None) -> list[dict[str, Any]]:
    """Each override with who made it (`--actor`, else the OS user) and when."""
    from reconcile.reports.build import os_user

    return [{"guard": g, "actor": actor or os_user(), "at": rt.clock().isoformat()} for g in used]


def _journal_row(action: Any, drift_ids: dict[DriftKey, int]) -> dict[str, Any]:
    return {"action_id": action.action_id, "seq": action.seq, "endpoint": action.endpoint, "kind": action.kind.value,
            "payload": action.to_json(), "subject_keys": action.subject_keys,
            "drift_ids": [drift_ids[k] for k in action.drift_keys if k in drift_ids]}


def _corrected_items(planned: Planned, plan: Plan, outcome: ApplyOutcome) -> dict[str, list[int]]:
    """action id -> drift item ids of the subjects that action got accepted."""
    by_id = {a.action_id: a for a in plan.actions}
    out: dict[str, list[int]] = {}
    for action_id, subjects in outcome.corrected.items():
        ok = set(subjects)
        keys = [k for k in by_id[action_id].drift_keys if k.subject_key in ok]
        out[action_id] = [planned.drift_ids[k] for k in keys if k in planned.drift_ids]
    return out


def _tombstone(rt: Session, planned: Planned, subjects: list[str]) -> None:
    u = planned.obs.observed.universe.set_index("subject_key")
    rows = [{"subject_key": s, "identity": str(u.loc[s, "identity"]), "deleted_at": rt.clock(),
             "run_id": planned.run_id,
             "reason": "deletion request" if u.loc[s, "deletion_requested"] else "resurrected"}
            for s in subjects if s in u.index]
    if rows:
        rt.store.add_tombstones(rows)
        gone = planned.obs.observed.braze_profiles
        rt.store.forget_braze_profiles(gone[gone["subject_key"].isin(subjects)]["braze_id"].astype(str).tolist())


def verify(rt: Session, planned: Planned, plan: Plan, items: dict[str, list[int]]) -> tuple[int, int]:
    """Re-read corrected subjects after the consistency delay; mark what is fixed `verified`."""
    crash_point("verify")
    id_to_key = {i: k for k, i in planned.drift_ids.items()}
    corrected = {i: id_to_key[i] for ids in items.values() for i in ids if i in id_to_key}
    if not corrected or not rt.cfg.apply.verify:
        return 0, 0
    stage(rt.progress, "verify", items=len(corrected))
    if rt.cfg.apply.consistency_delay_seconds:
        rt.sleep(rt.cfg.apply.consistency_delay_seconds)
    back = read_back(plan, items, id_to_key)
    after = diff(reobserve(rt, planned.obs, back, run_id=planned.run_id), Rules.from_config(rt.cfg))
    remaining = set(drift_keys(after))
    fixed = [i for i, k in corrected.items() if k not in remaining]
    if fixed:
        rt.store.mark_verified(fixed, rt.clock())
    return len(fixed), len(corrected) - len(fixed)


PROFILE_WRITES = frozenset({ActionKind.GLOBAL_UNSUBSCRIBE, ActionKind.GLOBAL_SUBSCRIBE, ActionKind.DELETE,
                            ActionKind.ALIAS_OPTOUT})
GROUP_WRITES = frozenset({ActionKind.GROUP_UNSUBSCRIBE, ActionKind.GROUP_SUBSCRIBE})


def read_back(plan: Plan, items: dict[str, list[int]], keys: dict[int, DriftKey]) -> ReadBack:
    """What verify reads again for the drift items the actions corrected: the profiles of
    subjects whose global state, existence or alias profile was written, each written group's
    state, the blocklist of blocklisted addresses, Ketch for write-backs."""
    kinds = {a.action_id: a.kind for a in plan.actions}
    profiles: set[str] = set()
    groups: dict[str, set[str]] = {}
    blocklist: set[str] = set()
    ketch: set[str] = set()
    for action_id, ids in items.items():
        kind = kinds.get(action_id)
        for key in (keys[i] for i in ids if i in keys):
            if kind in PROFILE_WRITES:
                profiles.add(key.subject_key)
            elif kind in GROUP_WRITES and key.group_id is not None:
                groups.setdefault(key.group_id, set()).add(key.subject_key)
            elif kind is ActionKind.BLOCKLIST:
                blocklist.add(key.subject_key)
            elif kind is ActionKind.KETCH_WRITEBACK:
                ketch.add(key.subject_key)
    return ReadBack(frozenset(profiles), {g: frozenset(k) for g, k in groups.items()}, frozenset(blocklist),
                    frozenset(ketch))


def result_of(rec: RunRecorder, planned: Planned | None, status: RunStatus, code: int, *,
            outcome: ApplyOutcome | None = None, verified: int = 0, unverified: int = 0,
            overrides: tuple[str, ...] = (), messages: tuple[str, ...] = (), planned_actions: int | None = None,
            ) -> RunResult:
    o = outcome or ApplyOutcome()
    counts = planned.counts if planned is not None else {c: 0 for c in DRIFT_CLASSES}
    n = planned_actions if planned_actions is not None else (len(planned.plan.actions) if planned else 0)
    return RunResult(run_id=rec.run_id, status=status, exit_code=int(code), counts=counts, actions_planned=n,
                     actions_sent=o.sent, actions_failed=o.failed, rejected_items=len(o.rejected_items),
                     verified=verified, unverified=unverified, overrides=overrides,
                     messages=tuple(messages) + tuple(o.errors), report_path=None)


# ----------------------------------------------------------------------------- runs


def plan_only(rt: Session, mode: str = "full", *, dry_run: bool = False, overrides: Iterable[str] = (),
              job: str | None = None, slice_index: int | None = None) -> tuple[RunResult, Planned]:
    """`reconcile plan` / `run --dry-run`: observe, diff, plan; nothing is sent. The exit code
    is the one `run` would have: a tripped guard's unless `overrides` (`--allow`) names it."""
    rec = recorder(rt, mode, job=job)
    with running(rt, rec):
        planned = make_plan(rt, rec, mode, slice_index=slice_index)
        code = ExitCode.DRIFT if planned.plan.actions else ExitCode.OK
        refusing = [t for t in planned.tripped if t.guard not in set(overrides)]
        if refusing:  # `run` on this would be refused: say so in the exit code, changes or not
            code = ExitCode.GUARDS.get(refusing[0].guard, code)
        if dry_run:
            rec.dry_run(code)
            return reported(rt, rec, result_of(rec, planned, RunStatus.DRY_RUN, code)), planned
        rec.planned(exit_code=int(code))
        return reported(rt, rec, result_of(rec, planned, RunStatus.PLANNED, code)), planned
