"""Apply a plan with a journal written before and after every batch (semantics §5).

Before a batch goes out its journal row is committed as `sending`; after the answer it is
`confirmed`, `rejected` (every item refused) or `failed`. A batch already `confirmed`,
`rejected` or `skipped` is never sent again, so a run killed mid-apply resumes from the
journal. A batch left `sending` by a crash is sent again: every correction is idempotent
(unsubscribe, delete, blocklist), and Braze never confirmed it. Sending one batch and
journaling its answer happen inside `batch_guard()` (signal deferral), so an interrupt
lets the batch in flight finish and be journaled before the run stops.
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Protocol

from reconcile.config import Config
from reconcile.errors import ApiError, AuthError, PermissionDenied
from reconcile.models.plan import Action, ActionKind, ActionStatus, Target
from reconcile.engine.ports import BrazeWrites, KetchWrites

log = logging.getLogger(__name__)
DONE = {s.value for s in ActionStatus if s.done}
ALIAS_LABEL = "ketch_email"


class Journal(Protocol):
    def actions(self, plan_id: str | None = None, run_id: str | None = None,
                status: Any = None) -> list[dict[str, Any]]: ...
    def journal_sending(self, action_id: str, at: datetime) -> None: ...
    def journal_result(self, action_id: str, status: str, *, response_summary: Any = None, error: str | None = None,
                       at: datetime, request_summary: Any = None) -> None: ...


@dataclass(frozen=True)
class BatchOutcome:
    """What Braze (or Ketch) accepted and refused of one batch."""

    accepted: tuple[Target, ...]
    rejected: tuple[tuple[Target, str], ...]
    summaries: tuple[dict[str, Any], ...]


@dataclass
class ApplyOutcome:
    sent: int = 0
    confirmed: int = 0
    failed: int = 0
    skipped_done: int = 0
    rejected_items: list[tuple[str, str]] = field(default_factory=list)  # (subject_key, reason)
    corrected: dict[str, list[str]] = field(default_factory=dict)  # action_id -> subjects fully accepted
    deleted_subjects: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class Executor:
    """Sends one action through the client method named for its intent."""

    def __init__(self, cfg: Config, braze: BrazeWrites, ketch: KetchWrites | None,
                 clock: Callable[[], datetime] | None = None):
        """`clock`: the time written back for an opt-out Braze gives no time for (an SMS STOP, or
        an address no longer on the unsubscribe list); else the epoch."""
        self.cfg, self.braze, self.ketch, self.clock = cfg, braze, ketch, clock

    def run(self, action: Action) -> BatchOutcome:
        kind, ids, by = action.kind, action.values, action.id_type.value
        if by == "email" and action.group_id in self._sms_groups():
            raise ValueError(f"SMS group {action.group_id} cannot be written by email (Braze takes phone or "
                             "external_id only); plan again")
        if kind is ActionKind.GROUP_UNSUBSCRIBE:
            result = self.braze.unsubscribe_groups(_group_of(action), by, ids)
        elif kind is ActionKind.GROUP_SUBSCRIBE:
            result = self.braze.subscribe_groups(_group_of(action), by, ids)
        elif kind is ActionKind.GLOBAL_UNSUBSCRIBE:
            result = self.braze.set_global_state("unsubscribed", by, ids)
        elif kind is ActionKind.GLOBAL_SUBSCRIBE:
            result = self.braze.set_global_state("subscribed", by, ids)
        elif kind is ActionKind.BLOCKLIST:
            result = self.braze.blocklist_emails(ids)
        elif kind is ActionKind.DELETE:
            result = self.braze.delete_profiles(by, ids, prioritization=action.prioritization)
        elif kind is ActionKind.ALIAS_OPTOUT:
            result = self.braze.create_alias_optouts(ids, ALIAS_LABEL)
        else:
            return self._writeback(action)
        return _outcome(action, result.rejected, [_summary(s) for s in result.responses])

    def _written_at(self, at: str) -> datetime:
        """The opt-out's time for Ketch: Braze's, or when it has none (an opt-out of unknown
        time, planned with the epoch) now, so it is not older than the grant it overrides."""
        when = datetime.fromisoformat(at)
        return self.clock() if when <= _EPOCH and self.clock is not None else when

    def _sms_groups(self) -> set[str]:
        return {m.subscription_group_id for m in self.cfg.mapping.topics if m.sms}

    def _writeback(self, action: Action) -> BatchOutcome:
        if self.ketch is None:
            raise ValueError("a Ketch write-back needs a Ketch client")
        m, space = self.cfg.mapping, self.cfg.identity.ketch_space
        topic_of = {t.subscription_group_id: (t.topic, t.channel) for t in m.topics}
        ident_of = {t.subject_key: t.value for t in action.targets}
        rejected: list[tuple[str, str]] = []
        for wb in action.writeback:
            topics = {topic_of[g]: "denied" for g in wb.group_ids if g in topic_of}
            purposes = {m.email_purpose: m.email_purpose_legal_basis} if wb.email_subscribe and m.email_purpose else {}
            if not topics and not purposes:
                continue
            identities = {space: ident_of[wb.subject_key]}
            if wb.phone and self.cfg.identity.ketch_phone_space:  # an SMS opt-out names the number too
                identities[self.cfg.identity.ketch_phone_space] = wb.phone
            try:
                left_out = self.ketch.run(self.ketch.write_back_optout(
                    identities, topics, purposes, self._written_at(wb.at), dict(m.purpose_legal_bases)))
            except ApiError as exc:
                rejected.append((ident_of[wb.subject_key], str(exc)))
                continue
            if left_out:
                log.warning("consent write-back: purpose(s) %s read without a legal basis were not sent again "
                            "(set mapping.purpose_legal_bases to keep them if Ketch replaces the purposes an "
                            "update names)", ", ".join(sorted(left_out)))
        written = len(action.writeback) - len(rejected)
        return _outcome(action, rejected, [{"endpoint": action.endpoint, "status": 200,
                                            "message": f"{written} written back", "items": written}])


def _group_of(action: Action) -> str:
    """The subscription group a group action sets; a plan never makes one without it."""
    if not action.group_id:
        raise ValueError(f"action {action.action_id} ({action.kind.value}) names no subscription group")
    return action.group_id


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _summary(s: Any) -> dict[str, Any]:
    return {"endpoint": s.endpoint, "status": s.status, "message": str(s.message)[:300], "items": s.items}


def _outcome(action: Action, rejected: list[tuple[Any, str]], summaries: list[dict[str, Any]]) -> BatchOutcome:
    bad = {str(value): str(why) for value, why in rejected}
    refused = tuple((t, bad[t.value]) for t in action.targets if t.value in bad)
    accepted = tuple(t for t in action.targets if t.value not in bad)
    return BatchOutcome(accepted, refused, tuple(summaries))


def apply_actions(actions: tuple[Action, ...] | list[Action], run_id: str, store: Journal, executor: Executor,
                  clock: Callable[[], datetime], *,
                  batch_guard: Callable[[], AbstractContextManager[Any]] = nullcontext,
                  before_batch: Callable[[], None] | None = None) -> ApplyOutcome:
    """Send every action not already done, journaling before and after each one.
    `before_batch` runs before each send (e.g. confirming the run still holds its lock)."""
    out = ApplyOutcome()
    journal = {a["action_id"]: a for a in store.actions(plan_id=actions[0].plan_id)} if actions else {}
    for action in actions:
        if journal.get(action.action_id, {}).get("status") in DONE:
            out.skipped_done += 1
            continue
        if before_batch is not None:
            before_batch()
        with batch_guard():
            _apply_one(action, store, executor, clock, out)
    return out


def _apply_one(action: Action, store: Journal, executor: Executor, clock: Callable[[], datetime],
               out: ApplyOutcome) -> None:
    store.journal_sending(action.action_id, at=clock())
    out.sent += 1
    try:
        result = executor.run(action)
    except (AuthError, PermissionDenied):
        store.journal_result(action.action_id, ActionStatus.FAILED, error="authentication/permission refused",
                             at=clock())
        raise
    except ApiError as exc:
        log.warning("action %s (%s, batch %d) failed: %s", action.action_id, action.kind, action.seq, exc)
        store.journal_result(action.action_id, ActionStatus.FAILED, error=str(exc)[:1000], at=clock())
        out.failed += 1
        out.errors.append(f"{action.kind} batch {action.seq}: {exc}")
        return
    status = ActionStatus.CONFIRMED if result.accepted or not result.rejected else ActionStatus.REJECTED
    store.journal_result(action.action_id, status, at=clock(),
                         response_summary={"responses": list(result.summaries), "accepted": len(result.accepted),
                                           "rejected": len(result.rejected)})
    out.confirmed += status is ActionStatus.CONFIRMED
    refused_subjects = {t.subject_key for t, _ in result.rejected}
    ok = [s for s in action.subject_keys if s not in refused_subjects]
    out.corrected[action.action_id] = ok
    out.rejected_items += [(t.subject_key, why) for t, why in result.rejected]
    if action.kind is ActionKind.DELETE:
        out.deleted_subjects += ok
