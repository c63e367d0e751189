"""Which Braze profiles hold an address, and their own global state (semantics §1).

Braze state is per profile: several profiles may share one email, and an address-level
answer (the unsubscribe list, `subscription/status/get` by email) is evidence about the
address, never proof about each profile. So the job enumerates the profiles of every
address it checks and reads each one's `email_subscribe`. Reads, cheapest first:

1. a full sweep with `braze.segment_id` and the `users.export.segment` permission: one bulk
   export lists every profile of the workspace, one per run or sweep (`shared_export.py`),
   and when Braze cannot deliver it (own bucket, failed, busy) the reads below are taken;
2. addresses whose profiles were enumerated within `braze.profile_cache_days` (kept in the
   state store) and all carry an external_id: `users/export/ids` by external_id, 50 a request;
3. with the `subscription.groups.get` permission, `subscription/user/status` by email (50
   addresses a request) names each profile sharing an address with its external_id; those
   are then read by external_id;
4. what is left: `users/export/ids` by `email_address`, one address a request (a few in
   flight, `braze.read_concurrency`).

An address whose cached profiles moved away (email changed, profile deleted) is read
again the authoritative way (1, 3 or 4). Enumerations (1, 3, 4) refresh the cache.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any, Iterable, Protocol

import pandas as pd

from reconcile.clients.braze_profiles import PROFILE_FIELDS as BRAZE_PROFILE_FIELDS
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


class ProfileReader:
    """Reads the profiles of a set of addresses (see the module doc for the order)."""

    def __init__(self, braze: BrazeReads, caps: Capabilities, cache: ProfileCache, *, now: datetime,
                 cache_days: float, segment_id: str | None = None, shared: SharedRows | None = None):
        """`shared`: the run's or sweep's `SharedExport` (one export for every part and
        worker); without it a full sweep with `segment_id` starts its own export."""
        self.braze, self.caps, self.cache = braze, caps, cache
        self.fresh_after = pd.Timestamp(now - timedelta(days=cache_days))
        self.segment_id = segment_id
        self.shared = shared

    def read(self, addresses: pd.DataFrame, *, full_sweep: bool) -> pd.DataFrame:
        """addresses: subject_key (email key), email (as sent). Returns one row per profile
        found: subject_key, braze_id, external_id, email, email_subscribe."""
        todo = addresses[["subject_key", "email"]].drop_duplicates("subject_key")
        found: list[pd.DataFrame] = []
        if full_sweep and (self.shared is not None or self.segment_id) and len(todo):
            bulk = self._segment(set(todo["subject_key"]))
            if bulk is not None:
                return self._attach(todo, bulk)
        if len(todo):
            cached, todo = self._cached(todo)
            found.append(cached)
        if len(todo):
            listed, todo = self._user_status(todo)
            found.append(listed)
        if len(todo):
            found.append(self._one_by_one(todo))
        profiles = pd.concat([f for f in found if len(f)], ignore_index=True) if any(len(f) for f in found) \
            else _users_frame([])
        return self._attach(addresses[["subject_key"]].drop_duplicates(), profiles)

    @staticmethod
    def _attach(todo: pd.DataFrame, profiles: pd.DataFrame) -> pd.DataFrame:
        hits = profiles[isin(profiles["email_key"], set(todo["subject_key"]))]
        out = hits.rename(columns={"email_key": "subject_key"})[["subject_key", *PROFILE_FIELDS]]
        return conform(out.drop_duplicates("braze_id").reset_index(drop=True), "braze_profiles")

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
        seen = pd.to_datetime(known["last_seen_at"], utc=True, errors="coerce", format="ISO8601")
        usable = (seen >= self.fresh_after).fillna(False) & known["external_id"].notna()
        bad_addr = set(known.loc[~usable.to_numpy(), "email_key"])
        good = known[usable.to_numpy() & ~isin(known["email_key"], bad_addr).to_numpy()]
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

    # -- 3. subscription/user/status by email ---------------------------------------------
    def _user_status(self, todo: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        refs = self.caps.call("subscription.groups.get",
                              lambda: self.braze.user_profiles_by_email(todo["email"].astype(str).tolist()))
        if not refs:  # permission missing, an answer that cannot tell profiles apart, or nobody found
            return _users_frame([]), todo
        listed = pd.DataFrame([{"email_key": email_key(r.email),
                                "external_id": r.external_id} for r in refs], columns=["email_key", "external_id"])
        listed = listed[listed["email_key"].notna()]
        without_xid = set(listed.loc[listed["external_id"].isna(), "email_key"])
        usable = listed[~isin(listed["email_key"], without_xid)].drop_duplicates()
        if not len(usable):
            return _users_frame([]), todo
        result = self.braze.export_ids(usable["external_id"].astype(str).tolist(), PROFILE_FIELDS)
        users = _users_frame(result.users)
        users = users[users["external_id"].notna()].drop_duplicates("external_id")
        check = usable.merge(users, on="external_id", how="left", suffixes=("_listed", ""))
        mismatch = set(check.loc[(check["email_key"] != check["email_key_listed"]).fillna(True), "email_key_listed"])
        done = set(usable["email_key"]) - mismatch
        read = check[isin(check["email_key_listed"], done)]
        self.cache.replace(done, read[CACHE_COLUMNS])
        return read[["email_key", *PROFILE_FIELDS]], todo[~isin(todo["subject_key"], done)]

    # -- 4. one address a request ---------------------------------------------------------
    def _one_by_one(self, todo: pd.DataFrame) -> pd.DataFrame:
        frame = _users_frame(self.braze.export_emails(todo["email"].astype(str).tolist(), PROFILE_FIELDS))
        frame = frame[frame["braze_id"].notna()]
        self.cache.replace(set(todo["subject_key"]), frame[isin(frame["email_key"], set(todo["subject_key"]))]
                           [CACHE_COLUMNS])
        return frame
