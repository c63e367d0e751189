"""Retention in the state store: remove history older than a cutoff (`reconcile prune`).

What goes, when older than the cutoff:
- drift items that are history (verified or resolved) and were last touched before it;
- finished runs started before it, with their exceptions, plans and actions, unless
  something kept still points at them: live drift (open, corrected, reported: never
  touched, whatever its age), tombstones, a kept Braze profile cache entry, an unfinished plan;
- the report files of those runs in `report.dir`;
- Braze profile cache entries (address -> profiles) last seen before it (a later run
  enumerates the address again);
- the raw bodies of ledger messages received before it (emptied; the event's kind, uid,
  answer and time stay) and the changed-subject rows derived from them.

`prune(apply=False)` only counts; `prune(apply=True)` deletes in one transaction
(pipeline/prune.py records either as a run of mode `prune`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, delete, func, select, update

from reconcile.store.base import StoreBase
from reconcile.store.bulk import where_in
from reconcile.store.schema import (
    ACTION_UNFINISHED, DRIFT_LIVE, actions, braze_profiles, drift_items, ledger_changes, ledger_events, plans,
    run_exceptions, runs, tombstones,
)

OPEN_RUNS = ("running", "planned", "applying")


@dataclass
class Pruning:
    cutoff: datetime
    drift_ids: list[int] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)
    plan_ids: list[str] = field(default_factory=list)
    action_ids: list[str] = field(default_factory=list)
    exceptions: int = 0
    report_files: list[Path] = field(default_factory=list)
    cached_profiles: int = 0
    ledger_bodies: int = 0
    ledger_changes: int = 0

    def counts(self) -> dict[str, Any]:
        return {"cutoff": self.cutoff.isoformat(), "drift_items": len(self.drift_ids), "runs": len(self.run_ids),
                "plans": len(self.plan_ids), "actions": len(self.action_ids), "exceptions": self.exceptions,
                "report_files": len(self.report_files), "cached_profiles": self.cached_profiles,
                "ledger_bodies": self.ledger_bodies, "ledger_changes": self.ledger_changes}


def _ids(conn: Connection, query: Any) -> set[Any]:
    return {row[0] for row in conn.execute(query)}


def plan_pruning(conn: Connection, cutoff: datetime, report_dir: Path | None) -> Pruning:
    d, r, a, p = drift_items.c, runs.c, actions.c, plans.c
    touched = func.coalesce(d.verified_at, d.resolved_at, d.last_seen_at)
    old_items = _ids(conn, select(d.id).where(d.status.not_in(DRIFT_LIVE)).where(touched < cutoff))
    kept_items = select(d.first_seen_run, d.last_seen_run, d.resolved_run, d.corrected_action, d.id)
    keep_runs: set[str | None] = set()
    keep_actions: set[str] = set()
    for row in conn.execute(kept_items):
        if row.id in old_items:
            continue
        keep_runs |= {x for x in (row.first_seen_run, row.last_seen_run, row.resolved_run) if x}
        if row.corrected_action:
            keep_actions.add(row.corrected_action)
    keep_runs |= _ids(conn, select(tombstones.c.run_id).where(tombstones.c.run_id.is_not(None)))
    keep_runs |= _ids(conn, select(braze_profiles.c.run_id).where(braze_profiles.c.last_seen_at >= cutoff))
    keep_runs |= _ids(conn, select(p.run_id).join(actions, a.plan_id == p.plan_id)
                      .where(a.status.in_(ACTION_UNFINISHED)))
    candidates = _ids(conn, select(r.run_id).where(r.started_at < cutoff).where(r.status.not_in(OPEN_RUNS))
                      .where(r.finished_at.is_not(None)))
    plan_run = {row.plan_id: row.run_id for row in conn.execute(select(p.plan_id, p.run_id))}
    action_rows = {row.action_id: (row.run_id, row.plan_id)
                   for row in conn.execute(select(a.action_id, a.run_id, a.plan_id))}
    for action_id in keep_actions:
        if action_id in action_rows:
            run_id, plan_id = action_rows[action_id]
            keep_runs |= {run_id, plan_run.get(plan_id)}
    gone_runs = candidates - keep_runs
    gone_plans = {pid for pid, rid in plan_run.items() if rid in gone_runs}
    gone_actions = {aid for aid, (rid, pid) in action_rows.items() if rid in gone_runs or pid in gone_plans}
    out = Pruning(cutoff, sorted(old_items), sorted(gone_runs), sorted(gone_plans), sorted(gone_actions))
    if gone_runs:
        out.exceptions = sum(conn.scalar(select(func.count()).select_from(run_exceptions).where(pred)) or 0
                             for pred in where_in(conn, run_exceptions.c.run_id, out.run_ids))
    count = lambda table, pred: conn.scalar(select(func.count()).select_from(table).where(pred)) or 0  # noqa: E731
    out.cached_profiles = count(braze_profiles, braze_profiles.c.last_seen_at < cutoff)
    out.ledger_bodies = count(ledger_events, (ledger_events.c.received_at < cutoff) & (ledger_events.c.body != ""))
    out.ledger_changes = count(ledger_changes, ledger_changes.c.received_at < cutoff)
    if report_dir is not None and report_dir.is_dir():
        out.report_files = sorted(f for f in report_dir.iterdir() if f.is_file() and f.name.split(".")[0] in gone_runs)
    return out


def _delete(conn: Connection, table: Any, column: Any, values: list[Any]) -> None:
    for pred in where_in(conn, column, values):
        conn.execute(delete(table).where(pred))


class PruneMixin(StoreBase):
    def prune(self, cutoff: datetime, report_dir: Path | None, *, apply: bool) -> Pruning:
        """Count (and with `apply`, delete) what is older than `cutoff`."""
        if not apply:
            with self._read("prune_counts") as conn:
                return plan_pruning(conn, cutoff, report_dir)
        with self._write("prune") as conn:
            plan = plan_pruning(conn, cutoff, report_dir)
            conn.execute(delete(braze_profiles).where(braze_profiles.c.last_seen_at < cutoff))
            conn.execute(delete(ledger_changes).where(ledger_changes.c.received_at < cutoff))
            conn.execute(update(ledger_events).where(ledger_events.c.received_at < cutoff).values(body=""))
            _delete(conn, drift_items, drift_items.c.id, plan.drift_ids)
            _delete(conn, run_exceptions, run_exceptions.c.run_id, plan.run_ids)
            _delete(conn, actions, actions.c.action_id, plan.action_ids)
            _delete(conn, plans, plans.c.plan_id, plan.plan_ids)
            _delete(conn, runs, runs.c.run_id, plan.run_ids)
        for path in plan.report_files:
            path.unlink(missing_ok=True)
        return plan
