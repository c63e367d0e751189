"""Extract: read Ketch and Braze for the universe into the frames of frames.py.

Braze state is read per profile (see profiles.py for how an address's profiles are
found). Group states, per key type:
* with `subscription.groups.get` (the `users[]` answer): from the `GroupListing` of
  `subscription/user/status`, by email (the same requests that list each address's
  profiles) or by external_id (50 a request for the subjects that have a profile); nothing
  else is asked about a group the listing covers;
* otherwise, and for a subject whose profiles the listing does not show as read:
  `subscription/status/get`, one group a request, 50 identifiers; under email keys by
  address and by external_id for the profiles of addresses several profiles share, so one
  subscribed profile is seen; under external_id keys by external_id.
A subject is subscribed to a group if any of its profiles is. Verify reads back only what
was written (`read_back`). The unsubscribe list gives each address's opt-out time and the
hard-bounce list (when the key may read it) whether it is suppressed; neither is taken as
any profile's state.
"""
from __future__ import annotations

from datetime import date
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Mapping

import pandas as pd

from reconcile.config import Config, TopicMapping
from reconcile.engine.capabilities import Capabilities
from reconcile.engine.frames import Observed, conform, empty, isin
from reconcile.engine.identity import email_key, email_keys
from reconcile.engine.profiles import PROFILE_FIELDS, GroupListing, ProfileCache, ProfileRead, ProfileReader
from reconcile.engine.sms import (
    channel_mismatches, check_channels, profile_phones, read_sms_groups, sms_addresses, sms_topics,
)
from reconcile.errors import AuthError, DataError, FatalApiError, NotFound, TransientApiError
from reconcile.engine.ports import BrazeListReads, BrazeReads, KetchReads, SharedRows

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class BrazeLists:
    """Braze's address lists for a window: unsubscribes, and hard bounces when readable."""

    unsubscribed: pd.DataFrame  # email, unsubscribed_at
    bounced: pd.DataFrame  # email, hard_bounced_at
    bounces_known: bool  # False: the key may not read /email/hard_bounces (or the list is off)
    blocklisted_by_job: frozenset[str] = frozenset()  # address keys this job blocklisted, Braze confirming


def _list_frame(rows: list[dict[str, Any]], col: str) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["email", col])
    df[col] = pd.to_datetime(df[col], utc=True, errors="coerce", format="ISO8601")
    df["email"] = df["email"].astype("string")
    return df


def braze_lists(braze: BrazeListReads, start: date, end: date, cfg: Config, caps: Capabilities, *,
                unsubscribes: bool = True) -> BrazeLists:
    """Braze's email lists in [start, end] (the unsubscribe list only with `unsubscribes`)."""
    unsub = list(braze.email_unsubscribes(start, end)) if cfg.universe.braze_unsubscribes and unsubscribes else []
    bounced = caps.call("email.hard_bounces", lambda: list(braze.email_hard_bounces(start, end))) \
        if cfg.universe.braze_hard_bounces else None
    return BrazeLists(_list_frame(unsub, "unsubscribed_at"), _list_frame(bounced or [], "hard_bounced_at"),
                      bounced is not None)


def _times_for(keys: pd.Series, latest: pd.Series) -> pd.Series:
    """The time per key (NaT where none), also when `latest` is empty."""
    found = latest.reindex(pd.Index(keys.astype(object).to_numpy()))
    return pd.Series(pd.to_datetime(found.to_numpy(), utc=True), index=keys.index)


def _latest_by_key(df: pd.DataFrame, col: str) -> pd.Series:
    """address key -> latest time; an empty list gives an empty series of the right dtype."""
    if not len(df):
        return pd.Series(dtype="datetime64[ns, UTC]", index=pd.Index([], dtype="string"))
    keys = email_keys(df["email"])
    return df.assign(_k=keys).groupby("_k")[col].max()


# ----------------------------------------------------------------------------- Ketch


def choices(rec: Any, defaults_are_choices: bool = False) -> tuple[Any, Any]:
    """(consent, subscriptions) of a Ketch record that record a choice. An answer without
    `collectedAt` holds the jurisdiction's legal-basis defaults for an identity that made no
    choice: it is no record unless the tenant's policy reads defaults as choices
    (`policy.ketch_defaults_are_choices`)."""
    if rec is None:
        return None, None
    consent, subs = rec.consent, rec.subscriptions
    if defaults_are_choices:
        return consent, subs
    return (consent if consent is not None and consent.collected_at is not None else None,
            subs if subs is not None and subs.collected_at is not None else None)


def ketch_frames(records: dict[str, Any], universe: pd.DataFrame, cfg: Config) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Turn KetchRecord objects (keyed by identity) into the ketch and ketch_topics frames;
    defaults are not choices (`choices`)."""
    m = cfg.mapping
    rows, topics = [], []
    for key, identity in zip(universe["subject_key"], universe["identity"]):
        consent, subs = choices(records.get(identity), cfg.policy.ketch_defaults_are_choices)
        if consent is None and subs is None:
            continue
        controls = subs.controls if subs else {}
        rows.append({
            "subject_key": key, "has_record": True,
            "email_allowed": consent.purposes.get(m.email_purpose) if consent and m.email_purpose else None,
            "global_engaged": controls.get(m.global_control) == m.global_control_engaged,
            "blocklist_engaged": (bool(m.blocklist_control)
                                  and controls.get(m.blocklist_control) == m.global_control_engaged),
            "consent_collected_at": consent.collected_at if consent else None,
            "subs_collected_at": subs.collected_at if subs else None,
        })
        if subs:
            topics += [{"subject_key": key, "topic": t, "channel": c, "status": s} for (t, c), s in subs.topics.items()]
    return conform(pd.DataFrame(rows), "ketch"), conform(pd.DataFrame(topics), "ketch_topics")


def run_stopping(exc: Exception) -> bool:
    """Whether a failed Ketch lookup stops the whole run: a 404 (Ketch's paths are fixed, so
    the organization code or base URL is wrong), a 401 (something in front of the API asks
    for credentials the job does not have), a redirect or certificate failure (no status).
    Any other 4xx (a 400 for one identity, a 403 in Ketch's own error shape) fails that
    subject only; failures for more than half the subjects still stop the run."""
    if not isinstance(exc, FatalApiError):
        return False
    return isinstance(exc, (NotFound, AuthError)) or exc.status_code is None


KETCH_BATCH = 25_000  # identities read, then turned into frames, at a time


def extract_ketch(ketch: KetchReads, universe: pd.DataFrame, cfg: Config, progress: Progress | None = None,
                  ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(ketch, ketch_topics, failed): identities whose lookup failed after every retry come
    back in `failed` (identity, reason) instead of stopping the run. They must not be read
    as "no record": the caller takes them out of this run and reports them.

    The identities are read `KETCH_BATCH` at a time, each batch turned into frame rows
    before the next is read: a record held as objects costs about 1.7 KB, its frame row a
    small part of that, and a part of 200,000 subjects held whole as records added about
    350 MiB to a run's peak. The client keeps its pace and connections across batches."""
    identities = universe["identity"].astype(str).tolist()
    total = len(identities)
    ketch_parts, topic_parts = [], []
    failures: list[dict[str, str]] = []
    for start in range(0, max(total, 1), KETCH_BATCH):
        cb = (lambda done, _n, at=start: progress("ketch", at + done, total)) if progress else None
        records = lookup_records(ketch, identities[start:start + KETCH_BATCH], cfg, cb, failures)
        ketch_df, topics = ketch_frames(records, universe.iloc[start:start + KETCH_BATCH], cfg)
        del records
        ketch_parts.append(ketch_df)
        topic_parts.append(topics)
    failed = judged_failures(total, failures)
    return (conform(pd.concat(ketch_parts, ignore_index=True), "ketch"),
            conform(pd.concat(topic_parts, ignore_index=True), "ketch_topics"), failed)


def fetch_ketch(ketch: KetchReads, values: list[str], cfg: Config, progress: Progress | None = None,
                ) -> tuple[dict[str, Any], pd.DataFrame]:
    """(KetchRecords keyed by identity, failed): `extract_ketch`'s reads, before the frames."""
    cb = (lambda done, total: progress("ketch", done, total)) if progress else None
    failures: list[dict[str, str]] = []
    records = lookup_records(ketch, values, cfg, cb, failures)
    return records, judged_failures(len(values), failures)


def lookup_records(ketch: KetchReads, values: list[str], cfg: Config, cb: Callable[[int, int], None] | None,
             failed: list[dict[str, str]]) -> dict[str, Any]:
    """Records of `values` by identity; each identity whose lookup failed is added to `failed`."""
    purposes = {cfg.mapping.email_purpose: cfg.mapping.email_purpose_legal_basis} if cfg.mapping.email_purpose else None

    def on_error(value: str, exc: Exception) -> None:
        if run_stopping(exc):  # a wrong organization code or base URL: every lookup would fail
            raise exc
        failed.append({"identity": value, "reason": f"Ketch lookup failed: {type(exc).__name__}: {exc}"[:300]})

    return dict(ketch.fetch_many(cfg.identity.ketch_space, values, purposes, progress=cb, on_error=on_error))


def judged_failures(asked: int, failed: list[dict[str, str]]) -> pd.DataFrame:
    """The failures as a frame (identity, reason); raises when more than half of the lookups failed."""
    if asked >= 10 and len(failed) > asked / 2:
        raise TransientApiError(f"Ketch lookups failed for {len(failed)} of {asked} subjects (first: "
                                f"{failed[0]['reason']}); not reconciling on partial data", service="ketch")
    return pd.DataFrame(failed, columns=["identity", "reason"])


# ----------------------------------------------------------------------------- Braze

EMAIL_RANK = {"unsubscribed": 0, "subscribed": 1, "opted_in": 2}
_BY_RANK = {v: k for k, v in EMAIL_RANK.items()}


@dataclass(frozen=True)
class BrazeRead:
    """What a Braze read needs besides the universe: the client, the key's known
    capabilities, the address -> profiles cache, the time, and whether this is a full sweep."""

    braze: BrazeReads
    cfg: Config
    caps: Capabilities
    cache: ProfileCache
    now: datetime
    full_sweep: bool = False
    checked: set[str] = field(default_factory=set, compare=False)  # once-per-run checks done ("channels")
    shared_export: SharedRows | None = None  # the run's or sweep's SharedExport (full sweeps with braze.segment_id)


@dataclass(frozen=True)
class Prefetched:
    """Profiles already read by external id this run: the ids looked up (found or not), the
    profile rows found (external_id, braze_id, email, email_subscribe), and the group states
    already listed for some of them (a `GroupListing` whose subject_key is the external id)."""

    ids: set[str]
    profiles: pd.DataFrame
    listing: GroupListing | None = None


def extract_braze(ctx: BrazeRead, universe: pd.DataFrame, lists: BrazeLists, prefetched: Prefetched | None = None,
                  ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(braze, braze_groups, braze_profiles) for the universe."""
    if ctx.cfg.identity.braze_key == "email":
        read = _profiles_by_email(ctx, universe)
        profiles, listing = _check_states(read.profiles), read.listing
    else:
        profiles = _profiles_by_external_id(ctx, universe, prefetched)
        listing = _listing_by_external_id(ctx, universe, profiles, prefetched.listing if prefetched else None)
    _check_group_channels(ctx, universe, profiles, listing)
    groups = read_groups(ctx, universe, profiles, listing)
    return summarize(universe, profiles, lists), groups, profiles


def read_back(ctx: BrazeRead, before: Observed, lists: BrazeLists, profiles_of: set[str],
              groups_of: Mapping[str, set[str]]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(braze, braze_groups, braze_profiles) of `before`'s subjects with only what was written
    read again: the profiles (existence, `email_subscribe`) of `profiles_of`, and each group's
    state for the subjects `groups_of` names for it. Everything else is `before`'s."""
    universe = before.universe
    grouped = set().union(*groups_of.values()) if groups_of else set()
    rows = universe[isin(universe["subject_key"], profiles_of | grouped).to_numpy()]
    listing: GroupListing | None = None
    if ctx.cfg.identity.braze_key == "email":
        read = _reader(ctx).enumerate(rows[["subject_key", "identity"]].rename(columns={"identity": "email"}),
                                      full_sweep=False, export=profiles_of)
        fresh, listing = _check_states(read.profiles), read.listing
    else:
        mine = rows[isin(rows["subject_key"], profiles_of).to_numpy()]
        fresh = _profiles_by_external_id(ctx, mine, None) if len(mine) else empty("braze_profiles")
    old = before.braze_profiles
    profiles = conform(pd.concat([old[~isin(old["subject_key"], profiles_of).to_numpy()], fresh],
                                 ignore_index=True), "braze_profiles")
    if ctx.cfg.identity.braze_key != "email" and grouped:
        listing = _listing_by_external_id(ctx, universe[isin(universe["subject_key"], grouped).to_numpy()],
                                          profiles, None)
    if listing is not None:
        _check_group_channels(ctx, universe, profiles, listing)
    fresh_groups = read_groups(ctx, universe[isin(universe["subject_key"], grouped).to_numpy()], profiles, listing,
                               wanted=groups_of) if grouped else empty("braze_groups")
    kept = before.braze_groups
    written = pd.Series(False, index=kept.index)
    for group_id, keys in groups_of.items():
        written |= (kept["group_id"] == group_id).fillna(False) & isin(kept["subject_key"], keys)
    groups = conform(pd.concat([kept[~written.to_numpy()], fresh_groups], ignore_index=True), "braze_groups")
    return summarize(universe, profiles, lists), groups, profiles


def _check_group_channels(ctx: BrazeRead, universe: pd.DataFrame, profiles: pd.DataFrame,
                          listing: GroupListing | None) -> None:
    """A mapped group whose channel Braze names differently stops the run before anything
    is written: from the channels the group listing names, or else (once a run, with
    `subscription.groups.get`) from up to 50 of the subjects read."""
    if listing is not None:
        wrong = channel_mismatches(ctx.cfg, dict(listing.channels))
    else:
        held = universe[isin(universe["subject_key"], profiles["subject_key"]).to_numpy()]
        if "channels" in ctx.checked or not len(held):
            return
        ctx.checked.add("channels")
        id_field = "email" if ctx.cfg.identity.braze_key == "email" else "external_id"
        wrong = check_channels(ctx.braze, ctx.caps, ctx.cfg, id_field, held["identity"].astype(str).head(50).tolist())
    if wrong:
        raise DataError("subscription group channels do not match the mapping: " + "; ".join(wrong))


def _check_states(profiles: pd.DataFrame) -> pd.DataFrame:
    """A missing email_subscribe is Braze's default (`subscribed`); an undocumented value is a
    malformed answer, never a guess."""
    state = profiles["email_subscribe"].astype("string").str.strip().str.lower()
    bad = state.notna() & ~state.isin(list(EMAIL_RANK)).fillna(False)
    if bad.any():
        raise DataError(f"braze /users/export/ids: email_subscribe {state[bad].iloc[0]!r} is not one of "
                        "opted_in, subscribed, unsubscribed; refusing to guess a profile's global state")
    return profiles.assign(email_subscribe=state.fillna("subscribed"))


def _reader(ctx: BrazeRead) -> ProfileReader:
    return ProfileReader(ctx.braze, ctx.caps, ctx.cache, now=ctx.now, cache_days=ctx.cfg.braze.profile_cache_days,
                         segment_id=ctx.cfg.braze.segment_id, shared=ctx.shared_export)


def _profiles_by_email(ctx: BrazeRead, universe: pd.DataFrame) -> ProfileRead:
    addresses = universe[["subject_key", "identity"]].rename(columns={"identity": "email"})
    return _reader(ctx).enumerate(addresses, full_sweep=ctx.full_sweep)


EXPORT_PIECE = 10_000  # external ids exported, then turned into a frame, at a time


def profiles_by_external_id(ctx: BrazeRead, ids: pd.Series) -> pd.DataFrame:
    """Profile rows (external_id, braze_id, email, email_subscribe) for external ids, 50 a
    request. The answers are turned into compact string columns every `EXPORT_PIECE` ids,
    so a million ids never sit in memory as decoded JSON at once."""
    values = ids.astype(str).tolist()
    frames = []
    for start in range(0, len(values), EXPORT_PIECE):
        result = ctx.braze.export_ids(values[start:start + EXPORT_PIECE], PROFILE_FIELDS)
        users = pd.DataFrame(result.users, columns=PROFILE_FIELDS).astype("string")
        frames.append(users[users["external_id"].notna().to_numpy()])
        del result
    if not frames:
        return pd.DataFrame(columns=PROFILE_FIELDS).astype("string")
    users = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    return users.drop_duplicates("external_id").reset_index(drop=True)


def _profiles_by_external_id(ctx: BrazeRead, universe: pd.DataFrame, prefetched: Prefetched | None) -> pd.DataFrame:
    ids = universe["identity"].astype(str)
    if prefetched is not None:
        fresh = profiles_by_external_id(ctx, ids[~isin(ids, prefetched.ids)])
        users = pd.concat([prefetched.profiles[PROFILE_FIELDS], fresh],
                          ignore_index=True).drop_duplicates("external_id")
    else:
        users = profiles_by_external_id(ctx, ids)
    key_of = universe.set_index("identity")["subject_key"]
    users = users[isin(users["external_id"], key_of.index)]
    out = users.assign(subject_key=users["external_id"].map(key_of))
    return _check_states(conform(out[["subject_key", *PROFILE_FIELDS]], "braze_profiles"))


def _listing_by_external_id(ctx: BrazeRead, universe: pd.DataFrame, profiles: pd.DataFrame,
                            known: GroupListing | None) -> GroupListing | None:
    """Under external_id keys, the group listing of the subjects that have a profile: what
    `known` (keyed by external id) already lists, and `/subscription/user/status` by
    external id for the others (50 a request); None without the permission or for the
    flat answer, when nothing was listed before."""
    found = universe[isin(universe["subject_key"], profiles["subject_key"]).to_numpy()]
    key_of = dict(zip(found["identity"].astype(str), found["subject_key"].astype(str)))
    before = known.rekeyed(key_of) if known is not None else None
    need = found[~isin(found["subject_key"], before.asked if before is not None else set()).to_numpy()]
    ids = need["identity"].astype(str).tolist()
    if not ids or not ctx.caps.available("subscription.groups.get") \
            or getattr(ctx.braze, "user_status_flat", False):
        return before
    refs = ctx.caps.call("subscription.groups.get", lambda: ctx.braze.user_profiles_by_external_id(ids))
    if refs is None:
        return before
    listed = GroupListing.of(((key_of[r.external_id], r) for r in refs if r.external_id in key_of),
                             need["subject_key"].astype(str))
    return listed if before is None else before.merged(listed)


def summarize(universe: pd.DataFrame, profiles: pd.DataFrame, lists: BrazeLists) -> pd.DataFrame:
    """One row per subject from its profiles and the address lists."""
    b = universe[["subject_key", "email"]].copy()
    if len(profiles):
        rank = profiles["email_subscribe"].map(EMAIL_RANK).astype("Int8")
        agg = profiles.assign(_r=rank).groupby("subject_key").agg(
            _n=("braze_id", "size"), _max=("_r", "max"), _min=("_r", "min"), _email=("email", "first"))
        b = b.merge(agg, left_on="subject_key", right_index=True, how="left")
    else:
        na = pd.Series(pd.NA, index=b.index, dtype=object)
        b = b.assign(_n=0, _max=na, _min=na, _email=na)
    b["profile_count"] = b["_n"].fillna(0).astype("int32")
    b["exists"] = b["profile_count"] > 0
    b["email_subscribe"] = b["_max"].map(_BY_RANK, na_action="ignore")
    b["email_subscribe_min"] = b["_min"].map(_BY_RANK, na_action="ignore")
    b["email"] = b["_email"].astype("string").fillna(b["email"].astype("string"))
    ekeys = email_keys(b["email"])
    b["unsubscribed_at"] = _times_for(ekeys, _latest_by_key(lists.unsubscribed, "unsubscribed_at"))
    listed = isin(ekeys, _latest_by_key(lists.bounced, "hard_bounced_at").index)
    if lists.bounces_known:
        b["blocklisted"] = pd.array(listed.to_numpy(), dtype="boolean")
    else:  # unknown, except where this job's own confirmed blocklist says so
        known = pd.Series(pd.NA, index=b.index, dtype="boolean")
        if lists.blocklisted_by_job:
            known[isin(ekeys, lists.blocklisted_by_job).to_numpy()] = True
        b["blocklisted"] = known.array
    return conform(b[["subject_key", "exists", "profile_count", "email_subscribe", "email_subscribe_min",
                      "unsubscribed_at", "blocklisted", "email"]], "braze")


GROUP_RANK = {"subscribed": 2, "unsubscribed": 1}
_BY_GROUP_RANK = {2: "subscribed", 1: "unsubscribed", 0: "unknown"}


def read_groups(ctx: BrazeRead, universe: pd.DataFrame, profiles: pd.DataFrame, listing: GroupListing | None,
                wanted: Mapping[str, set[str]] | None = None) -> pd.DataFrame:
    """State per (subject with a profile, mapped group), or only for the subjects `wanted`
    names per group. A subject whose profiles the listing shows as read (same count, same
    external ids) takes its states from it; the others are read per group with
    `/subscription/status/get`. Several profiles: subscribed if any is, else unsubscribed if
    any is, else unknown."""
    present = universe[isin(universe["subject_key"], profiles["subject_key"]).to_numpy()]
    covered = covered_by(listing, present["subject_key"], profiles) if listing is not None else set()
    listed_pairs, frames = [], []
    for m in ctx.cfg.mapping.topics:
        rows = present if wanted is None else present[isin(present["subject_key"],
                                                           wanted.get(m.subscription_group_id, set())).to_numpy()]
        if not len(rows):
            continue
        on_list = isin(rows["subject_key"], covered).to_numpy()
        listed_pairs.append(pd.DataFrame({"subject_key": rows["subject_key"][on_list].astype("string"),
                                          "group_id": m.subscription_group_id}))
        rest = rows[~on_list]
        if len(rest):
            frames.append(_read_group(ctx, m, rest, profiles))
    if listing is not None and listed_pairs:
        pairs = pd.concat(listed_pairs, ignore_index=True)
        if len(pairs):
            frames.append(_listed_groups(ctx, listing, pairs, universe))
    return conform(pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(), "braze_groups")


def covered_by(listing: GroupListing, keys: pd.Series, profiles: pd.DataFrame) -> set[str]:
    """The subjects among `keys` the listing answers for whole: asked, and listed with the
    profiles that were read (as many, and the same external ids)."""
    asked = keys[isin(keys, listing.asked).to_numpy()].astype(str)
    if not len(asked):
        return set()
    wanted = set(asked)
    listed = listing.profiles[isin(listing.profiles["subject_key"], wanted).to_numpy()]
    read = profiles[isin(profiles["subject_key"], wanted).to_numpy()]
    n_listed = listed.groupby("subject_key").size()
    n_read = read.groupby("subject_key").size()
    counts = pd.DataFrame({"listed": n_listed, "read": n_read}).fillna(0)
    differ = set(counts.index[(counts["listed"] != counts["read"]).to_numpy()].astype(str))
    a = listed.loc[listed["external_id"].notna().to_numpy(), ["subject_key", "external_id"]].astype(str)
    b = read.loc[read["external_id"].notna().to_numpy(), ["subject_key", "external_id"]].astype(str)
    both = a.drop_duplicates().merge(b.drop_duplicates(), how="outer", indicator=True)
    differ |= set(both.loc[(both["_merge"] != "both").to_numpy(), "subject_key"])
    return wanted - differ


def _listed_groups(ctx: BrazeRead, listing: GroupListing, pairs: pd.DataFrame, universe: pd.DataFrame) -> pd.DataFrame:
    """The (subject, group) pairs' states from the listing. Under email keys an SMS group
    counts only the profiles it can be addressed by (a valid number, or an external id; see
    sms.py), and a number from the identity list that none of them holds is read by phone."""
    cfg = ctx.cfg
    sms = {m.subscription_group_id for m in sms_topics(cfg)} if cfg.identity.braze_key == "email" else set()
    profiles = listing.profiles
    reach = pd.Series(True, index=profiles.index)
    if sms:
        phones = listed_phones(profiles, cfg)
        reach = phones.notna() | profiles["external_id"].notna()
    states = listing.states.merge(profiles[["profile", "subject_key"]].assign(_reach=reach.to_numpy()), on="profile")
    counts = ~isin(states["group_id"], sms).to_numpy() | states["_reach"].to_numpy(dtype=bool)
    states = states[counts]
    rank = states["status"].astype(str).map(GROUP_RANK).fillna(0).astype("int8")
    best = states.assign(_r=rank).groupby(["subject_key", "group_id"])["_r"].max()
    keys = pd.MultiIndex.from_arrays([pairs["subject_key"].astype(str), pairs["group_id"].astype(str)])
    found = best.reindex(keys).fillna(0).astype("int8").to_numpy()
    out = pd.DataFrame({"subject_key": pairs["subject_key"].to_numpy(), "group_id": pairs["group_id"].to_numpy(),
                        "_r": found})
    extra = _unlisted_phones(ctx, listing, pairs, universe, sms)
    if len(extra):
        more = extra.assign(_r=extra["status"].astype(str).map(GROUP_RANK).fillna(0).astype("int8"))
        out = pd.concat([out, more[["subject_key", "group_id", "_r"]]], ignore_index=True)
        out = out.groupby(["subject_key", "group_id"], sort=False)["_r"].max().reset_index()
    out["status"] = out["_r"].map(_BY_GROUP_RANK)
    return out[["subject_key", "group_id", "status"]]


def listed_phones(profiles: pd.DataFrame, cfg: Config) -> pd.Series:
    """Each listed profile's number in E.164 when numbers address SMS groups
    (`identity.phone_sources` has "braze"; NA otherwise or when it is not a valid number)."""
    if "braze" not in cfg.identity.phone_sources:
        return pd.Series(pd.NA, index=profiles.index, dtype="string")
    return profile_phones(profiles, cfg.identity.phone_region)


def _unlisted_phones(ctx: BrazeRead, listing: GroupListing, pairs: pd.DataFrame, universe: pd.DataFrame,
                     sms: set[str]) -> pd.DataFrame:
    """SMS group states by the identity list's number (`phone_sources` "universe") for the
    subjects none of whose listed profiles holds that number."""
    cfg = ctx.cfg
    if not sms or "universe" not in cfg.identity.phone_sources or "phone" not in universe.columns:
        return empty("braze_groups")
    asked = pairs[isin(pairs["group_id"], sms).to_numpy()]
    rows = universe[isin(universe["subject_key"], set(asked["subject_key"])).to_numpy()
                    & universe["phone"].notna().to_numpy()]
    if not len(rows):
        return empty("braze_groups")
    held = listing.profiles.assign(_phone=listed_phones(listing.profiles, cfg))
    held_pairs = set(zip(held["subject_key"].astype(str), held["_phone"].astype(str)))
    extra = [(k, ph) for k, ph in zip(rows["subject_key"].astype(str), rows["phone"].astype(str))
             if (k, ph) not in held_pairs]
    if not extra:
        return empty("braze_groups")
    addresses = pd.DataFrame(extra, columns=["subject_key", "value"]).assign(id_type="phone").astype("string")
    frames = []
    for m in sms_topics(cfg):
        mine = addresses[isin(addresses["subject_key"],
                              set(asked.loc[(asked["group_id"] == m.subscription_group_id).to_numpy(),
                                            "subject_key"])).to_numpy()]
        if len(mine):
            frames.append(read_sms_groups(ctx.braze, (m,), mine))
    return pd.concat(frames, ignore_index=True) if frames else empty("braze_groups")


def _read_group(ctx: BrazeRead, m: TopicMapping, rows: pd.DataFrame, profiles: pd.DataFrame) -> pd.DataFrame:
    """One group's state for these subjects with `/subscription/status/get`: under email keys
    by address (and by external id for addresses several profiles share; SMS groups by each
    profile's number or external id, sms.py), under external_id keys by external id."""
    if ctx.cfg.identity.braze_key != "email":
        return _groups(ctx, rows, "external_id", "identity", (m,))
    mine = profiles[isin(profiles["subject_key"], set(rows["subject_key"])).to_numpy()]
    if m.sms:
        return read_sms_groups(ctx.braze, (m,), sms_addresses(rows, mine, ctx.cfg))
    return _groups_email(ctx, rows, mine, (m,))


def _groups(ctx: BrazeRead, rows: pd.DataFrame, id_type: str, id_col: str,
            topics: tuple[TopicMapping, ...]) -> pd.DataFrame:
    """Group state per (subject, group of `topics`) read by `id_type`; identifiers Braze does
    not know are `unknown`. An answer naming none of the identifiers asked about is malformed."""
    by_email = id_type == "email"
    ids = rows[id_col].astype(str)
    look = email_keys(ids) if by_email else ids
    frames = []
    for m in topics:
        if not len(ids):
            break
        answer = ctx.braze.subscription_status_get(m.subscription_group_id, **{"emails" if by_email else
                                                                              "external_ids": ids.tolist()})
        status = pd.Series({(email_key(k) if by_email else k): v for k, v in answer.items()}, dtype=object)
        frames.append(pd.DataFrame({"subject_key": rows["subject_key"].to_numpy(),
                                    "group_id": m.subscription_group_id,
                                    "status": look.map(status).fillna("unknown").to_numpy()}))
    return conform(pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(), "braze_groups")


def _groups_email(ctx: BrazeRead, universe: pd.DataFrame, profiles: pd.DataFrame,
                  topics: tuple[TopicMapping, ...]) -> pd.DataFrame:
    """By address for every address that has a profile; for addresses several profiles share,
    also by each profile's external_id, and a subject is subscribed to a group if any of its
    profiles is."""
    present = universe[isin(universe["subject_key"], profiles["subject_key"]).to_numpy()]
    by_address = _groups(ctx, present, "email", "identity", topics)
    counts = profiles.groupby("subject_key")["braze_id"].size()
    shared = profiles[profiles["subject_key"].map(counts).fillna(0).gt(1).to_numpy()
                      & profiles["external_id"].notna().to_numpy()]
    if not len(shared):
        return by_address
    per_profile = _groups(ctx, shared, "external_id", "external_id", topics)
    both = pd.concat([by_address, per_profile], ignore_index=True)
    rank = both["status"].astype(str).map(GROUP_RANK).fillna(0)
    best = both.assign(_r=rank).sort_values("_r", ascending=False, kind="stable")
    return conform(best.drop_duplicates(["subject_key", "group_id"]).drop(columns="_r"), "braze_groups")


def empty_braze() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    return empty("braze"), empty("braze_groups"), empty("braze_profiles")
