"""Read: build the universe and read both sides into the frames of engine/frames.py.

`observe` is what planning and re-checking a saved plan share; `reobserve` is what verify
reads after the consistency delay (the same Braze read path, plus a fresh Ketch read for
write-backs). Both take their time, capabilities and caches from the `Context`.
`observe_and_diff` reads a large universe a part at a time (parts.py); the incremental
watermark and the sweep slice counter are kept here too.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import pandas as pd

from reconcile.clients.braze import Stopped
from reconcile.engine.diff import Rules, diff
from reconcile.engine import extract as ex
from reconcile.engine.capabilities import Capabilities
from reconcile.engine.frames import Observed, conform, isin
from reconcile.engine.plan import fingerprint
from reconcile.engine.identity import email_keys
from reconcile.engine.profiles import PROFILE_FIELDS, GroupListing, ProfileReader
from reconcile.engine.ports import SharedRows
from reconcile.engine.shared_export import SharedExport, expected_wait
from reconcile.engine.sms import invalid_profile_phones
from reconcile.engine.universe import Sources, build_universe, pick_slice, slice_of
from reconcile.ledger.sources import SOURCE as LEDGER_DELETIONS
from reconcile.ledger.sources import ErasureLookups, ledger_sources, lookup_exceptions
from reconcile.pipeline.owed import with_owed
from reconcile.observability.events import stage
from reconcile.pipeline.crashpoints import crash_point
from reconcile.pipeline import ketch_mirror
from reconcile.pipeline.parts import STATE, PartJournal, PartResult, merge, reusable, seen_of
from reconcile.pipeline.recorder import RunRecorder
from reconcile.pipeline.session import Session
from reconcile.pipeline.sources import load_deletions, load_listed
from reconcile.store.store import Store

log = logging.getLogger(__name__)
WATERMARK = "last_success_started_at"
SLICE_COUNTER = "full_sweep_slice"
EXCEPTION_COLUMNS = ["identity", "source", "reason"]
# sources whose only question is "still absent?"
ABSENCE_SOURCES = frozenset({"deletions", "tombstones", LEDGER_DELETIONS})


class StoreCache:
    """The address -> profiles mapping, kept in the state store."""

    def __init__(self, store: Store, clock: Callable[[], datetime], run_id: str):
        self.store, self.clock, self.run_id = store, clock, run_id

    def lookup(self, email_keys: Iterable[str]) -> pd.DataFrame:
        return self.store.braze_profiles(list(email_keys))

    def replace(self, email_keys: Iterable[str], rows: pd.DataFrame) -> None:
        self.store.replace_braze_profiles_for(list(email_keys), rows, self.clock(), self.run_id)

    def forget(self, braze_ids: Iterable[str]) -> None:
        self.store.forget_braze_profiles(list(braze_ids))


@dataclass(frozen=True)
class Observation:
    """A run's observation. With a chunked read `observed` keeps every subject of the
    universe but the state frames only of subjects with drift; `sizes` has the totals."""

    observed: Observed
    exceptions: pd.DataFrame
    lists: ex.BrazeLists
    extracted_at: datetime
    caps: Capabilities = field(default_factory=Capabilities)
    sizes: tuple[int, int, int] | None = None  # universe, Ketch records, Braze subjects with a profile
    read_from: datetime | None = None  # the earliest start of a run whose saved parts were taken
    source_rows: int | None = None  # rows of the configured identity list, whole (the guards' workspace measure)
    erasures: ErasureLookups = field(default_factory=ErasureLookups)  # DeleteRequests looked up by email

    @property
    def totals(self) -> tuple[int, int, int]:
        if self.sizes is not None:
            return self.sizes
        o = self.observed
        return len(o.universe), int(o.ketch["has_record"].sum()), int(o.braze["exists"].sum())


def since_watermark(rt: Session) -> datetime | None:
    value = rt.store.get_watermark(WATERMARK)
    return datetime.fromisoformat(value) if value else None


def advance_watermark(store: Any, started: datetime, now: datetime, *, only_forward: bool = False) -> None:
    """Move the incremental watermark to `started`, the start of a run (or sweep) that checked
    every subject since; with `only_forward`, never back."""
    current = store.get_watermark(WATERMARK) if only_forward else None
    if current is not None and datetime.fromisoformat(current) >= started:
        return
    store.set_watermark(WATERMARK, started.isoformat(), now)


def advance_slice(store: Any, slices: int, now: datetime) -> None:
    """The next full run reads the next of `universe.slices` slices."""
    counter = int(store.get_watermark(SLICE_COUNTER) or 0) + 1
    store.set_watermark(SLICE_COUNTER, str(counter % slices), now)


def list_window(rt: Session, mode: str, since: datetime | None) -> tuple[date, date]:
    """Braze list window: everything since `full_since` for full runs; for incremental runs
    the last `window_days`, widened back to the last successful run when that is older."""
    today = rt.clock().date()
    if mode == "full":
        return date.fromisoformat(rt.cfg.universe.full_since), today + timedelta(days=1)
    start = today - timedelta(days=rt.cfg.universe.window_days)
    if since is not None:
        start = min(start, since.date() - timedelta(days=1))
    return start, today + timedelta(days=1)


def _keys_frame(df: pd.DataFrame, ident: str) -> pd.DataFrame:
    if not len(df):
        return pd.DataFrame({"subject_key": pd.Series(dtype="string"), "identity": pd.Series(dtype="string")})
    return df[["subject_key", ident]].drop_duplicates("subject_key").rename(columns={ident: "identity"})


def _last_capabilities(rt: Session) -> dict[str, bool | None] | None:
    """The optional permissions the last run of this config recorded within a day (full
    sweeps ask again, so a new key's permissions are learned at least daily)."""
    day_ago = rt.clock() - timedelta(days=1)
    for run in rt.store.list_runs(20):
        started = run.get("started_at")
        if run.get("config_hash") == rt.cfg.hash() and run.get("capabilities") and started and started >= day_ago:
            return dict(run["capabilities"])
    return None


def _open_drift(rt: Session) -> pd.DataFrame:
    rows = [{"subject_key": d["subject_key"], "identity": (d.get("detail") or {}).get("identity") or d["subject_key"]}
            for d in rt.store.open_drift()]
    return _keys_frame(pd.DataFrame(rows), "identity")


def shared_export(rt: Session, run_id: str, full: bool) -> SharedExport | None:
    """The segment export a full sweep shares with its other parts and workers: one per
    sweep (`rt.export_scope`, set by sweep workers) or per run."""
    segment_id = rt.cfg.braze.segment_id
    if not full or not segment_id:
        return None
    wait = rt.cfg.braze.segment_export_wait_seconds or expected_wait(_workspace_profiles(rt))
    scope = f"sweep:{rt.export_scope}" if rt.export_scope else f"run:{run_id}"
    return SharedExport(rt.store, rt.braze, scope, segment_id, PROFILE_FIELDS, clock=rt.clock, sleep=rt.sleep,
                        wait_seconds=wait, poll_seconds=rt.cfg.braze.segment_export_poll_seconds)


def _workspace_profiles(rt: Session) -> int:
    """Subjects with a Braze profile in the last full run (0: none yet)."""
    return next((int(r.get("braze_count") or 0) for r in rt.store.list_runs(50)
                 if r.get("mode") == "full" and r.get("braze_count")), 0)


def drop_shared_export(rt: Session, read: ex.BrazeRead) -> None:
    """A run's own export is forgotten once its read is done (a sweep's, when the sweep is)."""
    if read.shared_export is not None and not rt.export_scope:
        rt.store.drop_segment_export(read.shared_export.scope)


def _listed_by_external_id(rt: Session, caps: Capabilities, cache: StoreCache, lists: ex.BrazeLists,
                           full: bool, known: pd.DataFrame, shared: SharedRows | None = None,
                           ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, GroupListing | None]:
    """Under external_id keys, the addresses on Braze's lists resolved to their profiles'
    external_ids: (identity rows with email and source, exceptions for addresses with none,
    the profiles read, the group states listed while resolving them, keyed by external id).
    Addresses held by a profile in `known` (already read by external id) are not looked up
    again; a profile without an external_id is listed, never exported (it cannot be checked
    under these keys)."""
    parts = [df[["email"]].assign(source=name) for df, name in
             ((lists.unsubscribed, "braze_unsubscribes"), (lists.bounced, "braze_hard_bounces")) if len(df)]
    empty = pd.DataFrame({"identity": pd.Series(dtype="string"), "email": pd.Series(dtype="string"),
                          "_source": pd.Series(dtype="string")})
    if not parts:
        return empty, pd.DataFrame(columns=EXCEPTION_COLUMNS), known.iloc[0:0], None
    listed = pd.concat(parts, ignore_index=True).dropna(subset=["email"])
    listed = listed.assign(subject_key=email_keys(listed["email"]))
    held = email_keys(known["email"])
    listed = listed[~isin(listed["subject_key"], held.dropna())]
    if not len(listed):
        return empty, pd.DataFrame(columns=EXCEPTION_COLUMNS), known.iloc[0:0], None
    addresses = listed.drop_duplicates("subject_key")
    reader = ProfileReader(rt.braze, caps, cache, now=rt.clock(), cache_days=rt.cfg.braze.profile_cache_days,
                           segment_id=rt.cfg.braze.segment_id, shared=shared)
    read = reader.enumerate(addresses[["subject_key", "email"]], full_sweep=full, xid_only=True)
    profiles = read.profiles
    with_id = profiles[profiles["external_id"].notna()]
    rows = with_id.merge(listed[["subject_key", "source"]], on="subject_key", how="left")
    found = pd.DataFrame({"identity": rows["external_id"].astype("string"), "email": rows["email"].astype("string"),
                          "_source": rows["source"].astype("string")})
    missing = addresses[~isin(addresses["subject_key"], with_id["subject_key"])]
    holders = set(profiles["subject_key"])
    if read.listing is not None:
        holders |= set(read.listing.profiles["subject_key"])
    reasons = missing["subject_key"].map(lambda k: "the address's Braze profiles have no external_id" if k in holders
                                         else "no Braze profile holds this address")
    exc = pd.DataFrame({"identity": missing["email"].astype(str), "source": missing["source"],
                        "reason": "listed by Braze but not checked under external_id keys: " + reasons})
    xids = with_id["external_id"].astype(str)
    listing = read.listing.rekeyed(dict(zip(xids, xids))) if read.listing is not None else None
    return found, exc, with_id.drop_duplicates("external_id"), listing


@dataclass(frozen=True)
class UniverseRead:
    """What a run knows before it reads anyone's state: the universe, its exceptions, the
    address lists, and the read context (capabilities, cache, profiles already read)."""

    universe: pd.DataFrame
    exceptions: pd.DataFrame
    lists: ex.BrazeLists
    read: ex.BrazeRead
    prefetched: ex.Prefetched | None
    run_id: str = ""
    absence_skipped: int = 0  # subjects left out: confirmed absent within universe.absence_recheck_hours
    source_rows: int | None = None  # rows of the configured identity list, whole (before the incremental filter)
    erasures: ErasureLookups = field(default_factory=ErasureLookups)  # DeleteRequests looked up by email
    mirror: ketch_mirror.MirrorPlan | None = None  # Ketch state from the ledger's mirror (`ledger.mirror`)


def read_universe(rt: Session, mode: str, run_id: str, subjects: set[str] | None = None,
                  slice_index: int | None = None) -> UniverseRead:
    """Build the universe (every configured source, Braze's lists, open drift, tombstones);
    `subjects` restricts it to those keys. A full run given `slice_index` (a sweep worker's
    claimed slice) keeps exactly the subjects of that slice of `universe.slices`, whatever
    their source, so the slices of one sweep never share a subject."""
    cfg = rt.cfg
    caps = Capabilities() if mode == "full" else Capabilities.remembered(_last_capabilities(rt))
    cache = StoreCache(rt.store, rt.clock, run_id)
    since = since_watermark(rt) if mode == "incremental" else None
    start, end = list_window(rt, mode, since)
    full = mode == "full" and subjects is None
    lists = _with_own_blocklist(rt, ex.braze_lists(rt.braze, start, end, cfg, caps))
    listed = load_listed(cfg.universe, since, cfg.identity.braze_key)
    source_rows = listed.attrs.get("source_rows")
    deletions = load_deletions(cfg.universe, cfg.identity.braze_key)
    erasures = ErasureLookups()
    if cfg.ledger.enabled:  # the Ketch webhook ledger: changed subjects and open DeleteRequests
        listed, deletions, erasures = ledger_sources(rt.store, cfg, rt.braze, since_watermark(rt), listed, deletions)
    listed = with_owed(rt.store, listed)  # subjects whose read failed in an earlier run
    extra_exc = pd.DataFrame(columns=EXCEPTION_COLUMNS)
    open_drift, tombstones = _open_drift(rt), _keys_frame(pd.DataFrame(rt.store.tombstones()), "identity")
    read = ex.BrazeRead(rt.braze, cfg, caps, cache, rt.clock(), full_sweep=full,
                        shared_export=shared_export(rt, run_id, full))
    prefetched = None
    absent = confirmed_absent(rt) if mode != "full" and subjects is None else {}
    if cfg.identity.braze_key == "external_id" and subjects is None:
        # read the known subjects' profiles first: their addresses need no look-up on the lists
        none = lists.unsubscribed.iloc[0:0]
        base, _ = build_universe(Sources(listed, deletions, none, lists.bounced.iloc[0:0], open_drift, tombstones),
                                 "external_id")
        if full and slice_index is not None:
            base = base[_in_slice(base, cfg.universe.slices, slice_index)]
        base = base[~_absence_only(base, absent)]
        known = ex.profiles_by_external_id(read, base["identity"])
        resolved, extra_exc, found, listing = _listed_by_external_id(rt, caps, cache, lists, full, known,
                                                                     read.shared_export)
        listed = pd.concat([listed, resolved], ignore_index=True) if len(resolved) else listed
        prefetched = ex.Prefetched(set(base["identity"].astype(str)) | set(found["external_id"].astype(str)),
                                   pd.concat([known, found], ignore_index=True), listing)
    src = Sources(listed=listed, deletions=deletions, unsubscribed=lists.unsubscribed,
                  bounced=lists.bounced, open_drift=open_drift, tombstones=tombstones)
    universe, exceptions = build_universe(src, cfg.identity.braze_key, cfg.identity.phone_region)
    extra_exc = pd.concat([extra_exc, lookup_exceptions(erasures)], ignore_index=True)
    exceptions = pd.concat([exceptions, extra_exc], ignore_index=True) if len(extra_exc) else exceptions
    if full and slice_index is not None:
        universe = universe[_in_slice(universe, cfg.universe.slices, slice_index)].reset_index(drop=True)
    elif full and cfg.universe.slices > 1:
        universe = pick_slice(universe, cfg.universe.slices, int(rt.store.get_watermark(SLICE_COUNTER) or 0))
    if subjects is not None:
        universe = universe[isin(universe["subject_key"], subjects)].reset_index(drop=True)
    skip = _absence_only(universe, absent)
    if skip.any():
        log.info("%d subject(s) with a deletion request or tombstone confirmed absent from Braze within the last "
                 "%g h are not read again (universe.absence_recheck_hours; full sweeps read them)",
                 int(skip.sum()), cfg.universe.absence_recheck_hours)
        universe = universe[~skip].reset_index(drop=True)
    return UniverseRead(universe, exceptions, lists, read, prefetched, run_id, int(skip.sum()), erasures=erasures,
                        source_rows=source_rows, mirror=ketch_mirror.plan(rt, mode))


def _with_own_blocklist(rt: Session, lists: ex.BrazeLists) -> ex.BrazeLists:
    """When the key cannot read the hard-bounce list, the addresses this job blocklisted
    itself (Braze confirming) are the only ones known to be blocklisted."""
    if lists.bounces_known:
        return lists
    return replace(lists, blocklisted_by_job=frozenset(rt.store.blocklisted_by_job()))


def confirmed_absent(rt: Session) -> dict[str, datetime]:
    """subject key -> when a run last confirmed it has no Braze profile, within
    `universe.absence_recheck_hours`."""
    hours = rt.cfg.universe.absence_recheck_hours
    return rt.store.absent_since(rt.clock() - timedelta(hours=hours)) if hours > 0 else {}


def _absence_only(universe: pd.DataFrame, absent: dict[str, datetime]) -> Any:
    """Rows brought in only to prove they are still absent (deletion requests, tombstones),
    confirmed absent recently and not asked to be erased again since: a boolean numpy mask."""
    if not absent or not len(universe):
        return pd.Series(False, index=universe.index).to_numpy()
    labels = universe["sources"].astype("string").fillna("")
    only = labels.map({v: bool(v) and set(v.split("+")) <= ABSENCE_SOURCES for v in labels.unique()})
    checked = pd.to_datetime(universe["subject_key"].astype(object).map(absent), utc=True)
    if "deletion_latest_at" in universe.columns:
        asked = pd.to_datetime(universe["deletion_latest_at"], utc=True, errors="coerce", format="ISO8601")
        newer = (asked > checked).fillna(False).astype(bool)  # a request after the check: read again
    else:
        newer = pd.Series(False, index=universe.index)
    return (only.fillna(False).astype(bool) & checked.notna() & ~newer).to_numpy()


def note_absences(rt: Session, observed: Observed, run_id: str) -> None:
    """Record which subjects that must not exist were read without a profile (and clear the
    record of those found with one), for `confirmed_absent`."""
    u, b = observed.universe, observed.braze
    if not len(u):
        return
    doomed = (u["deletion_requested"].fillna(False) | u["tombstoned"].fillna(False)).astype(bool).to_numpy()
    keys = u.loc[doomed, "subject_key"]
    if not len(keys):
        return
    present = set(b.loc[b["exists"].fillna(True).astype(bool).to_numpy(), "subject_key"].astype(str))
    found = isin(keys, present).to_numpy()
    rt.store.clear_absent(keys[found].astype(str))
    rt.store.record_absent(keys[~found].astype(str), rt.clock(), run_id)


def _in_slice(universe: pd.DataFrame, slices: int, index: int) -> Any:
    return (slice_of(universe["subject_key"], slices) == index).to_numpy()


def read_state(rt: Session, base: UniverseRead, universe: pd.DataFrame) -> tuple[Observed, pd.DataFrame]:
    """Both sides' state for (part of) the universe: (observed, failed Ketch lookups). A
    lookup that failed is not "no record": those subjects are left out and reported.

    Ketch (on a helper thread) and Braze (here) are read at the same time, so a run bound
    by one API's rate limit is not also waiting for the other's. When either read fails
    the other is stopped (Ketch is cancelled; a Braze read is only waited for) and the
    first failure is raised."""
    ketch_read = _KetchRead(rt, universe, base.mirror)
    try:
        try:
            braze, groups, profiles = ex.extract_braze(base.read, universe, base.lists, base.prefetched)
        except Stopped:
            ketch_read.result()  # Ketch failed and stopped this read: raise its error
            raise RuntimeError("the Braze read was stopped although the Ketch read succeeded") from None
        except BaseException:
            ketch_read.stop()
            raise
        ketch, topics, failed = ketch_read.result()
    finally:
        ketch_read.stop()  # the Ketch thread has ended: nothing can stop the Braze client any more
        _call(rt.braze, "resume")
    if len(failed):
        log.warning("%d Ketch lookups failed; those subjects are skipped this run", len(failed))
        universe = universe[~isin(universe["identity"], failed["identity"])].reset_index(drop=True)
        keep = set(universe["subject_key"])
        braze, groups, profiles = (df[isin(df["subject_key"], keep).to_numpy()].reset_index(drop=True)
                                   for df in (braze, groups, profiles))
    observed = Observed(universe, ketch, topics, braze, groups, profiles)
    note_absences(rt, observed, base.run_id)
    bad_phones = invalid_profile_phones(universe, profiles, rt.cfg)
    failed = failed.assign(source="ketch")
    return observed, (pd.concat([failed, bad_phones], ignore_index=True) if len(bad_phones) else failed)


CHUNK_HASH_KEY = "reconcile-parts1"  # 16 bytes; not the sweep slices' key, so parts split a slice evenly


class _KetchRead:
    """Ketch's side of `read_state`, running on its own thread."""

    def __init__(self, rt: Session, universe: pd.DataFrame, mirror: ketch_mirror.MirrorPlan | None = None):
        self.rt, self.mirror = rt, mirror
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="ketch-read")
        self.future = self.pool.submit(self._read, universe)
        self.pool.shutdown(wait=False)

    def _read(self, universe: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        try:
            if self.mirror is not None:
                return ketch_mirror.read_ketch(self.rt, universe, self.mirror, self.rt.progress)
            return ex.extract_ketch(self.rt.ketch, universe, self.rt.cfg, self.rt.progress)
        except BaseException:
            _call(self.rt.braze, "stop")  # no point reading Braze for a run that will not go on
            raise

    def result(self) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        try:
            return self.future.result()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Cancel the Ketch read and wait for its thread (a cancelled read ends at once)."""
        while not self.future.done():
            _call(self.rt.ketch, "cancel")
            wait([self.future], timeout=0.05)


def _call(client: Any, method: str) -> None:
    func = getattr(client, method, None)
    if callable(func):
        func()


def chunks(universe: pd.DataFrame, size: int) -> tuple[int, list[tuple[int, pd.DataFrame]]]:
    """(parts, [(part number, subjects)]): the universe in ceil(N / size) stable hash slices of
    about `size` subjects each, so a subject stays in its part when others join or leave."""
    if len(universe) <= size:
        return 1, [(0, universe)]
    parts = -(-len(universe) // size)
    hashed = pd.util.hash_pandas_object(universe["subject_key"].astype(str), index=False, hash_key=CHUNK_HASH_KEY)
    number = (hashed.to_numpy() % parts).astype("int64")
    ordered = universe.assign(_part=number).sort_values(["_part", "subject_key"], kind="stable")
    present = np.unique(number)
    starts = np.searchsorted(ordered["_part"].to_numpy(), present)
    ends = [*starts[1:], len(ordered)]
    body = ordered.drop(columns="_part")
    return parts, [(int(n), body.iloc[a:b].reset_index(drop=True)) for n, a, b in zip(present, starts, ends)]


def observe(rt: Session, mode: str, run_id: str, subjects: set[str] | None = None) -> Observation:
    """Build the universe and extract both sides in one piece (saved-plan re-checks, tests)."""
    base = read_universe(rt, mode, run_id, subjects)
    try:
        observed, failed = read_state(rt, base, base.universe)
    finally:
        drop_shared_export(rt, base.read)
    exceptions = pd.concat([base.exceptions, failed], ignore_index=True) if len(failed) else base.exceptions
    note_mirror(rt, base)
    return Observation(observed, exceptions, base.lists, rt.clock(), base.read.caps, erasures=base.erasures)


def note_mirror(rt: Session, base: UniverseRead, rec: RunRecorder | None = None) -> None:
    """Record what the Ketch mirror served and corrected in the run's summary (`ketch_mirror`)."""
    if base.mirror is None:
        return
    tally = base.mirror.tally.as_note()
    if rec is not None:
        rec.note(ketch_mirror=tally)
    elif base.run_id and rt.store.get_run(base.run_id) is not None:
        rt.store.note_run(base.run_id, ketch_mirror=tally)
    log.info("Ketch state: %d subject(s) from the mirror, %d read from Ketch (%d never filled, %d audited, %d with "
             "open drift or an owed callback); mirror corrected %d", tally["from_mirror"], tally["api_reads"],
             tally["backfilled"], tally["audited"], tally["flagged"], tally["corrected"])


@dataclass(frozen=True)
class ReadBack:
    """What verify reads again: only what the run wrote. `profiles`: subjects whose profiles
    were written (global state, deletions, alias profiles); `groups`: group id -> subjects
    whose state in that group was written; `blocklist`: subjects blocklisted; `ketch`:
    subjects whose opt-out was written back to Ketch."""

    profiles: frozenset[str] = frozenset()
    groups: Mapping[str, frozenset[str]] = field(default_factory=dict)
    blocklist: frozenset[str] = frozenset()
    ketch: frozenset[str] = frozenset()

    @property
    def subjects(self) -> set[str]:
        return set(self.profiles) | set(self.blocklist) | set(self.ketch) | set().union(*self.groups.values())


def reobserve(rt: Session, obs: Observation, back: ReadBack, *, run_id: str) -> Observed:
    """The run's observation of the subjects `back` names, with what the run wrote read again
    (verify): Braze profiles, group states and, for blocklisted addresses, the last day of
    the hard-bounce list (merged with the run's own lists, so an older time is not
    forgotten); Ketch for the subjects written back to it. Nothing else is read again."""
    o = obs.observed.subset(back.subjects)
    lists = obs.lists
    if back.blocklist and obs.lists.bounces_known:
        today = rt.clock().date()
        fresh = ex.braze_lists(rt.braze, today - timedelta(days=1), today + timedelta(days=1), rt.cfg, obs.caps,
                               unsubscribes=False)
        lists = ex.BrazeLists(obs.lists.unsubscribed, pd.concat([obs.lists.bounced, fresh.bounced], ignore_index=True),
                              fresh.bounces_known)
    lists = _with_own_blocklist(rt, replace(lists, blocklisted_by_job=frozenset()))
    ketch, topics = o.ketch, o.ketch_topics
    if back.ketch:
        again = o.universe[isin(o.universe["subject_key"], back.ketch).to_numpy()]
        fresh_k, fresh_t, _failed = ketch_mirror.reread(rt, again)
        ketch = conform(pd.concat([ketch[~isin(ketch["subject_key"], back.ketch).to_numpy()], fresh_k],
                                  ignore_index=True), "ketch")
        topics = conform(pd.concat([topics[~isin(topics["subject_key"], back.ketch).to_numpy()], fresh_t],
                                   ignore_index=True), "ketch_topics")
    read = ex.BrazeRead(rt.braze, rt.cfg, obs.caps, StoreCache(rt.store, rt.clock, run_id), rt.clock())
    groups_of = {g: set(keys) for g, keys in back.groups.items() if keys}
    braze, groups, profiles = ex.read_back(read, o, lists, set(back.profiles), groups_of)
    observed = Observed(o.universe, ketch, topics, braze, groups, profiles)
    note_absences(rt, observed.subset(back.profiles), run_id)
    return observed


# ----------------------------------------------------------------------------- chunked reads


def observe_and_diff(rt: Session, mode: str, rec: RunRecorder, rules: Rules, subjects: set[str] | None = None,
                     slice_index: int | None = None) -> tuple[Observation, pd.DataFrame, str]:
    """(observation, drift, fingerprint). A universe larger than `universe.chunk_size` is read
    and diffed a part at a time, keeping only the state of subjects with drift, so memory
    follows the part, not the workspace; each finished part is journaled, and the parts an
    unfinished earlier run left are taken instead of read again (parts.py)."""
    run_id = rec.run_id
    stage(rt.progress, "extract")
    base = read_universe(rt, mode, run_id, subjects, slice_index)
    if base.absence_skipped:
        rec.note(absence_skipped=base.absence_skipped)
    count, parts = chunks(base.universe, rt.cfg.universe.chunk_size)
    if count == 1:
        observed, failed = read_state(rt, base, base.universe)
        stage(rt.progress, "diff", subjects=len(observed.universe))
        drift = diff(observed, rules)
        exceptions = pd.concat([base.exceptions, failed], ignore_index=True) if len(failed) else base.exceptions
        obs = Observation(observed, exceptions, base.lists, rt.clock(), base.read.caps, erasures=base.erasures,
                          source_rows=base.source_rows)
        drop_shared_export(rt, base.read)
        note_mirror(rt, base, rec)
        return obs, drift, fingerprint(rt.cfg.hash(), _print(observed))
    journal = PartJournal(rt, run_id, mode, slice_index, count)
    saved = journal.saved()
    results = []
    for n, (number, part) in enumerate(parts, 1):
        stage(rt.progress, "extract", part=n, parts=len(parts))
        result, resumed = _read_part(rt, base, part, rules, saved.get(number))
        if not resumed:
            journal.save(number, result)
        crash_point("part")
        results.append(result)
    found = [r.failed for r in results if len(r.failed)]
    exceptions = pd.concat([base.exceptions, *found], ignore_index=True) if found else base.exceptions
    failed_ids = set(exceptions.loc[exceptions["source"] == "ketch", "identity"]) if len(exceptions) else set()
    universe = base.universe[~isin(base.universe["identity"], failed_ids)].reset_index(drop=True)
    state = (conform(pd.concat([r.state[name] for r in results], ignore_index=True), name) for name in STATE)
    drift = pd.concat([r.drift for r in results], ignore_index=True)
    drift = drift.sort_values(["subject_key", "drift_class", "field"], kind="stable").reset_index(drop=True)
    seen = [r.seen for r in results]
    sizes = (sum(len(s) for s in seen), sum(int(s["has_record"].sum()) for s in seen),
             sum(int(s["exists"].sum()) for s in seen))
    obs = Observation(Observed(universe, *state), exceptions, base.lists, rt.clock(), base.read.caps, sizes,
                      _read_from(rt, {saved[n][0] for n, _ in parts if n in saved}), source_rows=base.source_rows,
                      erasures=base.erasures)
    journal.finished()
    drop_shared_export(rt, base.read)
    note_mirror(rt, base, rec)
    return obs, drift, fingerprint(rt.cfg.hash(), *[r.print for r in results])


def _read_from(rt: Session, run_ids: set[str]) -> Any:
    """The start of the earliest run whose saved parts this read took (None: none)."""
    starts = [run["started_at"] for run in (rt.store.get_run(r) for r in run_ids) if run and run.get("started_at")]
    return min(starts) if starts else None


def _print(o: Observed) -> str:
    return fingerprint(o.universe, o.ketch, o.ketch_topics, o.braze, o.braze_groups, o.braze_profiles)


def _read_part(rt: Session, base: UniverseRead, part: pd.DataFrame, rules: Rules,
               saved: tuple[str, PartResult] | None) -> tuple[PartResult, bool]:
    """(result, resumed): a part read and diffed, or taken from a saved copy with only the
    subjects that joined it since read (and those that left it dropped)."""
    if saved is None:
        return _fresh_part(rt, base, part, rules), False
    keep = reusable(saved[1], part)
    kept = saved[1].only(keep)
    again = part[~isin(part["subject_key"], set(keep)).to_numpy()].reset_index(drop=True)
    return (merge(kept, _fresh_part(rt, base, again, rules)) if len(again) else kept), True


def _fresh_part(rt: Session, base: UniverseRead, part: pd.DataFrame, rules: Rules) -> PartResult:
    observed, failed = read_state(rt, base, part)
    stage(rt.progress, "diff", subjects=len(observed.universe))
    drift = diff(observed, rules)
    o = observed.subset(set(drift["subject_key"]))
    return PartResult(seen_of(observed.universe, observed.ketch, observed.braze), drift, failed,
                      {name: getattr(o, name) for name in STATE}, _print(observed))
