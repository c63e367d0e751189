"""Read-only queries the reports and the CLI ask of the store.

    drift_items_since       drift items open at some time in (t0, t1], for a run's changes
    drift_open_close_counts items opened and closed, counted per time, for the report index
    known_subject_keys      every subject key the store knows (to resolve a pseudonym)
    subject_records         every row recorded about some subject keys
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import idna
from sqlalchemy import Connection, String, case, cast, func, or_, select

from reconcile.models.mailbox import key_or_none

from reconcile.store.base import Row, StoreBase
from reconcile.store.schema import (
    actions,
    braze_profiles,
    drift_items,
    ledger_callbacks,
    ledger_changes,
    ledger_request_history,
    ledger_requests,
    plans,
    run_exceptions,
    runs,
    tombstones,
)


class ReportingMixin(StoreBase):
    def drift_items_since(self, t0: datetime | None, t1: datetime) -> list[Row]:
        """Every drift item first seen by t1 that was still open at t0 or later (all of them
        without t0), by id."""
        c = drift_items.c
        query = select(drift_items).where(c.first_seen_at <= t1)
        if t0 is not None:
            query = query.where(or_(c.verified_at.is_(None) & c.resolved_at.is_(None),
                                    c.verified_at > t0, c.resolved_at > t0))
        with self._read("report_changes") as conn:
            return _rows(conn, query.order_by(c.id))

    def drift_open_close_counts(
        self, marked_classes: Iterable[str]
    ) -> tuple[list[tuple[datetime, bool, int]], list[tuple[datetime, bool, int]]]:
        """(opened, closed): drift items counted by (time, whether their class is one of
        `marked_classes`). An item opens when first seen and closes at the earlier of
        verified and resolved."""
        c = drift_items.c
        marked = c.drift_class.in_(list(marked_classes))
        closed = case((c.verified_at.is_not(None) & (c.resolved_at.is_(None) | (c.verified_at <= c.resolved_at)),
                       c.verified_at), else_=c.resolved_at)
        with self._read("index_items") as conn:
            opened = conn.execute(select(c.first_seen_at, marked, func.count())
                                  .group_by(c.first_seen_at, marked)).all()
            shut = conn.execute(select(closed, marked, func.count()).where(closed.is_not(None))
                                .group_by(closed, marked)).all()
        return ([(t, bool(m), int(n)) for t, m, n in opened], [(t, bool(m), int(n)) for t, m, n in shut])

    def known_subject_keys(self) -> set[str]:
        """Every subject key of drift items, tombstones and the webhook ledger."""
        with self._read("subject keys") as conn:
            keys = set(conn.scalars(select(drift_items.c.subject_key).distinct()))
            keys |= set(conn.scalars(select(tombstones.c.subject_key)))
            keys |= {k for k in conn.scalars(select(ledger_requests.c.identity).distinct()) if k}
            keys |= {k for k in conn.scalars(select(ledger_changes.c.identity).distinct()) if k}
        return keys

    def subject_records(self, keys: list[str]) -> dict[str, list[Row]]:
        """Every row recorded about the subject keys `keys`: drift, journaled (the action
        batches naming one of them), planned (the plans of the runs that saw their drift),
        exceptions, tombstones, requests, history and callbacks (of those requests),
        changes, profiles, and runs (those any of the other rows name)."""
        with self._read("subject story") as conn:
            drift = _rows(conn, select(drift_items).where(drift_items.c.subject_key.in_(keys))
                          .order_by(drift_items.c.id))
            journaled = [a for a in _rows(conn, select(actions).where(
                or_(*[cast(actions.c.subject_keys, String).like(f"%{_like(k)}%", escape="\\") for k in keys])).order_by(
                actions.c.created_at, actions.c.seq)) if set(a.get("subject_keys") or []) & set(keys)]
            run_ids = {i[c] for i in drift for c in ("first_seen_run", "last_seen_run", "resolved_run") if i.get(c)}
            planned = _rows(conn, select(plans).where(plans.c.run_id.in_(run_ids))) if run_ids else []
            exceptions = _naming(keys, _rows(conn, select(run_exceptions)
                                             .where(_lower_in(run_exceptions.c.identity, keys))))
            tomb = _rows(conn, select(tombstones).where(tombstones.c.subject_key.in_(keys)))
            requests = _naming(keys, _rows(conn, select(ledger_requests)
                                           .where(_lower_in(ledger_requests.c.identity, keys))
                                           .order_by(ledger_requests.c.received_at)))
            uids = [r["uid"] for r in requests]
            history = _rows(conn, select(ledger_request_history)
                            .where(ledger_request_history.c.request_uid.in_(uids))
                            .order_by(ledger_request_history.c.at)) if uids else []
            callbacks = _rows(conn, select(ledger_callbacks).where(ledger_callbacks.c.request_uid.in_(uids))
                              .order_by(ledger_callbacks.c.position)) if uids else []
            changes = _naming(keys, _rows(conn, select(ledger_changes)
                                          .where(_lower_in(ledger_changes.c.identity, keys))
                                          .order_by(ledger_changes.c.received_at)))
            profiles = _rows(conn, select(braze_profiles).where(or_(braze_profiles.c.email_key.in_(keys),
                                                                    braze_profiles.c.external_id.in_(keys))))
            run_ids |= {a["run_id"] for a in journaled if a.get("run_id")} | {e["run_id"] for e in exceptions}
            seen_runs = _rows(conn, select(runs.c.run_id, runs.c.mode, runs.c.job, runs.c.status,
                                           runs.c.started_at, runs.c.finished_at)
                              .where(runs.c.run_id.in_(run_ids)).order_by(runs.c.started_at)) if run_ids else []
        return {"drift": drift, "journaled": journaled, "planned": planned, "exceptions": exceptions,
                "tombstones": tomb, "requests": requests, "history": history, "callbacks": callbacks,
                "changes": changes, "profiles": profiles, "runs": seen_runs}


def _rows(conn: Connection, query: Any) -> list[Row]:
    return [dict(r._mapping) for r in conn.execute(query)]


def _lower_in(column: Any, keys: Iterable[str]) -> Any:
    """A superset of the rows whose identity has one of `keys` as its mailbox key (or is one
    of them): SQL lower() folds ASCII only on SQLite and by the locale on PostgreSQL, so
    every spelling either may compare against is listed. `_naming` then keeps the exact ones."""
    return func.lower(column).in_(sorted({s for k in keys for s in _spellings(k)}))


def _spellings(key: str) -> set[str]:
    local, at, domain = key.rpartition("@")
    if not at:
        return {key, key.lower()}
    try:
        shown = idna.decode(domain) if "xn--" in domain else domain
    except (idna.IDNAError, UnicodeError):
        shown = domain
    return {f"{loc}@{dom}" for loc in (local, local.lower()) for dom in (domain, shown, shown.lower())}


def _naming(keys: Iterable[str], rows: list[Row]) -> list[Row]:
    """The rows whose identity is one of `keys` or has one of them as its mailbox key: a
    look-alike (`uſer@`, the Kelvin sign, `straße`) never names another person's key."""
    wanted = set(keys)
    return [r for r in rows if isinstance(r.get("identity"), str)
            and (r["identity"].strip() in wanted or key_or_none(r["identity"]) in wanted)]


def _like(key: str) -> str:
    """`key` as the JSON text of a subject_keys list spells it (the store writes JSON with
    `ensure_ascii=False`), escaped for LIKE with the escape character backslash."""
    text = json.dumps(key, ensure_ascii=False)
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
