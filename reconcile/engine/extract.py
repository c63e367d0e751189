"""Extract: read Ketch and Braze for the universe into the frames of frames.py.

Braze state is read per profile (see profiles.py for how an address's profiles are
found). Per key type:
* email keys: every profile of each address with its own `email_subscribe`; group states
  from `subscription/status/get` by email (50 a request), and by external_id for the
  profiles of addresses shared by several profiles, so one subscribed profile is seen;
* external_id keys: `users/export/ids` 50 a request, then group states by external_id.
The unsubscribe list gives each address's opt-out time and the hard-bounce list (when the
key may read it) whether it is suppressed; neither is taken as any profile's state.
"""

from __future__ import annotations

from datetime import date
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

import pandas as pd

from reconcile.config import Config
from reconcile.engine.capabilities import Capabilities
from reconcile.engine.frames import conform, empty, isin
from reconcile.engine.identity import email_key, email_keys
from reconcile.engine.profiles import PROFILE_FIELDS, ProfileCache, ProfileReader
from reconcile.engine.sms import check_channels, email_topics, read_sms_groups, sms_addresses, sms_topics
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


def braze_lists(braze: BrazeListReads, start: date, end: date, cfg: Config, caps: Capabilities) -> BrazeLists:
    """Braze's email lists in [start, end]."""
    unsub = list(braze.email_unsubscribes(start, end)) if cfg.universe.braze_unsubscribes else []
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


def extract_ketch(ketch: KetchReads, universe: pd.DataFrame, cfg: Config, progress: Progress | None = None,
                  ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(ketch, ketch_topics, failed): identities whose lookup failed after every retry come
    back in `failed` (identity, reason) instead of stopping the run. They must not be read
    as "no record": the caller takes them out of this run and reports them."""
    purposes = {cfg.mapping.email_purpose: cfg.mapping.email_purpose_legal_basis} if cfg.mapping.email_purpose else None
    values = universe["identity"].astype(str).tolist()
    cb = (lambda done, total: progress("ketch", done, total)) if progress else None
    failed: list[dict[str, str]] = []

    def on_error(value: str, exc: Exception) -> None:
        if run_stopping(exc):  # a wrong organization code or base URL: every lookup would fail
            raise exc
        failed.append({"identity": value, "reason": f"Ketch lookup failed: {type(exc).__name__}: {exc}"[:300]})

    records = ketch.fetch_many(cfg.identity.ketch_space, values, purposes, progress=cb, on_error=on_error)
    if len(values) >= 10 and len(failed) > len(values) / 2:
        raise TransientApiError(f"Ketch lookups failed for {len(failed)} of {len(values)} subjects (first: "
                                f"{failed[0]['reason']}); not reconciling on partial data", service="ketch")
    ketch_df, topics = ketch_frames(records, universe, cfg)
    return ketch_df, topics, pd.DataFrame(failed, columns=["identity", "reason"])


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
    """Profiles already read by external id this run: the ids looked up (found or not) and
    the profile rows found (external_id, braze_id, email, email_subscribe)."""

    ids: set[str]
    profiles: pd.DataFrame


def extract_braze(ctx: BrazeRead, universe: pd.DataFrame, lists: BrazeLists, prefetched: Prefetched | None = None,
                  ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(braze, braze_groups, braze_profiles) for the universe."""
    if ctx.cfg.identity.braze_key == "email":
        profiles = _profiles_by_email(ctx, universe)
        _check_group_channels(ctx, universe, profiles)
        groups = _groups_email(ctx, universe, profiles)
        if sms_topics(ctx.cfg):  # never by email: by each profile's phone or external id
            sms = read_sms_groups(ctx.braze, sms_topics(ctx.cfg), sms_addresses(universe, profiles, ctx.cfg))
            groups = conform(pd.concat([groups, sms], ignore_index=True), "braze_groups") if len(sms) else groups
    else:
        profiles = _profiles_by_external_id(ctx, universe, prefetched)
        _check_group_channels(ctx, universe, profiles)
        found = isin(universe["subject_key"], profiles["subject_key"])
        groups = _groups(ctx, universe[found.to_numpy()], "external_id", "identity")
    return summarize(universe, profiles, lists), groups, profiles


def _check_group_channels(ctx: BrazeRead, universe: pd.DataFrame, profiles: pd.DataFrame) -> None:
    """A mapped group whose channel Braze names differently stops the run before anything
    is written (read with `subscription.groups.get`, from up to 50 of the subjects read)."""
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


def _profiles_by_email(ctx: BrazeRead, universe: pd.DataFrame) -> pd.DataFrame:
    reader = ProfileReader(ctx.braze, ctx.caps, ctx.cache, now=ctx.now, cache_days=ctx.cfg.braze.profile_cache_days,
                           segment_id=ctx.cfg.braze.segment_id, shared=ctx.shared_export)
    addresses = universe[["subject_key", "identity"]].rename(columns={"identity": "email"})
    return _check_states(reader.read(addresses, full_sweep=ctx.full_sweep))


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


def _groups(ctx: BrazeRead, rows: pd.DataFrame, id_type: str, id_col: str) -> pd.DataFrame:
    """Group state per (subject, mapped group) read by `id_type`; identifiers Braze does not
    know are `unknown`. An answer naming none of the identifiers asked about is malformed.
    Under email keys only the email groups are read here (SMS groups: sms.py)."""
    by_email = id_type == "email"
    ids = rows[id_col].astype(str)
    look = email_keys(ids) if by_email else ids
    frames = []
    for m in (email_topics(ctx.cfg) if ctx.cfg.identity.braze_key == "email" else ctx.cfg.mapping.topics):
        if not len(ids):
            break
        answer = ctx.braze.subscription_status_get(m.subscription_group_id, **{"emails" if by_email else
                                                                              "external_ids": ids.tolist()})
        status = pd.Series({(email_key(k) if by_email else k): v for k, v in answer.items()}, dtype=object)
        frames.append(pd.DataFrame({"subject_key": rows["subject_key"].to_numpy(),
                                    "group_id": m.subscription_group_id,
                                    "status": look.map(status).fillna("unknown").to_numpy()}))
    return conform(pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(), "braze_groups")


def _groups_email(ctx: BrazeRead, universe: pd.DataFrame, profiles: pd.DataFrame) -> pd.DataFrame:
    """By address for every address that has a profile; for addresses several profiles share,
    also by each profile's external_id, and a subject is subscribed to a group if any of its
    profiles is."""
    present = universe[isin(universe["subject_key"], profiles["subject_key"]).to_numpy()]
    by_address = _groups(ctx, present, "email", "identity")
    counts = profiles.groupby("subject_key")["braze_id"].size()
    shared = profiles[profiles["subject_key"].map(counts).fillna(0).gt(1).to_numpy()
                      & profiles["external_id"].notna().to_numpy()]
    if not len(shared):
        return by_address
    per_profile = _groups(ctx, shared, "external_id", "external_id")
    both = pd.concat([by_address, per_profile], ignore_index=True)
    rank = both["status"].astype(str).map({"subscribed": 2, "unsubscribed": 1}).fillna(0)
    best = both.assign(_r=rank).sort_values("_r", ascending=False, kind="stable")
    return conform(best.drop_duplicates(["subject_key", "group_id"]).drop(columns="_r"), "braze_groups")


def empty_braze() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    return empty("braze"), empty("braze_groups"), empty("braze_profiles")
