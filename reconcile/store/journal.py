"""Plans and the action journal.

Every batch is journaled before and after it is sent: `journal_plan` writes all actions
as `pending`, `journal_sending` commits `sending` (attempts + 1, the lock holder) before
the request goes out, as a compare-and-set so no two processes send one batch, and
`journal_result` commits the outcome. Each call is its own committed transaction,
so a killed process leaves an exact record of what may have reached Braze. A confirmed
action is never marked as sending again.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select, update

from reconcile.errors import RunLocked, StoreError
from reconcile.models.mailbox import key_or_none
from reconcile.store.base import Row, StoreBase, as_tuple
from reconcile.store.schema import ACTION_RESULTS, ACTION_UNFINISHED, PLAN_STATUSES
from reconcile.store.schema import actions as action_table
from reconcile.store.schema import locks as lock_table
from reconcile.store.schema import plans as plan_table

ACTION_FIELDS = ("seq", "endpoint", "kind", "payload", "subject_keys", "drift_ids", "request_summary")


class JournalMixin(StoreBase):
    """Saved plans and the per-batch action journal."""

    def save_plan(self, plan_id: str, run_id: str, fingerprint: str, body: Row, created_at: datetime) -> None:
        """Save a plan as `planned`; saving the same plan id and fingerprint again is a no-op."""
        row = {"plan_id": plan_id, "run_id": run_id, "fingerprint": fingerprint, "body": body}
        stmt = self._insert(plan_table).values(**row, status="planned", created_at=created_at)
        with self._write("save_plan") as conn:
            conn.execute(stmt.on_conflict_do_nothing(index_elements=[plan_table.c.plan_id]))
            stored = conn.scalar(select(plan_table.c.fingerprint).where(plan_table.c.plan_id == plan_id))
        if stored != fingerprint:
            raise StoreError(f"plan {plan_id!r} already saved with another fingerprint ({stored})")

    def get_plan(self, plan_id: str) -> Row | None:
        with self._read("get_plan") as conn:
            row = conn.execute(select(plan_table).where(plan_table.c.plan_id == plan_id)).first()
        return dict(row._mapping) if row else None

    def set_plan_status(self, plan_id: str, status: str) -> None:
        if status not in PLAN_STATUSES:
            raise ValueError(f"plan status {status!r} is not one of {', '.join(PLAN_STATUSES)}")
        with self._write("set_plan_status") as conn:
            found = conn.execute(
                update(plan_table).where(plan_table.c.plan_id == plan_id).values(status=status)
            ).rowcount
        if not found:
            raise StoreError(f"no plan {plan_id!r} in the state store")

    def journal_plan(self, plan_id: str, run_id: str, actions: list[Row], created_at: datetime) -> None:
        """Journal every action as pending; action ids already journaled are left untouched."""
        rows = [_pending_row(plan_id, run_id, action, created_at) for action in actions]
        if not rows:
            return
        stmt = self._insert(action_table).on_conflict_do_nothing(index_elements=["action_id"])
        with self._write("journal_plan") as conn:
            conn.execute(stmt, rows)

    def journal_sending(self, action_id: str, at: datetime, holder: str | None = None) -> None:
        """Commit `sending` (attempts + 1, sent_at, holder) before the batch goes out.

        A compare-and-set on the batch: it moves to `sending` only from `pending` or `failed`,
        or from `sending` when the holder that marked it no longer has a live lease (it died
        mid-send). `holder` defaults to the store's `lock_owner`; a holder must itself still
        have a live lease. Otherwise nothing changes and `RunLocked` (another live holder is
        sending it, or this process lost its lease) or `StoreError` (already finished) is raised.
        """
        c = action_table.c
        holder = holder if holder is not None else self.lock_owner  # type: ignore[attr-defined]
        live = select(lock_table.c.holder).where((lock_table.c.holder == c.holder) & (lock_table.c.expires_at > at))
        takeable = c.status.in_(("pending", "failed")) | (
            (c.status == "sending") & (c.holder.is_(None) | (c.holder == holder) | ~live.exists()))
        cond = (c.action_id == action_id) & takeable
        if holder is not None:
            mine = select(lock_table.c.holder).where((lock_table.c.holder == holder) & (lock_table.c.expires_at > at))
            cond = cond & mine.exists()
        stmt = update(action_table).where(cond).values(status="sending", attempts=c.attempts + 1, sent_at=at,
                                                       holder=holder)
        with self._write("journal_sending") as conn:
            if not conn.execute(stmt).rowcount:
                _explain_refused(conn, action_id, holder, at)

    def journal_result(
        self,
        action_id: str,
        status: str,
        *,
        response_summary: Any = None,
        error: str | None = None,
        at: datetime,
        request_summary: Any = None,
    ) -> None:
        """Commit a batch's outcome: confirmed, failed, rejected or skipped."""
        if status not in ACTION_RESULTS:
            raise ValueError(f"action result {status!r} is not one of {', '.join(ACTION_RESULTS)}")
        values: dict[str, Any] = {"status": status, "response_summary": response_summary, "error": error}
        if request_summary is not None:
            values["request_summary"] = request_summary
        stmt = (
            update(action_table).where(action_table.c.action_id == action_id).values(**values, finished_at=at)
        )
        with self._write("journal_result") as conn:
            if not conn.execute(stmt).rowcount:
                raise StoreError(f"no action {action_id!r} in the journal")

    def actions(
        self,
        plan_id: str | None = None,
        run_id: str | None = None,
        status: str | Sequence[str] | None = None,
    ) -> list[Row]:
        """Journaled actions ordered by seq (then action id)."""
        c = action_table.c
        query = select(action_table).order_by(c.seq, c.action_id)
        if plan_id is not None:
            query = query.where(c.plan_id == plan_id)
        if run_id is not None:
            query = query.where(c.run_id == run_id)
        statuses = as_tuple(status)
        if statuses is not None:
            query = query.where(c.status.in_(statuses))
        with self._read("actions") as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def blocklisted_by_job(self) -> set[str]:
        """Addresses (their mailbox keys, models/mailbox.py) this job sent to `/email/blocklist` in a batch
        Braze confirmed with no item rejected: the only evidence of a blocklist a key that
        cannot read `/email/hard_bounces` has. A batch with a rejected item counts for none."""
        c = action_table.c
        query = select(c.payload, c.response_summary).where(c.kind == "blocklist", c.status == "confirmed")
        out: set[str] = set()
        with self._read("blocklisted_by_job") as conn:
            for payload, summary in conn.execute(query):
                if not isinstance(payload, dict) or (isinstance(summary, dict) and summary.get("rejected")):
                    continue
                for target in payload.get("targets") or []:
                    key = key_or_none(target[2]) if isinstance(target, list) and len(target) == 3 else None
                    if key is not None:
                        out.add(key)
        return out

    def unfinished_plans(self) -> list[str]:
        """Plans with actions still pending or sending, oldest first."""
        c = action_table.c
        first = func.min(c.created_at)
        query = (
            select(c.plan_id)
            .where(c.status.in_(ACTION_UNFINISHED))
            .group_by(c.plan_id)
            .order_by(first, c.plan_id)
        )
        with self._read("unfinished_plans") as conn:
            return list(conn.scalars(query))


def _pending_row(plan_id: str, run_id: str, action: Row, created_at: datetime) -> Row:
    row = {name: action.get(name) for name in ACTION_FIELDS}
    row.update(action_id=action["action_id"], plan_id=plan_id, run_id=run_id)
    row.update(status="pending", attempts=0, created_at=created_at)
    return row


def _explain_refused(conn: Connection, action_id: str, holder: str | None, at: datetime) -> None:
    row = conn.execute(select(action_table.c.status, action_table.c.holder)
                       .where(action_table.c.action_id == action_id)).first()
    if row is None:
        raise StoreError(f"no action {action_id!r} in the journal")
    status, other = row
    if status == "sending" and other != holder:
        raise RunLocked(f"action {action_id!r} is being sent by {other}, which still holds its run lease; "
                        "it was not sent again")
    if status in ("pending", "failed", "sending"):
        raise RunLocked(f"this process ({holder}) no longer holds its run lease; action {action_id!r} was not sent")
    raise StoreError(f"action {action_id!r} is already {status}; it must not be sent again")
