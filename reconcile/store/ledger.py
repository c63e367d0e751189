"""The ledger's tables in the state store (schema.py: ledger_*), for `reconcile/ledger/`.

`LedgerStore.of(store)` shares the `Store`'s engine: the ledger server and the job each
open the state store as usual (which migrates it) and reach these tables through it.
A message is recorded in one transaction with everything derived from it, so a replay
(same `metadata.uid`) finds the answer given the first time and changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from reconcile.models.ledger import error_body
from reconcile.store.base import Row, StoreBase
from reconcile.store.bulk import where_in
from reconcile.store.coltypes import scrub_secrets
from reconcile.store.mirror import Observation, observe_in
from reconcile.store.schema import (
    drift_items,
    ledger_callbacks,
    ledger_changes,
    ledger_events,
    ledger_request_history,
    ledger_requests,
)

DELETION_CLASSES = ("missed_deletion", "resurrected")


@dataclass
class Received:
    """One message as the ledger records it."""

    outcome: str  # accepted | unknown_kind | invalid
    reply_status: int
    reply: dict[str, Any] | None
    body: str
    body_bytes: int
    received_at: datetime
    uid: str | None = None
    api_version: str | None = None
    kind: str | None = None
    tenant: str | None = None
    error: str | None = None
    changes: list[Row] = field(default_factory=list)  # kind, identity, changed_at
    request: Row | None = None  # a DeleteRequest's ledger_requests row (without event_id)
    callbacks: list[Row] = field(default_factory=list)  # position, url, headers (dict) | refused reason
    mirror: list[Observation] = field(default_factory=list)  # (subject key, Change) for the Ketch mirror


def stored_body(raw: bytes, doc: Any | None, limit: int) -> str:
    """The body to keep: the parsed document with secrets scrubbed (callback headers
    included), or the raw text when it did not parse; never longer than `limit`."""
    text = json.dumps(scrub_secrets(doc), ensure_ascii=False) if doc is not None else raw.decode("utf-8", "replace")
    return text[:limit]


class LedgerStore(StoreBase):
    @classmethod
    def of(cls, store: Any) -> LedgerStore:
        return cls.on(store)

    # receiving ---------------------------------------------------------------------------

    def receive(self, rec: Received) -> tuple[int, dict[str, Any] | None, bool]:
        """Record a message; returns (status, reply, replayed). A uid seen before returns the
        first answer and records nothing."""
        if rec.uid is not None:
            earlier = self._answer(rec.uid)
            if earlier is not None:
                return self._replay(rec, earlier)
        try:
            with self._write("ledger receive") as conn:
                if rec.uid is not None:
                    found = _answer(conn, rec.uid)
                    if found is not None:
                        return self._replay(rec, found)
                self._insert_all(conn, rec)
        except Exception as exc:  # a concurrent delivery of the same uid won the insert
            earlier = self._answer(rec.uid) if rec.uid is not None and _is_integrity(exc) else None
            if earlier is None:
                raise
            return self._replay(rec, earlier)
        return rec.reply_status, rec.reply, False

    def _replay(self, rec: Received, earlier: tuple[int, dict[str, Any] | None, str]) -> tuple[
            int, dict[str, Any] | None, bool]:
        """A replay (the same body as first recorded) gets the first answer; another message
        reusing the uid is refused (409) and recorded without it, never answered as the old one."""
        status, reply, body = earlier
        if body == rec.body:
            return status, reply, True
        why = (f"metadata.uid {str(rec.uid)[:80]!r} was already used by a different message; a replay must carry the "
               "same body. Send this message with a new uid")
        conflict = replace(rec, uid=None, outcome="invalid", reply_status=409, error=why, changes=[], request=None,
                           callbacks=[], mirror=[], reply=error_body(409, "conflict", why, {"uid": str(rec.uid)[:80]}))
        with self._write("ledger receive") as conn:
            self._insert_all(conn, conflict)
        return 409, conflict.reply, False

    def _answer(self, uid: str) -> tuple[int, dict[str, Any] | None, str] | None:
        with self._read("ledger replay") as conn:
            return _answer(conn, uid)

    def _insert_all(self, conn: Connection, rec: Received) -> None:
        row = {k: getattr(rec, k) for k in ("uid", "api_version", "kind", "tenant", "outcome", "reply_status", "reply",
                                            "body", "body_bytes", "error", "received_at")}
        event_id = conn.execute(insert(ledger_events).values(**row).returning(ledger_events.c.id)).scalar_one()
        if rec.changes:
            conn.execute(insert(ledger_changes), [{**c, "event_id": event_id, "received_at": rec.received_at}
                                                  for c in rec.changes])
        if rec.mirror:
            observe_in(conn, rec.mirror, rec.received_at)
        if rec.request is not None:
            req = {**rec.request, "event_id": event_id, "received_at": rec.received_at,
                   "callback_count": len(rec.callbacks)}
            conn.execute(insert(ledger_requests).values(**req))
            conn.execute(insert(ledger_request_history).values(
                request_uid=req["uid"], at=rec.received_at, status=req["status"], reason=req.get("reason"),
                message="received; answered in_progress"))
            for cb in rec.callbacks:
                refused = cb.get("refused")
                conn.execute(insert(ledger_callbacks).values(
                    request_uid=req["uid"], position=cb["position"], url=cb["url"],
                    headers=None if refused else json.dumps(cb.get("headers") or {}),
                    status="refused" if refused else "waiting", attempts=0, last_error=refused,
                    created_at=rec.received_at))

    # the engine's side -------------------------------------------------------------------

    def changed_since(self, since: datetime | None) -> list[Row]:
        """Subjects whose consent or subscriptions changed (received after `since`), with the
        latest Ketch time of each change."""
        c = ledger_changes.c
        query = select(c.identity, func.max(c.changed_at).label("changed_at")).group_by(c.identity)
        if since is not None:
            query = query.where(c.received_at > since)
        with self._read("ledger changes") as conn:
            return [dict(r._mapping) for r in conn.execute(query.order_by(c.identity))]

    def requests(self, status: str | None = None) -> list[Row]:
        query = select(ledger_requests).order_by(ledger_requests.c.received_at, ledger_requests.c.uid)
        if status is not None:
            query = query.where(ledger_requests.c.status == status)
        with self._read("ledger requests") as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def verified_deletions(self, subject_keys: Iterable[str]) -> dict[str, datetime]:
        """subject_key -> the latest time a deletion of it was seen done (drift_items): verified
        by the run that sent it, or corrected and then found gone (resolved) by a later run."""
        d = drift_items.c
        out: dict[str, datetime] = {}
        seen = func.coalesce(d.verified_at, d.resolved_at)
        done = (d.status == "verified") | ((d.status == "resolved") & d.corrected_at.is_not(None))
        with self._read("ledger verified deletions") as conn:
            for where in where_in(conn, d.subject_key, sorted(set(subject_keys))):
                query = select(d.subject_key, seen).where(
                    where & d.drift_class.in_(DELETION_CLASSES) & done & seen.is_not(None))
                for key, at in conn.execute(query):
                    out[key] = max(at, out.get(key, at))
        return out

    def complete(self, uid: str, reason: str, message: str, event: dict[str, Any], run_id: str, at: datetime) -> bool:
        """Mark a request completed and queue its event for every waiting callback; False
        when it was completed already."""
        r = ledger_requests.c
        with self._write("ledger complete") as conn:
            changed = conn.execute(update(ledger_requests).where((r.uid == uid) & (r.status != "completed")).values(
                status="completed", reason=reason, completed_at=at, completed_run=run_id)).rowcount
            if not changed:
                return False
            conn.execute(insert(ledger_request_history).values(request_uid=uid, at=at, status="completed",
                                                               reason=reason, message=message, run_id=run_id))
            cb = ledger_callbacks.c
            conn.execute(update(ledger_callbacks).where((cb.request_uid == uid) & (cb.status == "waiting")).values(
                status="pending", event=event, next_attempt_at=at))
        return True

    def note(self, uid: str, status: str, message: str, at: datetime, run_id: str | None = None,
             reason: str | None = None) -> None:
        with self._write("ledger history") as conn:
            conn.execute(insert(ledger_request_history).values(request_uid=uid, at=at, status=status, reason=reason,
                                                               message=message, run_id=run_id))

    # callbacks ---------------------------------------------------------------------------

    def due_callbacks(self, now: datetime) -> list[Row]:
        cb = ledger_callbacks.c
        query = (select(ledger_callbacks, ledger_requests.c.identity)
                 .join(ledger_requests, ledger_requests.c.uid == cb.request_uid)
                 .where((cb.status == "pending") & (cb.next_attempt_at <= now))
                 .order_by(cb.next_attempt_at, cb.id))
        with self._read("ledger due callbacks") as conn:
            rows = [dict(r._mapping) for r in conn.execute(query)]
        for row in rows:
            row["headers"] = json.loads(row["headers"]) if row["headers"] else {}
        return rows

    def callback_delivered(self, callback_id: int, attempts: int, at: datetime) -> None:
        self._callback(callback_id, status="delivered", attempts=attempts, delivered_at=at, last_error=None,
                       next_attempt_at=None, headers=None)

    def callback_failed(self, callback_id: int, attempts: int, error: str, next_at: datetime | None) -> None:
        """A failed try: retried at `next_at`, or given up (`None`; its headers forgotten)."""
        if next_at is None:
            self._callback(callback_id, status="failed", attempts=attempts, last_error=error, next_attempt_at=None,
                           headers=None)
        else:
            self._callback(callback_id, attempts=attempts, last_error=error, next_attempt_at=next_at)

    def _callback(self, callback_id: int, **values: Any) -> None:
        with self._write("ledger callback") as conn:
            conn.execute(update(ledger_callbacks).where(ledger_callbacks.c.id == callback_id).values(**values))

    # inspection --------------------------------------------------------------------------

    def callbacks(self, uid: str | None = None) -> list[Row]:
        cols = [c for c in ledger_callbacks.c if c.name != "headers"]
        query = select(*cols).order_by(ledger_callbacks.c.request_uid, ledger_callbacks.c.position)
        if uid is not None:
            query = query.where(ledger_callbacks.c.request_uid == uid)
        with self._read("ledger callbacks") as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def history(self, uid: str) -> list[Row]:
        h = ledger_request_history.c
        with self._read("ledger history") as conn:
            return [dict(r._mapping) for r in conn.execute(
                select(ledger_request_history).where(h.request_uid == uid).order_by(h.at, h.id))]

    def events(self, outcome: str | None = None, limit: int = 100) -> list[Row]:
        query = select(ledger_events).order_by(ledger_events.c.id.desc()).limit(limit)
        if outcome is not None:
            query = query.where(ledger_events.c.outcome == outcome)
        with self._read("ledger events") as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def ping(self) -> None:
        with self._read("ledger health") as conn:
            conn.execute(select(1))


def _answer(conn: Connection, uid: str) -> tuple[int, dict[str, Any] | None, str] | None:
    row = conn.execute(select(ledger_events.c.reply_status, ledger_events.c.reply, ledger_events.c.body)
                       .where(ledger_events.c.uid == uid)).first()
    return (row.reply_status, row.reply, row.body) if row else None


def _is_integrity(exc: BaseException) -> bool:
    return isinstance(exc, IntegrityError) or isinstance(exc.__cause__, IntegrityError)
