"""Ketch's side of a run read from the ledger's mirror (`[ledger] mirror = true`).

A subject whose mirror entry the Ketch API has filled at least once takes its Ketch state
from the mirror. The API is read only for:
* subjects never filled (the first run with the mirror fills them all, once);
* the day's audit slice of a full run (`ledger.mirror_audit_fraction` of the subjects,
  chosen by a stable hash of the subject key and the day, so each is checked every
  1/fraction days);
* subjects with open drift, or with a DeleteRequest whose callback failed or is still
  owed (`must_read`).
Every API read is merged into the mirror as of `READ_MARGIN` before the read started: a
message Ketch collected shortly before a read, which the read may not reflect yet (Ketch's
time is when the person chose, not when its API shows it), still wins over it. Where an audit
read disagrees with a trusted entry the mirror is corrected; the subjects are counted
(`MirrorTally.corrected`, the run's `ketch_mirror` summary) and logged as a WARNING.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Callable

import pandas as pd

from reconcile.config import Config
from reconcile.engine import extract as ex
from reconcile.engine.frames import conform
from reconcile.ledger import mirror as mm
from reconcile.ledger.sources import request_keys
from reconcile.models.mirror import MirrorEntry, Snapshot
from reconcile.pipeline.session import Session
from reconcile.store.ledger import LedgerStore
from reconcile.store.mirror import MirrorStore, Observation

log = logging.getLogger(__name__)
OWED_CALLBACKS = ("pending", "failed")
READ_MARGIN = timedelta(minutes=5)


@dataclass
class MirrorTally:
    """What a run's mirror reads did (summed over its parts)."""

    subjects: int = 0  # subjects whose Ketch state the run needed
    from_mirror: int = 0  # taken from a trusted entry
    backfilled: int = 0  # read from the API: never filled
    audited: int = 0  # read from the API: the day's audit slice
    flagged: int = 0  # read from the API: open drift or an owed callback
    failed: int = 0  # API reads that failed
    corrected: int = 0  # trusted entries a read found wrong (corrected)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def api_reads(self) -> int:
        return self.backfilled + self.audited + self.flagged

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, n in counts.items():
                setattr(self, name, getattr(self, name) + n)

    def as_note(self) -> dict[str, int]:
        return {"subjects": self.subjects, "from_mirror": self.from_mirror, "api_reads": self.api_reads,
                "backfilled": self.backfilled, "audited": self.audited, "flagged": self.flagged,
                "failed": self.failed, "corrected": self.corrected}


@dataclass(frozen=True)
class MirrorPlan:
    """A run's mirror settings: subjects always read from the API, whether the audit slice is
    read (full runs), its fraction, and the tally the parts add to."""

    must_read: frozenset[str]
    audit: bool
    fraction: float
    tally: MirrorTally = field(default_factory=MirrorTally)


def plan(rt: Session, mode: str) -> MirrorPlan | None:
    """The run's mirror plan (None: the mirror is off)."""
    if not (rt.cfg.ledger.enabled and rt.cfg.ledger.mirror):
        return None
    keys = set(rt.store.open_subjects()) | callback_subjects(rt.store, rt.cfg)
    return MirrorPlan(frozenset(keys), mode == "full", rt.cfg.ledger.mirror_audit_fraction)


def callback_subjects(store: Any, cfg: Config) -> set[str]:
    """Subject keys of DeleteRequests with a callback not delivered (pending or failed)."""
    ledger = LedgerStore.of(store)
    owed = {cb["request_uid"] for cb in ledger.callbacks() if cb.get("status") in OWED_CALLBACKS}
    if not owed:
        return set()
    space, key_type = cfg.identity.ketch_space, cfg.identity.braze_key
    return {k for req in ledger.requests() if req["uid"] in owed for k in request_keys(req, space, key_type)}


def read_ketch(rt: Session, universe: pd.DataFrame, mp: MirrorPlan, progress: ex.Progress | None = None,
               ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """`extract_ketch`'s answer (ketch, ketch_topics, failed), the mirror serving every
    subject it can. Read `extract.KETCH_BATCH` subjects at a time, as `extract_ketch` does:
    a batch's entries and records become frame rows before the next batch is read."""
    mirror = MirrorStore.of(rt.store)
    total = len(universe)
    ketch_parts, topic_parts = [], []
    failures: list[dict[str, str]] = []
    fell_back: set[str] = set()  # failed audits a trusted entry still served
    wrong: dict[str, list[str]] = {}
    asked = 0
    for at in range(0, max(total, 1), ex.KETCH_BATCH):
        rows = universe.iloc[at:at + ex.KETCH_BATCH]
        cb = (lambda done, _n, base=at: progress("ketch", base + done, total)) if progress else None
        ketch_df, topics, n = _read_batch(rt, rows, mp, mirror, cb, failures, fell_back, wrong)
        asked += n
        ketch_parts.append(ketch_df)
        topic_parts.append(topics)
        if progress:
            progress("ketch", at + len(rows), total)
    failed = ex.judged_failures(asked, failures)
    failed = failed[~failed["identity"].astype(str).isin(fell_back)].reset_index(drop=True)
    if wrong:
        log.warning("the Ketch mirror disagreed with Ketch for %d subject(s) read this run and was corrected (a "
                    "change reached Ketch without a webhook, or a webhook was lost): %s", len(wrong), mm.shown(wrong))
    return (conform(pd.concat(ketch_parts, ignore_index=True), "ketch"),
            conform(pd.concat(topic_parts, ignore_index=True), "ketch_topics"), failed)


def _read_batch(rt: Session, rows: pd.DataFrame, mp: MirrorPlan, mirror: MirrorStore,
                cb: Callable[[int, int], None] | None, failures: list[dict[str, str]], fell_back: set[str],
                wrong: dict[str, list[str]]) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """One batch of `read_ketch`: its frames and how many subjects it read from the API;
    adds to `failures`, `fell_back` and `wrong`."""
    keys = rows["subject_key"].astype(str).tolist()
    identities = rows["identity"].astype(str).tolist()
    entries = mirror.entries(keys)
    day = rt.clock().date()
    why: dict[str, str] = {}
    for key in keys:
        known = entries.get(key)
        if known is None or not known.trusted:
            why[key] = "backfilled"
        elif key in mp.must_read:
            why[key] = "flagged"
        elif mp.audit and mm.audited(key, day, mp.fraction):
            why[key] = "audited"
    ask = [(k, i) for k, i in zip(keys, identities) if k in why]
    started = rt.clock() - READ_MARGIN
    failed: list[dict[str, str]] = []
    records = ex.lookup_records(rt.ketch, [i for _, i in ask], rt.cfg, cb, failed) if ask else {}
    failures.extend(failed)
    failed_ids = {f["identity"] for f in failed}
    obs: list[Observation] = [(k, mm.snapshot(records.get(i), started)) for k, i in ask if i not in failed_ids]
    del records
    found = _disagreements(entries, obs, rt.cfg.mapping.email_purpose)
    wrong.update(found)
    after = mirror.observe(obs, rt.clock()) if obs else {}
    served: dict[str, Any] = {}
    for key, identity in zip(keys, identities):
        entry: MirrorEntry | None = after.get(key)
        if entry is None and identity in failed_ids and why.get(key) == "audited":
            entry = entries[key]  # a failed audit: the trusted entry still serves
            fell_back.add(identity)
        elif entry is None and key not in why:
            entry = entries[key]
        if entry is not None:
            served[identity] = mm.record_of(identity, entry)
    counts = {reason: sum(1 for k, _ in ask if why[k] == reason) for reason in ("backfilled", "audited", "flagged")}
    mp.tally.add(subjects=len(keys), from_mirror=len(keys) - len(ask), failed=len(failed_ids),
                 corrected=len(found), **counts)
    ketch_df, topics = ex.ketch_frames(served, rows, rt.cfg)
    return ketch_df, topics, len(ask)


def reread(rt: Session, universe: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """A fresh Ketch read of these subjects (verify after a write-back), merged into the
    mirror when it is on."""
    if not (rt.cfg.ledger.enabled and rt.cfg.ledger.mirror):
        return ex.extract_ketch(rt.ketch, universe, rt.cfg, None)
    started = rt.clock() - READ_MARGIN
    identities = universe["identity"].astype(str).tolist()
    records, failed = ex.fetch_ketch(rt.ketch, identities, rt.cfg, None)
    failed_ids = set(failed["identity"].astype(str))
    obs: list[Observation] = [(str(k), mm.snapshot(records.get(i), started))
                              for k, i in zip(universe["subject_key"], identities) if i not in failed_ids]
    if obs:
        MirrorStore.of(rt.store).observe(obs, rt.clock())
    ketch_df, topics = ex.ketch_frames(records, universe, rt.cfg)
    return ketch_df, topics, failed


def _disagreements(entries: dict[str, MirrorEntry], obs: list[Observation], email_purpose: str | None,
                   ) -> dict[str, list[str]]:
    out = {}
    for key, snap in obs:
        known = entries.get(key)
        if known is None or not known.trusted or not isinstance(snap, Snapshot):
            continue
        problems = mm.disagreement(known, snap, email_purpose)
        if problems:
            out[key] = problems
    return out
