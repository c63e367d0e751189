"""Which Braze profiles hold an address, their own global state, and (with
`subscription.groups.get`) every group state of each (semantics §1).

Braze state is per profile: several profiles may share one email, and an address-level
answer (the unsubscribe list, `subscription/status/get` by email) is evidence about the
address, never proof about each profile. So the job enumerates the profiles of every
address it checks and reads each one's `email_subscribe`.

With `subscription.groups.get` (and the `users[]` answer), one `subscription/user/status`
request lists every profile of 50 addresses with its external_id and all its group states
(`GroupListing`): nothing else is asked about the group states. Each listed profile's
`email_subscribe` is then read by external_id, 50 a request; only an address where a listed
profile has no external_id is exported by `email_address` (one address a request). An
address the listing shows without a profile has none: it is not read again. A full sweep
with `braze.segment_id` and `users.export.segment` takes the profiles from the one bulk
export of the run or sweep (`shared_export.py`) and the group states from the listing.

Without the permission, or when `/subscription/user/status` answers in the flat shape that
cannot tell profiles apart, the eight partner permissions' path reads, cheapest first:

1. a full sweep with `braze.segment_id` and `users.export.segment`: the bulk export (when
   Braze cannot deliver it, own bucket, failed or busy, the reads below are taken);
2. addresses whose profiles were enumerated recently (kept in the state store) and all
   carry an external_id: `users/export/ids` by external_id, 50 a request;
3. what is left: `users/export/ids` by `email_address`, one address a request (a few in
   flight, `braze.read_concurrency`).

A cached address is enumerated again once a `braze.profile_cache_days` cycle passed its
refresh point: each address has a fixed point in the cycle (a stable hash of its key), so
daily runs re-enumerate about 1/profile_cache_days of the cached addresses a day instead of
all of them on one day. An address whose cached profiles moved away (email changed,
profile deleted) is read again the authoritative way. Every enumeration refreshes the cache.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable, Mapping, Protocol

import numpy as np
import numpy.typing as npt
import pandas as pd

from reconcile.clients.braze_profiles import PROFILE_FIELDS as BRAZE_PROFILE_FIELDS
from reconcile.clients.braze_profiles import ProfileRef
from reconcile.clients.braze_results import ExportUnavailable
from reconcile.engine.capabilities import Capabilities
from reconcile.engine.frames import conform, isin
from reconcile.engine.identity import email_key, email_keys
from reconcile.errors import DataError
from reconcile.engine.ports import BrazeReads, SharedRows

log = logging.getLogger(__name__)
# also the braze_profiles frame's columns (frames.py); `phone` addresses SMS groups (sms.py)
PROFILE_FIELDS = list(dict.fromkeys([*BRAZE_PROFILE_FIELDS, "phone"]))
CACHE_COLUMNS = ["email_key", "braze_id", "external_id"]


class ProfileCache(Protocol):
    """The address -> profiles mapping kept between runs."""

    def lookup(self, email_keys: Iterable[str]) -> pd.DataFrame:
        """Rows (email_key, braze_id, external_id, last_seen_at) for these addresses."""

    def replace(self, email_keys: Iterable[str], rows: pd.DataFrame) -> None:
        """These addresses now hold exactly `rows` (email_key, braze_id, external_id)."""

    def forget(self, braze_ids: Iterable[str]) -> None:
        """Profiles that no longer exist or moved to another address."""


class MemoryCache:
    """A ProfileCache kept in memory (tests, one-off reads)."""

    def __init__(self, clock: Any = None):
        self.rows = pd.DataFrame(columns=[*CACHE_COLUMNS, "last_seen_at"])
        self.clock = clock or (lambda: pd.Timestamp.now(tz="UTC").to_pydatetime())

    def lookup(self, email_keys: Iterable[str]) -> pd.DataFrame:
        return self.rows[isin(self.rows["email_key"], set(email_keys))].reset_index(drop=True)

    def replace(self, email_keys: Iterable[str], rows: pd.DataFrame) -> None:
        keep = self.rows[~isin(self.rows["email_key"], set(email_keys))]
        new = rows[CACHE_COLUMNS].assign(last_seen_at=self.clock())
        self.rows = pd.concat([keep, new], ignore_index=True) if len(keep) else new.reset_index(drop=True)

    def forget(self, braze_ids: Iterable[str]) -> None:
        self.rows = self.rows[~isin(self.rows["braze_id"], set(braze_ids))].reset_index(drop=True)


def _users_frame(users: list[dict[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(users, columns=PROFILE_FIELDS)
    for col in PROFILE_FIELDS:
        df[col] = df[col].astype("string")
    df["email_key"] = email_keys(df["email"])
    return df


LISTED_COLUMNS = ["profile", "subject_key", "external_id", "phone"]
STATE_COLUMNS = ["profile", "group_id", "status"]


@dataclass(frozen=True)
class GroupListing:
    """What `/subscription/user/status` (the `users[]` answer) said about the subjects asked:
    one row per listed profile (`profile` numbers it within the listing; subject_key,
    external_id and phone as Braze answered, NA when it has none), every group state it
    listed for each profile, and each listed group's channel. A subject asked about and
    listed with no profile has none."""

    profiles: pd.DataFrame  # LISTED_COLUMNS
    states: pd.DataFrame  # STATE_COLUMNS
    asked: frozenset[str]
    channels: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, pairs: Iterable[tuple[str, ProfileRef]], asked: Iterable[str]) -> "GroupListing":
        """From (subject key, ProfileRef) pairs, each pair one listed profile."""
        listed: list[tuple[int, str, str | None, str | None]] = []
        states: list[tuple[int, str, str]] = []
        channels: dict[str, str] = {}
        for n, (key, ref) in enumerate(pairs):
            listed.append((n, key, ref.external_id, ref.phone))
            states.extend((n, gid, state) for gid, state in ref.groups.items())
            channels.update(ref.channels)
        profiles = pd.DataFrame(listed, columns=LISTED_COLUMNS)
        for col in LISTED_COLUMNS[1:]:
            profiles[col] = profiles[col].astype("string")
        frame = pd.DataFrame(states, columns=STATE_COLUMNS)
        frame["group_id"] = frame["group_id"].astype("string")
        frame["status"] = frame["status"].astype("string")
        return cls(profiles.astype({"profile": "int64"}), frame.astype({"profile": "int64"}), frozenset(asked),
                   channels)

    def rekeyed(self, key_of: Mapping[str, str]) -> "GroupListing":
        """The profiles with an external_id that `key_of` maps to a subject key, each listed
        under that key (external_id keys: a listing by address read for external ids)."""
        xid = self.profiles["external_id"]
        keys = xid.map(lambda x: key_of.get(x) if isinstance(x, str) else None).astype("string")
        held = keys.notna().to_numpy()
        profiles = self.profiles[held].assign(subject_key=keys[held])
        states = self.states[isin(self.states["profile"], set(profiles["profile"])).to_numpy()]
        return GroupListing(profiles.reset_index(drop=True), states.reset_index(drop=True),
                            frozenset(profiles["subject_key"].astype(str)), self.channels)

    def merged(self, other: "GroupListing | None") -> "GroupListing":
        """This listing and `other` (of other subjects) as one."""
        if other is None:
            return self
        shift = int(self.profiles["profile"].max()) + 1 if len(self.profiles) else 0
        profiles = pd.concat([self.profiles, other.profiles.assign(profile=other.profiles["profile"] + shift)],
                             ignore_index=True)
        states = pd.concat([self.states, other.states.assign(profile=other.states["profile"] + shift)],
                           ignore_index=True)
        return GroupListing(profiles, states, self.asked | other.asked, {**self.channels, **other.channels})


@dataclass(frozen=True)
class ProfileRead:
    """The profiles read for a set of addresses (braze_profiles rows, PROFILE_FIELDS and
    subject_key), and the group listing when `/subscription/user/status` gave one."""

    profiles: pd.DataFrame
    listing: GroupListing | None = None


REFRESH_HASH_KEY = "reconcile-cache1"  # 16 bytes: each address's point in the refresh cycle


def refresh_due(keys: pd.Series, last_seen: pd.Series, now: datetime, cycle_days: float) -> npt.NDArray[np.bool_]:
    """Whether each cached address is due to be enumerated again: its refresh point (a fixed
    offset into every `cycle_days` cycle, from a stable hash of the address key) passed since
    it was last enumerated. An address is enumerated once a cycle, and the addresses of one
    day's run spread over the whole cycle. Unknown times are due."""
    if cycle_days <= 0 or not len(keys):
        return np.ones(len(keys), dtype=bool)
    cycle = cycle_days * 86400.0
    hashed = pd.util.hash_pandas_object(keys.astype(str).reset_index(drop=True), index=False,
                                        hash_key=REFRESH_HASH_KEY).to_numpy()
    phase = hashed.astype(np.float64) / 2.0 ** 64 * cycle
    seen = pd.to_datetime(last_seen, utc=True, errors="coerce", format="ISO8601").reset_index(drop=True)
    seen_s = ((seen - pd.Timestamp(0, tz="UTC")).dt.total_seconds()).to_numpy(dtype=np.float64, na_value=np.nan)
    now_s = pd.Timestamp(now).timestamp()
    with np.errstate(invalid="ignore"):
        passed = np.floor((now_s - phase) / cycle) > np.floor((seen_s - phase) / cycle)
    return np.asarray(passed | np.isnan(seen_s), dtype=bool)


class ProfileReader:
    """Reads the profiles of a set of addresses (see the module doc for the order)."""

    def __init__(self, braze: BrazeReads, caps: Capabilities, cache: ProfileCache, *, now: datetime,
                 cache_days: float, segment_id: str | None = None, shared: SharedRows | None = None):
        """`shared`: the run's or sweep's `SharedExport` (one export for every part and
        worker); without it a full sweep with `segment_id` starts its own export."""
        self.braze, self.caps, self.cache = braze, caps, cache
        self.now, self.cache_days = now, cache_days
        self.segment_id = segment_id
        self.shared = shared

    def read(self, addresses: pd.DataFrame, *, full_sweep: bool) -> pd.DataFrame:
        """addresses: subject_key (email key), email (as sent). Returns one row per profile
        found: subject_key, braze_id, external_id, email, email_subscribe."""
        return self.enumerate(addresses, full_sweep=full_sweep).profiles

    def enumerate(self, addresses: pd.DataFrame, *, full_sweep: bool, export: Iterable[str] | None = None,
                  xid_only: bool = False) -> ProfileRead:
        """The profiles of `addresses` (subject_key, email) and, with `subscription.groups.get`,
        the group listing of all of them. `export`: the subject keys whose profiles are read
        (all when None; the others are only listed). `xid_only`: profiles without an
        external_id are listed, never exported (external_id keys check only profiles with one)."""
        todo = addresses[["subject_key", "email"]].drop_duplicates("subject_key")
        keys = set(todo["subject_key"])
        need = todo if export is None else todo[isin(todo["subject_key"], set(export)).to_numpy()]
        bulk = None
        if full_sweep and (self.shared is not None or self.segment_id) and len(todo):
            bulk = self._segment(keys)
        listing = self._listing(todo) if len(todo) else None
        if bulk is not None:
            return ProfileRead(self._attach(need, bulk), listing)
        if listing is not None:
            return ProfileRead(self._attach(need, self._from_listing(need, listing, xid_only)), listing)
        found: list[pd.DataFrame] = []
        if len(need):
            cached, need_rest = self._cached(need)
            found.append(cached)
            if len(need_rest):
                found.append(self._one_by_one(need_rest))
        profiles = pd.concat([f for f in found if len(f)], ignore_index=True) if any(len(f) for f in found) \
            else _users_frame([])
        return ProfileRead(self._attach(need, profiles), None)

    @staticmethod
    def _attach(todo: pd.DataFrame, profiles: pd.DataFrame) -> pd.DataFrame:
        hits = profiles[isin(profiles["email_key"], set(todo["subject_key"]))]
        out = hits.rename(columns={"email_key": "subject_key"})[["subject_key", *PROFILE_FIELDS]]
        return conform(out.drop_duplicates("braze_id").reset_index(drop=True), "braze_profiles")

    # -- the group listing ---------------------------------------------------------------
    def _listing(self, todo: pd.DataFrame) -> GroupListing | None:
        """Every profile of these addresses with all its group states, 50 addresses a
        request; None without the permission or for the flat answer."""
        if not self.caps.available("subscription.groups.get") or getattr(self.braze, "user_status_flat", False):
            return None
        emails = todo["email"].astype(str).tolist()
        refs = self.caps.call("subscription.groups.get", lambda: self.braze.user_profiles_by_email(emails))
        if refs is None:
            return None
        key_of = dict(zip(emails, todo["subject_key"].astype(str)))
        return GroupListing.of(((key_of.get(r.email or "") or email_key(r.email) or "", r) for r in refs),
                               key_of.values())

    def _from_listing(self, need: pd.DataFrame, listing: GroupListing, xid_only: bool) -> pd.DataFrame:
        """Each listed profile's own state: by external_id, 50 a request; an address with a
        listed profile without one (unless `xid_only`), or whose listed profile has moved
        since, by `email_address`. Addresses listed without a profile are not read."""
        listed = listing.profiles[isin(listing.profiles["subject_key"], set(need["subject_key"])).to_numpy()]
        no_xid = set(listed.loc[listed["external_id"].isna().to_numpy(), "subject_key"])
        with_xid = listed["external_id"].notna().to_numpy()
        by_xid = listed[with_xid & (xid_only | ~isin(listed["subject_key"], no_xid).to_numpy())]
        read = _users_frame([])
        moved: set[str] = set()
        if len(by_xid):
            result = self.braze.export_ids(list(dict.fromkeys(by_xid["external_id"].astype(str))), PROFILE_FIELDS)
            users = _users_frame(result.users)
            users = users[users["external_id"].notna().to_numpy()].drop_duplicates("external_id")
            check = by_xid[["subject_key", "external_id"]].merge(users, on="external_id", how="left")
            away = (check["email_key"] != check["subject_key"]).fillna(True).to_numpy(dtype=bool)
            moved = set(check.loc[away, "subject_key"])
            read = check[~isin(check["subject_key"], moved).to_numpy()]
        again = moved | (set() if xid_only else no_xid)
        whole = set(need["subject_key"]) - again - no_xid
        self.cache.replace(whole, read[isin(read["email_key"], whole).to_numpy()][CACHE_COLUMNS])
        rows = need[isin(need["subject_key"], again).to_numpy()]
        found = self._one_by_one(rows) if len(rows) else _users_frame([])
        return pd.concat([read[["email_key", *PROFILE_FIELDS]], found[["email_key", *PROFILE_FIELDS]]],
                         ignore_index=True)

    # -- 1. bulk export ----------------------------------------------------------------
    def _segment(self, keys: set[str]) -> pd.DataFrame | None:
        """The profiles of these addresses from the segment export; None when it is
        unavailable (a bucket export, a failed or busy one, no permission)."""
        shared, segment_id = self.shared, self.segment_id
        if shared is not None:
            mine = self.caps.call("users.export.segment", lambda: shared.rows_for(keys))
            if mine is None:
                return None
        elif segment_id is not None:
            rows = self.caps.call("users.export.segment", lambda: self._export_once(segment_id))
            if rows is None:
                return None
            users = _users_frame(rows)
            users = users[users["email_key"].notna() & users["braze_id"].notna()]
            mine = users[isin(users["email_key"], keys)]
        else:
            return None
        self.cache.replace(keys, mine[CACHE_COLUMNS])
        return mine[["email_key", *PROFILE_FIELDS]]

    def _export_once(self, segment_id: str) -> list[dict[str, Any]] | None:
        try:
            return list(self.braze.export_segment(segment_id, PROFILE_FIELDS))
        except ExportUnavailable as exc:
            log.warning("braze segment export unavailable (%s: %s); profiles are read one by one", exc.kind, exc)
            return None

    # -- 2. cached external ids ----------------------------------------------------------
    def _cached(self, todo: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        known = self.cache.lookup(todo["subject_key"])
        if not len(known):
            return _users_frame([]), todo
        due = refresh_due(known["email_key"], known["last_seen_at"], self.now, self.cache_days)
        usable = ~due & known["external_id"].notna().to_numpy()
        bad_addr = set(known.loc[~usable, "email_key"])
        good = known[usable & ~isin(known["email_key"], bad_addr).to_numpy()]
        if not len(good):
            return _users_frame([]), todo
        result = self.braze.export_ids(good["external_id"].astype(str).tolist(), PROFILE_FIELDS)
        if not result.users and not result.invalid_user_ids:
            raise DataError(f"braze /users/export/ids answered no user and no invalid_user_ids for "
                            f"{len(good)} external id(s) known to exist; a malformed answer is not read as "
                            "'deleted' (it would hide missed opt-outs and deletions)")
        users = _users_frame(result.users)
        users = users[users["external_id"].notna()].drop_duplicates("external_id")
        by_xid = good.merge(users, on="external_id", how="left", suffixes=("_cached", ""))
        moved = by_xid["email_key"].isna() | (by_xid["email_key"] != by_xid["email_key_cached"]).fillna(True)
        if moved.any():
            self.cache.forget(by_xid.loc[moved, "braze_id_cached"].astype(str))
        stale_addr = set(by_xid.loc[moved, "email_key_cached"])
        done = set(good["email_key"]) - stale_addr
        read = by_xid[~moved & isin(by_xid["email_key_cached"], done)]
        return read[["email_key", *PROFILE_FIELDS]], todo[~isin(todo["subject_key"], done)]

    # -- 3. one address a request ---------------------------------------------------------
    def _one_by_one(self, todo: pd.DataFrame) -> pd.DataFrame:
        frame = _users_frame(self.braze.export_emails(todo["email"].astype(str).tolist(), PROFILE_FIELDS))
        frame = frame[frame["braze_id"].notna()]
        self.cache.replace(set(todo["subject_key"]), frame[isin(frame["email_key"], set(todo["subject_key"]))]
                           [CACHE_COLUMNS])
        return frame
