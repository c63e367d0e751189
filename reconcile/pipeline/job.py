"""A job's run: finish what a crash left unfinished, then plan, apply and verify, and move
the incremental watermark (and the sweep slice) once the run is clean."""

from __future__ import annotations

from typing import Any, Callable, Iterable

from reconcile.engine.guards import ALL_KINDS
from reconcile.ledger.erasures import Settled, settle_erasures
from reconcile.models.plan import ActionKind
from reconcile.models.run import RunResult, RunStatus
from reconcile.pipeline.read import advance_slice, advance_watermark
from reconcile.pipeline.run import apply_planned, make_plan, plan_only, recorder, reported, running
from reconcile.pipeline.saved import resume_unfinished
from reconcile.pipeline.session import Session


def run_job(rt: Session, *, mode: str = "full", dry_run: bool = False, overrides: Iterable[str] = (),
            only: frozenset[ActionKind] = ALL_KINDS, batch_guard: Any = None,
            before_batch: Callable[[], None] | None = None, actor: str | None = None,
            job: str | None = None, slice_index: int | None = None) -> RunResult:
    """`reconcile run`: resume anything a crash left behind, then plan, guard, apply, verify.
    `job` names the schedules.toml job the run belongs to; only that job's plans are resumed.
    `slice_index`: a full run of that slice of `universe.slices` only (a sweep worker's claimed
    slice; the sweep, not the run, moves the watermarks)."""
    if dry_run:
        return plan_only(rt, mode, dry_run=True, overrides=overrides, job=job, slice_index=slice_index)[0]
    resume_unfinished(rt, overrides, job=job, batch_guard=batch_guard, before_batch=before_batch, actor=actor)
    rec = recorder(rt, mode, job=job)
    started = rt.clock()
    with running(rt, rec):
        planned = make_plan(rt, rec, mode, slice_index=slice_index)
        if planned.obs.read_from is not None:  # parts read by an earlier run: changes since then are not seen
            started = min(started, planned.obs.read_from)
        result = apply_planned(rt, rec, planned, overrides, only, batch_guard=batch_guard, before_batch=before_batch,
                               actor=actor)
        # after verify: DeleteRequest outcomes and their Ketch callbacks
        settle_erasures(rt.cfg, rt.store, rt.clock, rt.sleep,
                        Settled(planned.run_id, str(result.status), planned.obs.observed, planned.drift,
                                planned.obs.erasures))
    result = reported(rt, rec, result)
    if result.status in (RunStatus.APPLIED, RunStatus.IN_SYNC) and only == ALL_KINDS and slice_index is None:
        advance_watermark(rt.store, started, rt.clock())
        if mode == "full" and rt.cfg.universe.slices > 1:
            advance_slice(rt.store, rt.cfg.universe.slices, rt.clock())
    return result
