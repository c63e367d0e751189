"""What the ledger adds to a run's universe (pipeline/read.py, with `[ledger] enabled = true`).

- changed subjects: every identity whose consent or subscriptions changed in a message
  received after the last successful run's watermark (both modes), labelled `ledger`,
  with Ketch's own time of the change as `updated_at`;
- deletions: every DeleteRequest not yet completed, looked up by every identity it
  carries, with its submission time as `requested_at` (so ageing counts from when the
  person asked), labelled `ketch_delete_request`. Under email keys each email the request
  names (an email identity, `subject.email`) is a subject; under external_id keys its
  value in the configured Ketch space is one, and each email it names is looked up in
  Braze (`users/export/ids` by address, never from a cache) and every external_id found
  is one. What the lookups found is kept (`ErasureLookups`) for settling the requests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd

from reconcile.config import Config
from reconcile.engine.identity import email_key, normalize
from reconcile.engine.ports import BrazeProfileReads
from reconcile.ledger import messages as m
from reconcile.store.ledger import LedgerStore
from reconcile.store.store import Store

SOURCE = "ketch_delete_request"
LOOKUP_FIELDS = ("braze_id", "external_id", "email")


@dataclass(frozen=True)
class ErasureLookups:
    """Per open DeleteRequest looked up in Braze by email this run (external_id keys): the
    subject keys of the profiles found, and the braze_ids of profiles found without an
    external_id (which external_id keys cannot address)."""

    found: dict[str, tuple[str, ...]] = field(default_factory=dict)
    unkeyed: dict[str, tuple[str, ...]] = field(default_factory=dict)


def _iso(value: datetime | None) -> Any:
    return value.isoformat() if value is not None else pd.NA


def request_keys(req: dict[str, Any], space: str, key_type: str) -> list[str]:
    """The subject keys a stored request names directly: its values in the configured
    space, and under email keys every email it carries."""
    keyed, emails = m.request_identities(req.get("identities"), space)
    values = keyed + emails if key_type == "email" else keyed
    if key_type == "email" and req.get("identity") and req["identity"] not in values:
        values.insert(0, req["identity"])  # requests stored before subject.email was kept among the identities
    if not values:
        return []
    valid, _invalid = normalize(pd.Series(values, dtype="string"), key_type)
    return list(dict.fromkeys(valid["subject_key"].astype(str)))


def ledger_sources(store: Store, cfg: Config, braze: BrazeProfileReads, since: datetime | None,
                   listed: pd.DataFrame, deletions: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, ErasureLookups]:
    """`listed` and `deletions` with the ledger's subjects added, and the erasure lookups
    (open DeleteRequests looked up in Braze by email under external_id keys)."""
    ledger = LedgerStore.of(store)
    changed = ledger.changed_since(since)
    if changed:
        rows = pd.DataFrame({"identity": pd.Series([c["identity"] for c in changed], dtype="string"),
                             "updated_at": pd.Series([_iso(c["changed_at"]) for c in changed], dtype="string"),
                             "_source": "ledger"})
        listed = pd.concat([listed, rows], ignore_index=True) if len(listed) else rows
    requests = ledger.requests("in_progress")
    space, key_type = cfg.identity.ketch_space, cfg.identity.braze_key
    lookups = _look_up(braze, requests, space) if key_type == "external_id" else ErasureLookups()
    ids, times = [], []
    for req in requests:
        keys = request_keys(req, space, key_type) + list(lookups.found.get(req["uid"], ()))
        ids += keys
        times += [_iso(req["submitted_at"] or req["received_at"])] * len(keys)
    if ids:
        rows = pd.DataFrame({"identity": pd.Series(ids, dtype="string"),
                             "requested_at": pd.Series(times, dtype="string"), "_source": SOURCE})
        attrs = dict(deletions.attrs)
        deletions = pd.concat([deletions, rows], ignore_index=True) if len(deletions) else rows
        deletions.attrs.update(attrs)
    return listed, deletions, lookups


def _look_up(braze: BrazeProfileReads, requests: list[dict[str, Any]], space: str) -> ErasureLookups:
    """Under external_id keys: each email of a request, looked up by address in Braze."""
    emails_of = {req["uid"]: m.request_identities(req.get("identities"), space)[1] for req in requests}
    wanted = list(dict.fromkeys(e for emails in emails_of.values() for e in emails))
    if not wanted:
        return ErasureLookups()
    users = braze.export_emails(wanted, list(LOOKUP_FIELDS))
    by_address: dict[str, list[dict[str, Any]]] = {}
    for user in users:
        key = email_key(user.get("email"))
        if key is not None and user.get("braze_id"):
            by_address.setdefault(key, []).append(user)
    found, unkeyed = {}, {}
    for uid, emails in emails_of.items():
        if not emails:
            continue
        hits = [u for e in emails for u in by_address.get(email_key(e) or "", [])]
        xids = [str(u["external_id"]).strip() for u in hits if u.get("external_id")]
        found[uid] = tuple(dict.fromkeys(xids))
        bare = tuple(dict.fromkeys(str(u["braze_id"]) for u in hits if not u.get("external_id")))
        if bare:
            unkeyed[uid] = bare
    return ErasureLookups(found, unkeyed)


def lookup_exceptions(lookups: ErasureLookups) -> pd.DataFrame:
    """One exception per DeleteRequest whose address is held by profiles without an
    external_id: external_id keys cannot delete them, so the request stays in progress."""
    rows = [{"identity": f"DeleteRequest {uid}", "source": SOURCE,
             "reason": f"{len(ids)} Braze profile(s) holding the request's email have no external_id and cannot be "
                       "deleted under external_id keys; the request stays in progress (delete them in Braze)"}
            for uid, ids in lookups.unkeyed.items()]
    return pd.DataFrame(rows, columns=["identity", "source", "reason"])
