"""Group states from a `GroupListing` (`extract.read_groups`): which subjects it answers for,
how several profiles combine, which profiles count for an SMS group, and the per-group read
for what it does not cover (no HTTP)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from reconcile.clients.braze_profiles import ProfileRef
from reconcile.config import parse_config
from reconcile.engine.capabilities import Capabilities
from reconcile.engine.extract import BrazeRead, read_groups
from reconcile.engine.frames import conform
from reconcile.engine.profiles import GroupListing, MemoryCache

NOW = datetime(2026, 11, 1, tzinfo=timezone.utc)


class PerGroupReads:
    """`subscription_status_get` only: every identifier unsubscribed; each call recorded."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []

    def subscription_status_get(self, group_id: str, **ids: list[str]) -> dict[str, str]:
        self.calls.append((group_id, ids))
        return {i: "unsubscribed" for values in ids.values() for i in values}


def config(tmp: Path, key_type: str = "email", sms: bool = False):
    topics = [{"topic": "news", "channel": "email", "subscription_group_id": "g-news"},
              {"topic": "promo", "channel": "email", "subscription_group_id": "g-promo"}]
    if sms:
        topics.append({"topic": "news", "channel": "sms", "subscription_group_id": "g-sms"})
    return parse_config({
        "ketch": {"organization": "acme", "property": "web", "environment": "production", "jurisdiction": "default"},
        "identity": {"ketch_space": "email" if key_type == "email" else "account_id", "braze_key": key_type,
                     **({"phone_sources": ["braze"], "phone_region": "US"} if sms else {})},
        "mapping": {"global_control_engaged": "granted", "topics": topics},
    }, tmp)


def universe(*keys: str) -> pd.DataFrame:
    return pd.DataFrame({"subject_key": list(keys), "identity": list(keys)}).astype("string")


def profiles(*rows: tuple[str, str, str | None]) -> pd.DataFrame:
    return conform(pd.DataFrame(rows, columns=["subject_key", "braze_id", "external_id"]), "braze_profiles")


def states(frame: pd.DataFrame) -> dict[tuple[str, str], str]:
    return {(k, g): str(s) for k, g, s in zip(frame["subject_key"], frame["group_id"], frame["status"])}


def test_a_listed_subject_takes_every_group_from_the_listing_subscribed_if_any_profile_is(tmp_path):
    braze = PerGroupReads()
    ctx = BrazeRead(braze, config(tmp_path), Capabilities(), MemoryCache(), NOW)
    listing = GroupListing.of([("a@x.io", ProfileRef("a@x.io", "x1", {"g-news": "unsubscribed"})),
                               ("a@x.io", ProfileRef("a@x.io", None, {"g-news": "subscribed"}))], ["a@x.io"])
    got = read_groups(ctx, universe("a@x.io"), profiles(("a@x.io", "b1", "x1"), ("a@x.io", "b2", None)), listing)
    assert states(got) == {("a@x.io", "g-news"): "subscribed", ("a@x.io", "g-promo"): "unknown"}
    assert braze.calls == []


def test_a_subject_whose_profiles_differ_from_the_listing_is_read_per_group(tmp_path):
    """b has a profile the listing does not show (created since): only b is read per group."""
    braze = PerGroupReads()
    ctx = BrazeRead(braze, config(tmp_path), Capabilities(), MemoryCache(), NOW)
    listing = GroupListing.of([("a@x.io", ProfileRef("a@x.io", "x1", {"g-news": "subscribed"})),
                               ("b@x.io", ProfileRef("b@x.io", "x2", {"g-news": "subscribed"}))],
                              ["a@x.io", "b@x.io"])
    read = profiles(("a@x.io", "b1", "x1"), ("b@x.io", "b2", "x2"), ("b@x.io", "b3", "x3"))
    got = read_groups(ctx, universe("a@x.io", "b@x.io"), read, listing)
    assert states(got)[("a@x.io", "g-news")] == "subscribed"
    assert states(got)[("b@x.io", "g-news")] == "unsubscribed"
    asked = {(g, tuple(v)) for g, ids in braze.calls for v in ids.values()}
    assert ("g-news", ("b@x.io",)) in asked and ("g-promo", ("b@x.io",)) in asked
    assert not any("a@x.io" in v for _g, ids in braze.calls for v in ids.values())


def test_only_the_wanted_groups_of_the_wanted_subjects_are_answered(tmp_path):
    braze = PerGroupReads()
    ctx = BrazeRead(braze, config(tmp_path), Capabilities(), MemoryCache(), NOW)
    got = read_groups(ctx, universe("a@x.io", "b@x.io"), profiles(("a@x.io", "b1", "x1"), ("b@x.io", "b2", "x2")),
                      None, wanted={"g-promo": {"b@x.io"}})
    assert states(got) == {("b@x.io", "g-promo"): "unsubscribed"}
    assert [g for g, _ in braze.calls] == ["g-promo"]


def test_an_sms_group_counts_only_the_profiles_it_can_reach(tmp_path):
    """Under email keys an SMS group is addressed by a valid number or an external id: a
    profile with neither is left out, as the per-group read leaves it out."""
    braze = PerGroupReads()
    ctx = BrazeRead(braze, config(tmp_path, sms=True), Capabilities(), MemoryCache(), NOW)
    listing = GroupListing.of([
        ("a@x.io", ProfileRef("a@x.io", None, {"g-sms": "subscribed"}, phone="555-01")),
        ("a@x.io", ProfileRef("a@x.io", None, {"g-sms": "unsubscribed"}, phone="+12015551001")),
        ("b@x.io", ProfileRef("b@x.io", "x2", {"g-sms": "subscribed"})),
    ], ["a@x.io", "b@x.io"])
    read = profiles(("a@x.io", "b1", None), ("a@x.io", "b2", None), ("b@x.io", "b3", "x2"))
    got = read_groups(ctx, universe("a@x.io", "b@x.io"), read, listing)
    assert states(got)[("a@x.io", "g-sms")] == "unsubscribed"
    assert states(got)[("b@x.io", "g-sms")] == "subscribed"
    assert braze.calls == []
