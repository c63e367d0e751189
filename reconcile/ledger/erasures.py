"""The erasure loop's last stage, after verify: each open DeleteRequest's outcome.

For every request still `in_progress` whose subject this run checked:

    executed                     every subject the request names (by each identity it
                                 carries, sources.py) is gone, and a deletion of one of them
                                 was verified (drift_items) after the request arrived
    insufficient_identification  no identity Braze can be searched by (only hashed values or
                                 spaces the job does not key on, and no email), or a
                                 deletion by email that policy keeps for review
    no_match                     none of its subjects had a Braze profile; nothing deleted
    (stays in_progress)          a subject was not checked by this run, a deletion is
                                 planned, refused by a guard or not verified yet, or profiles
                                 the key type cannot address hold its email

A completed request gets a `DeleteStatusEvent` queued for each of its callbacks; then every
callback that is due is sent (callbacks.py). Failed callbacks are recorded in the run's
exceptions (source `ketch_callback`), so reports show them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd

from reconcile.config import Config
from reconcile.engine.frames import Observed
from reconcile.ledger import messages as m
from reconcile.ledger.callbacks import deliver_due
from reconcile.ledger.sources import ErasureLookups, request_keys
from reconcile.models.run import RunStatus
from reconcile.store.ledger import LedgerStore
from reconcile.store.store import Store

log = logging.getLogger(__name__)
OUTCOME_STATUSES = (RunStatus.APPLIED, RunStatus.IN_SYNC, RunStatus.PARTIAL)
MESSAGES = {
    "executed": "The subject's Braze profile was deleted and verified gone",
    "no_match": "No Braze profile matched the subject; nothing to delete",
    "insufficient_identification": "The subject could not be identified unambiguously in Braze; nothing was deleted",
}


@dataclass(frozen=True)
class Settled:
    """What the erasure stage needs of a finished run: its id and status, what it observed,
    the drift it found and what its DeleteRequest lookups found."""

    run_id: str
    status: str
    observed: Observed
    drift: pd.DataFrame
    erasures: ErasureLookups = field(default_factory=ErasureLookups)  # DeleteRequests looked up by email


def settle_erasures(cfg: Config, store: Store, clock: Callable[[], datetime], sleep: Callable[[float], None],
                    run: Settled) -> None:
    """Decide the outcome of open DeleteRequests after `run` and send the callbacks that
    are due. Never fails the run: a problem here is logged and left for the next run."""
    if not cfg.ledger.enabled:
        return
    ledger = LedgerStore.of(store)
    try:
        if str(run.status) in OUTCOME_STATUSES:
            decided = _decide(cfg, clock, ledger, run)
            if decided:
                log.info("DeleteRequests completed: %s", ", ".join(f"{r} {n}" for r, n in sorted(decided.items())))
        failed = deliver_due(ledger, cfg, clock(), sleep)
    except Exception:  # noqa: BLE001 - the run's outcome stands; the next run tries again
        log.exception("the erasure callbacks stage failed; the next run retries it")
        return
    store.add_exceptions(run.run_id, [
        {"identity": f["identity"], "source": "ketch_callback",
         "reason": f"DeleteStatusEvent to {f['host']} failed (attempt {f['attempts']}): {f['error']}; "
                   + (f"retried after {f['next_attempt_at']:%Y-%m-%d %H:%M} UTC" if f["next_attempt_at"]
                      else "given up")}
        for f in failed])


def _decide(cfg: Config, clock: Callable[[], datetime], ledger: LedgerStore, run: Settled) -> dict[str, int]:
    requests = ledger.requests("in_progress")
    if not requests:
        return {}
    o = run.observed
    checked = set(o.universe["subject_key"])
    exists = dict(zip(o.braze["subject_key"], o.braze["exists"].astype(bool)))
    drift = run.drift
    live = {(k, c) for k, c in zip(drift["subject_key"], drift["drift_class"])} if len(drift) else set()
    lookups = run.erasures
    space, key_type = cfg.identity.ketch_space, cfg.identity.braze_key
    keys = {req["uid"]: request_keys(req, space, key_type) + list(lookups.found.get(req["uid"], ()))
            for req in requests}
    verified = ledger.verified_deletions(k for ks in keys.values() for k in ks)
    now = clock()
    counts: dict[str, int] = {}
    for req in requests:
        uid = req["uid"]
        looked_up = uid in lookups.found
        reason = _outcome(keys[uid], req["received_at"], looked_up, uid in lookups.unkeyed, checked, exists, live,
                          verified)
        if reason is None:
            continue
        message = MESSAGES[reason] if keys[uid] or looked_up else "The request carries no usable identity for Braze"
        if ledger.complete(uid, reason, message, m.status_event(req, reason, message, now), run.run_id, now):
            counts[reason] = counts.get(reason, 0) + 1
    return counts


def _outcome(keys: list[str], received_at: Any, looked_up: bool, unkeyed: bool, checked: set[str],
             exists: dict[str, bool], live: set[tuple[str, str]], verified: dict[str, Any]) -> str | None:
    """A request's reason to complete, or None to leave it in progress. Every subject it
    names must have been checked by this run: all gone or never there, `executed` when one
    of them was deleted since the request came, else `no_match`."""
    if not keys:
        return "no_match" if looked_up and not unkeyed else None if looked_up else "insufficient_identification"
    if unkeyed or any(k not in checked for k in keys):
        return None
    done = {k for k in keys if k in verified and verified[k] >= received_at}
    rest = [k for k in keys if k not in done]
    if any((k, "missed_deletion") in live or (k, "resurrected") in live for k in rest):
        return None
    if any((k, "ambiguous_identity") in live for k in rest):
        return "insufficient_identification"
    if any(exists.get(k, False) for k in rest):
        return None
    return "executed" if done else "no_match"
