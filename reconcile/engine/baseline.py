"""Which earlier run a run's guards compare it with: like with like, or nothing.

A run's *scope* is its job (None for runs without `--job`), its mode (`full` or
`incremental`), its slice of a sliced sweep (`slice` of `slices`, None for a whole sweep)
and its identity source (a hash of the configured file or query, so two workspaces sharing
one state database are never compared). The baseline is the newest *comparable* run of the
same scope: one that succeeded (applied, in sync or partial), or a plan-only run
(`planned`, `dry_run`) no guard refused. A refused run never becomes a baseline, so a
source that collapsed stays refused until someone looks.

- A full run (whole or one slice) is compared with the last comparable full run of the same
  job and slice: its checked universe, Ketch records, Braze profiles and identity-list rows.
- An incremental run's universe is the amount of change, so only its identity-list rows (the
  whole list, read before the window filter) are compared, with the newer of the last
  comparable incremental run of the job and the last comparable whole full run of any job on
  the same identity source (the workspace size that run measured).
- No comparable run: `previous` is None and the guards use the absolute floor
  (`guards.min_universe`), saying so.

`workspace` (Braze profiles, checked universe) is the last comparable whole full run's, the
base of the deletion and (un)subscribe fractions.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from reconcile.models.run import RunStatus

SUCCEEDED = tuple(s.value for s in RunStatus if s.succeeded)
PLAN_ONLY = (RunStatus.PLANNED.value, RunStatus.DRY_RUN.value)
SEARCH = 500  # runs looked at per query (newest first)


@dataclass(frozen=True)
class RunScope:
    job: str | None
    mode: str
    slice: int | None = None
    slices: int | None = None
    source: str | None = None

    def describe(self) -> str:
        who = f"job {self.job}" if self.job else "runs without --job"
        where = f", slice {self.slice} of {self.slices}" if self.slice is not None else ""
        return f"{self.mode} runs of {who}{where}"

    def to_json(self) -> dict[str, Any]:
        return {"mode": self.mode, "slice": self.slice, "slices": self.slices, "source": self.source}


@dataclass(frozen=True)
class Baseline:
    previous: dict[str, Any] | None  # universe_count, ketch_records, braze_count, source_rows, basis
    workspace: tuple[int, int]  # (Braze profiles, checked universe) of the last whole full run; 0 = unknown
    scope: str  # the scope, described, for the guards' messages


def source_id(universe: Any) -> str | None:
    """A stable id of the configured identity list (None: none configured)."""
    parts = [str(universe.csv or ""), str(universe.parquet or ""),
             str(getattr(universe.sql, "query", "") if universe.sql else ""), str(universe.identity_column or "")]
    if not any(parts[:3]):
        return None
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]


def run_scope(cfg: Any, mode: str, job: str | None, slice_index: int | None, counter: str | None) -> RunScope:
    """This run's scope. A full run of a config with `universe.slices = K` covers one slice:
    `slice_index` (a sweep worker's claim) or the scheduler's slice counter."""
    slices = int(cfg.universe.slices) if mode == "full" and cfg.universe.slices > 1 else None
    index = None
    if slices:
        index = slice_index if slice_index is not None else int(counter or 0) % slices
    return RunScope(job, mode, index, slices, source_id(cfg.universe))


def scope_of(run: Mapping[str, Any]) -> RunScope | None:
    """The scope a run recorded (None: recorded before scopes were)."""
    s = (run.get("summary") or {}).get("guard_scope")
    if not isinstance(s, dict):
        return None
    return RunScope(run.get("job"), str(s.get("mode") or run.get("mode")), s.get("slice"), s.get("slices"),
                    s.get("source"))


def comparable(run: Mapping[str, Any]) -> bool:
    status = run.get("status")
    if status in SUCCEEDED:
        return True
    return status in PLAN_ONLY and not run.get("guard_result")


def _same(run: Mapping[str, Any], scope: RunScope) -> bool:
    recorded = scope_of(run)
    if recorded is None:  # an older run: comparable only as a whole sweep
        return scope.slice is None
    return (recorded.slice, recorded.slices, recorded.source) == (scope.slice, scope.slices, scope.source)


def _counts(run: Mapping[str, Any], basis: str) -> dict[str, Any]:
    return {"universe_count": run.get("universe_count"), "ketch_records": run.get("ketch_records"),
            "braze_count": run.get("braze_count"), "source_rows": (run.get("summary") or {}).get("source_rows"),
            "basis": basis}


def _first(rows: Iterable[Mapping[str, Any]], run_id: str, want: Any) -> Mapping[str, Any] | None:
    return next((r for r in rows if r["run_id"] != run_id and comparable(r) and want(r)), None)


def find_baseline(store: Any, run_id: str, scope: RunScope) -> Baseline:
    """The comparable baseline of run `run_id` (see the module docstring)."""
    statuses = SUCCEEDED + PLAN_ONLY
    fulls = store.runs_of(None, mode="full", status_in=statuses, limit=SEARCH)
    whole = _first(fulls, run_id, lambda r: _same(r, RunScope(None, "full", None, None, scope.source)))
    workspace = (int(whole.get("braze_count") or 0), int(whole.get("universe_count") or 0)) if whole else (0, 0)
    own = store.runs_of([scope.job], mode=scope.mode, status_in=statuses, limit=SEARCH)
    same = _first(own, run_id, lambda r: _same(r, scope))
    previous = _counts(same, f"the last {scope.mode} run {same['run_id']}") if same else None
    if scope.mode == "incremental":
        sized = [r for r in (same, whole) if r is not None and (r.get("summary") or {}).get("source_rows")]
        newest = max(sized, key=lambda r: r["started_at"]) if sized else None
        if newest is None:
            previous = None
        else:
            kind = "full" if newest is whole else "incremental"
            previous = {"source_rows": (newest.get("summary") or {}).get("source_rows"),
                        "basis": f"the last {kind} run {newest['run_id']}"}
    return Baseline(previous, workspace, scope.describe())


def note_scope(store: Any, run_id: str, scope: RunScope, source_rows: int | None, verdicts: Iterable[Any]) -> None:
    """Record the run's scope, its identity-list size and every guard verdict in its summary."""
    run = store.get_run(run_id)
    if run is None:
        return
    store.update_run(run_id, summary={**(run.get("summary") or {}), "guard_scope": scope.to_json(),
                                      "source_rows": source_rows, "guard_verdicts": [v.to_json() for v in verdicts]})
