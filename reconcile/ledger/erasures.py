"""The erasure loop's last stage, after verify: each open DeleteRequest's outcome.

For every request still `in_progress` whose subject this run checked:

    executed                     a deletion of the subject was verified (drift_items) after
                                 the request arrived
    insufficient_identification  no usable identity in the request, or the email matches
                                 several Braze profiles and policy would not pick one
    no_match                     no Braze profile existed and nothing was deleted
    (stays in_progress)          a deletion is planned, refused by a guard, or not verified yet

A completed request gets a `DeleteStatusEvent` queued for each of its callbacks; then every
callback that is due is sent (callbacks.py). Failed callbacks are recorded in the run's
exceptions (source `ketch_callback`), so reports show them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd

from reconcile.config import Config
from reconcile.engine.frames import Observed
from reconcile.engine.identity import normalize
from reconcile.ledger import messages as m
from reconcile.ledger.callbacks import deliver_due
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
    """What the erasure stage needs of a finished run: its id and status, what it observed
    and the drift it found."""

    run_id: str
    status: str
    observed: Observed
    drift: pd.DataFrame


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
    keys = _keys(requests, cfg.identity.braze_key)
    verified = ledger.verified_deletions(k for k in keys.values() if k)
    now = clock()
    counts: dict[str, int] = {}
    for req in requests:
        key = keys[req["uid"]]
        if key is None:
            reason = "insufficient_identification"
        elif key not in checked:
            continue
        elif key in verified and verified[key] >= req["received_at"]:
            reason = "executed"
        elif (key, "missed_deletion") in live or (key, "resurrected") in live:
            continue
        elif (key, "ambiguous_identity") in live:
            reason = "insufficient_identification"
        elif not exists.get(key, False):
            reason = "no_match"
        else:
            continue
        message = MESSAGES[reason] if key is not None else "The request carries no usable identity for Braze"
        if ledger.complete(req["uid"], reason, message, m.status_event(req, reason, message, now), run.run_id, now):
            counts[reason] = counts.get(reason, 0) + 1
    return counts


def _keys(requests: list[dict[str, Any]], key_type: str) -> dict[str, str | None]:
    """request uid -> subject key (None: no identity, or not a valid one)."""
    ids = pd.Series([r["identity"] for r in requests], dtype="string")
    valid, _invalid = normalize(ids, key_type)
    keys = valid["subject_key"].to_dict()
    return {r["uid"]: keys.get(i) for i, r in enumerate(requests)}
