"""Apply a plan with a journal written before and after every batch (semantics §5).

Before a batch goes out its journal row is committed as `sending`; after the answer it is
`confirmed`, `rejected` (every item refused) or `failed`. A batch already `confirmed`,
`rejected` or `skipped` is never sent again, so a run killed mid-apply resumes from the
journal. A batch left `sending` by a crash is sent again: every correction is idempotent
(unsubscribe, delete, blocklist), and Braze never confirmed it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

from reconcile.config import Config
from reconcile.errors import ApiError, AuthError, PermissionDenied

log = logging.getLogger(__name__)
DONE = {"confirmed", "rejected", "skipped"}
ALIAS_LABEL = "ketch_email"


@dataclass
class ApplyOutcome:
    sent: int = 0
    confirmed: int = 0
    failed: int = 0
    skipped_done: int = 0
    rejected_items: list[tuple[str, str]] = field(default_factory=list)  # (subject_key, reason)
    corrected: dict[str, list[str]] = field(default_factory=dict)  # action_id -> subject keys accepted
    deleted_subjects: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class Executor:
    """Sends one journaled action through the clients."""

    def __init__(self, cfg: Config, braze: Any, ketch: Any | None):
        self.cfg, self.braze, self.ketch = cfg, braze, ketch

    def run(self, action: dict[str, Any]) -> tuple[list[str], list[tuple[str, str]], list[dict]]:
        """Returns (accepted identities, rejected (identity, reason), response summaries)."""
        kind, ids, p = action["kind"], action["identities"], action["params"]
        by = "emails" if p.get("key_type") == "email" else "external_ids"
        if kind in ("group_unsubscribe", "group_subscribe"):
            state = "unsubscribed" if kind == "group_unsubscribe" else "subscribed"
            r = self.braze.subscription_status_set(p["group_id"], state, **{by: ids})
        elif kind in ("global_unsubscribe", "global_subscribe"):
            state = "unsubscribed" if kind == "global_unsubscribe" else "subscribed"
            r = self.braze.users_track([{"external_id": i, "email_subscribe": state, "_update_existing_only": True}
                                        for i in ids])
            return _track_outcome(r, ids)
        elif kind in ("global_unsubscribe_email", "global_subscribe_email"):
            r = self.braze.email_status(ids, "unsubscribed" if kind == "global_unsubscribe_email" else "subscribed")
        elif kind == "blocklist":
            r = self.braze.email_blocklist(ids)
        elif kind == "delete":
            r = (self.braze.users_delete(emails=ids, prioritization=p.get("prioritization", ()))
                 if by == "emails" else self.braze.users_delete(external_ids=ids))
        elif kind == "alias_optout":
            return self._alias(ids)
        elif kind == "ketch_writeback":
            return self._writeback(action)
        else:
            raise ValueError(f"unknown action kind {kind!r}")
        return _outcome(r, ids)

    def _alias(self, emails: list[str]) -> tuple[list[str], list[tuple[str, str]], list[dict]]:
        aliases = [{"alias_name": e, "alias_label": ALIAS_LABEL} for e in emails]
        first = self.braze.users_alias_new(aliases)
        track = self.braze.users_track([{"user_alias": a, "email": a["alias_name"], "email_subscribe": "unsubscribed",
                                         "_update_existing_only": False} for a in aliases])
        ok, rejected, summaries = _track_outcome(track, emails)
        return ok, rejected, _summaries(first) + summaries

    def _writeback(self, action: dict[str, Any]) -> tuple[list[str], list[tuple[str, str]], list[dict]]:
        if self.ketch is None:
            raise ValueError("ketch write-back needs a Ketch client")
        m, space = self.cfg.mapping, self.cfg.identity.ketch_space
        topic_of = {t.subscription_group_id: (t.topic, t.channel) for t in m.topics}
        ok, rejected = [], []
        for ident, fields, at in zip(action["identities"], action["params"]["fields"], action["params"]["at"]):
            when = datetime.fromisoformat(at)
            topics = {topic_of[f[6:]]: "denied" for f in fields if f.startswith("group:") and f[6:] in topic_of}
            try:
                if topics:
                    self.ketch.run(self.ketch.update_subscriptions({space: ident}, topics, {}, when))
                if "email_subscribe" in fields and m.email_purpose:
                    self.ketch.run(self.ketch.update_consent({space: ident}, {m.email_purpose: (False, m.email_purpose_legal_basis)}, when))
                ok.append(ident)
            except ApiError as exc:
                rejected.append((ident, str(exc)))
        return ok, rejected, [{"endpoint": "ketch:update", "status": 200, "message": f"{len(ok)} written back", "items": len(ok)}]


def _summaries(r: Any) -> list[dict]:
    return [{"endpoint": s.endpoint, "status": s.status, "message": s.message[:300], "items": s.items} for s in r.responses]


def _outcome(r: Any, ids: list[str]) -> tuple[list[str], list[tuple[str, str]], list[dict]]:
    bad = {str(item): msg for item, msg in r.rejected}
    return [i for i in ids if i not in bad], list(bad.items()), _summaries(r)


def _track_outcome(r: Any, ids: list[str]) -> tuple[list[str], list[tuple[str, str]], list[dict]]:
    bad: dict[str, str] = {}
    for obj, msg in r.rejected:
        ident = obj.get("external_id") or (obj.get("user_alias") or {}).get("alias_name") or obj.get("email")
        bad[str(ident)] = msg
    return [i for i in ids if i not in bad], list(bad.items()), _summaries(r)


def apply_actions(actions: list[dict[str, Any]], store: Any, executor: Executor, clock: Callable[[], datetime],
                  progress: Callable[[int, int], None] | None = None) -> ApplyOutcome:
    """Send every action not already done, journaling before and after each one."""
    out = ApplyOutcome()
    journal = {a["action_id"]: a for a in store.actions(plan_id=actions[0]["plan_id"])} if actions else {}
    for n, action in enumerate(actions, 1):
        if journal.get(action["action_id"], {}).get("status") in DONE:
            out.skipped_done += 1
            continue
        _apply_one(action, store, executor, clock, out)
        if progress:
            progress(n, len(actions))
    return out


def _apply_one(action: dict[str, Any], store: Any, executor: Executor, clock: Callable[[], datetime],
               out: ApplyOutcome) -> None:
    store.journal_sending(action["action_id"], at=clock())
    out.sent += 1
    try:
        ok, rejected, summaries = executor.run(action)
    except (AuthError, PermissionDenied):
        store.journal_result(action["action_id"], "failed", error="authentication/permission refused", at=clock())
        raise
    except ApiError as exc:
        log.warning("action %s (%s) failed: %s", action["action_id"], action["kind"], exc)
        store.journal_result(action["action_id"], "failed", error=str(exc)[:1000], at=clock())
        out.failed += 1
        out.errors.append(f"{action['kind']} batch {action['seq']}: {exc}")
        return
    status = "confirmed" if ok or not rejected else "rejected"
    store.journal_result(action["action_id"], status, at=clock(),
                         response_summary={"responses": summaries, "accepted": len(ok), "rejected": len(rejected)})
    out.confirmed += status == "confirmed"
    key_of = dict(zip(action["identities"], action["subject_keys"]))
    out.corrected[action["action_id"]] = [key_of[i] for i in ok if i in key_of]
    out.rejected_items += [(key_of.get(i, i), why) for i, why in rejected]
    if action["kind"] == "delete":
        out.deleted_subjects += out.corrected[action["action_id"]]
