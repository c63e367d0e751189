"""ProfileReader: which read finds each address's profiles, and what it trusts (no HTTP)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest

from reconcile.clients.braze_profiles import ProfileRef
from reconcile.engine.capabilities import Capabilities
from reconcile.engine.profiles import MemoryCache, ProfileReader, refresh_due
from reconcile.errors import DataError, PermissionDenied

NOW = datetime(2026, 11, 1, tzinfo=timezone.utc)


@dataclass
class Export:
    users: list
    invalid_user_ids: list = field(default_factory=list)


class FakeBraze:
    """Profiles by address; counts each read."""

    def __init__(self, profiles: list[dict], *, user_status: bool = True, empty_exports: bool = False):
        self.profiles, self.user_status, self.empty_exports = profiles, user_status, empty_exports
        self.calls: list[tuple[str, int]] = []

    def export_emails(self, emails, fields):
        out = []
        for email in emails:
            self.calls.append(("export_email", 1))
            out += [p for p in self.profiles if p["email"].casefold() == email.casefold()]
        return out

    def export_ids(self, ids, fields):
        self.calls.append(("export_ids", len(ids)))
        if self.empty_exports:
            return Export([])
        found = [p for p in self.profiles if p["external_id"] in ids]
        return Export(found, [i for i in ids if i not in {p["external_id"] for p in found}])

    def user_profiles_by_email(self, emails):
        self.calls.append(("user_status", len(emails)))
        if not self.user_status:
            raise PermissionDenied("Access Denied", service="braze")
        return [ProfileRef(e, p["external_id"]) for e in emails for p in self.profiles
                if p["email"].casefold() == e.casefold()]


def profile(n: int, email: str, xid: str | None = "auto", state: str = "subscribed") -> dict:
    return {"braze_id": f"b{n}", "external_id": f"x{n}" if xid == "auto" else xid, "email": email,
            "email_subscribe": state}


def addresses(*emails: str) -> pd.DataFrame:
    return pd.DataFrame({"subject_key": [e.casefold() for e in emails], "email": list(emails)})


def reader(braze, cache, caps=None, now=NOW) -> ProfileReader:
    return ProfileReader(braze, caps or Capabilities(), cache, now=now, cache_days=7)


def test_without_the_optional_permission_each_address_is_enumerated_once_then_read_in_batches():
    braze = FakeBraze([profile(1, "a@x.io"), profile(2, "a@x.io", state="unsubscribed"), profile(3, "b@x.io")],
                      user_status=False)
    cache = MemoryCache(lambda: NOW)
    caps = Capabilities()
    first = reader(braze, cache, caps).read(addresses("a@x.io", "b@x.io"), full_sweep=True)
    assert sorted(first["braze_id"]) == ["b1", "b2", "b3"]
    assert caps.granted["subscription.groups.get"] is False
    assert [c for c, _ in braze.calls] == ["user_status", "export_email", "export_email"]
    braze.calls.clear()
    second = reader(braze, cache, caps).read(addresses("a@x.io", "b@x.io"), full_sweep=False)
    assert sorted(second["braze_id"]) == ["b1", "b2", "b3"]
    assert braze.calls == [("export_ids", 3)]  # one batched read, no enumeration, no 403 asked again


def test_user_status_finds_shared_profiles_fifty_addresses_a_request():
    braze = FakeBraze([profile(1, "a@x.io"), profile(2, "A@x.io"), profile(3, "b@x.io")])
    got = reader(braze, MemoryCache(lambda: NOW)).read(addresses("a@x.io", "b@x.io"), full_sweep=False)
    assert sorted(got["braze_id"]) == ["b1", "b2", "b3"]
    assert braze.calls == [("user_status", 2), ("export_ids", 3)]


def test_an_address_with_a_profile_lacking_an_external_id_is_enumerated_by_email():
    braze = FakeBraze([profile(1, "a@x.io"), profile(2, "a@x.io", xid=None)])
    got = reader(braze, MemoryCache(lambda: NOW)).read(addresses("a@x.io"), full_sweep=False)
    assert sorted(got["braze_id"]) == ["b1", "b2"]
    assert ("export_email", 1) in braze.calls


def test_a_stale_cache_or_a_moved_profile_sends_the_address_back_to_enumeration():
    braze = FakeBraze([profile(1, "a@x.io"), profile(2, "b@x.io")], user_status=False)
    cache = MemoryCache(lambda: NOW - timedelta(days=30))
    reader(braze, cache).read(addresses("a@x.io", "b@x.io"), full_sweep=False)
    braze.calls.clear()
    braze.profiles[1]["email"] = "moved@x.io"
    got = reader(braze, cache).read(addresses("a@x.io", "b@x.io"), full_sweep=False)
    assert sorted(got["braze_id"]) == ["b1"]
    assert [c for c, _ in braze.calls].count("export_email") == 2  # stale (30 days) addresses enumerated again


def test_an_empty_export_for_profiles_known_to_exist_is_malformed_not_deleted():
    braze = FakeBraze([profile(1, "a@x.io")], user_status=False)
    cache = MemoryCache(lambda: NOW)
    reader(braze, cache).read(addresses("a@x.io"), full_sweep=False)
    braze.empty_exports = True
    with pytest.raises(DataError) as err:
        reader(braze, cache).read(addresses("a@x.io"), full_sweep=False)
    assert "malformed" in str(err.value) and "a@x.io" not in str(err.value)


def test_cached_addresses_are_refreshed_a_slice_a_day_each_once_a_cycle():
    """Daily runs over 7,000 addresses enumerated on one day: each later day re-enumerates
    about a seventh of them, and over the 7-day cycle every address exactly once."""
    keys = pd.Series([f"user{i}@x.io" for i in range(7000)])
    seen = pd.Series([NOW] * len(keys))
    refreshed = []
    for day in range(1, 8):
        due = refresh_due(keys, seen, NOW + timedelta(days=day), 7)
        refreshed.append(int(due.sum()))
        seen = seen.where(~pd.Series(due), NOW + timedelta(days=day))
    assert all(700 <= n <= 1300 for n in refreshed), refreshed
    assert sum(refreshed) == len(keys)
    assert not refresh_due(keys, seen, NOW + timedelta(days=7), 7).any(), "nothing twice on one day"


def test_an_entry_older_than_the_cycle_or_of_unknown_time_is_always_due():
    keys = pd.Series(["a@x.io", "b@x.io", "c@x.io"])
    seen = pd.Series([NOW - timedelta(days=7, seconds=1), NOW - timedelta(days=30), None])
    assert refresh_due(keys, seen, NOW, 7).tolist() == [True, True, True]
    assert refresh_due(keys, pd.Series([NOW] * 3), NOW, 0).tolist() == [True, True, True]


def test_the_partner_path_enumerates_only_the_days_slice_again_and_reads_the_rest_in_batches():
    n = 700
    braze = FakeBraze([profile(i, f"p{i}@x.io") for i in range(n)], user_status=False)
    cache = MemoryCache(lambda: NOW)
    emails = [f"p{i}@x.io" for i in range(n)]
    reader(braze, cache).read(addresses(*emails), full_sweep=True)
    assert [c for c, _ in braze.calls].count("export_email") == n
    braze.calls.clear()
    later = NOW + timedelta(days=1)
    got = reader(braze, cache, now=later).read(addresses(*emails), full_sweep=True)
    assert len(got) == n
    singles = [c for c, _ in braze.calls].count("export_email")
    batched = sum(size for c, size in braze.calls if c == "export_ids")
    expected = int(refresh_due(cache.rows["email_key"], pd.Series([NOW] * n), later, 7).sum())
    assert singles == expected and 50 <= singles <= 150 and batched == n - singles
