"""The drift classes of semantics §4, one case each, plus the §4 invariant as a property."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconcile.config import TopicMapping
from reconcile.engine.diff import Rules, diff
from reconcile.engine.frames import Observed, conform
from reconcile.engine.plan import build_plan

T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)
NEWS = TopicMapping("newsletter", "email", "g-news")
PROMO = TopicMapping("promos", None, "g-promo")
RULES = Rules(key_type="email", topics=(NEWS, PROMO))


def subject(key, *, ketch=None, braze=None, topics=(), groups=(), deletion=False, tombstone=False):
    """One subject's observed state as frame rows."""
    return dict(key=key, ketch=ketch, braze=braze, topics=topics, groups=groups, deletion=deletion, tombstone=tombstone)


def observe(*subjects) -> Observed:
    u, k, kt, b, bg = [], [], [], [], []
    for s in subjects:
        key = s["key"]
        u.append({"subject_key": key, "identity": key, "email": key, "deletion_requested": s["deletion"],
                  "tombstoned": s["tombstone"], "sources": "list"})
        if s["ketch"] is not None:
            k.append({"subject_key": key, "has_record": True, **s["ketch"]})
        kt += [{"subject_key": key, "topic": t, "channel": c, "status": st_} for t, c, st_ in s["topics"]]
        if s["braze"] is not None:
            b.append({"subject_key": key, "exists": True, "profile_count": 1, "email": key, **s["braze"]})
        bg += [{"subject_key": key, "group_id": g, "status": st_} for g, st_ in s["groups"]]
    return Observed(conform(pd.DataFrame(u), "universe"), conform(pd.DataFrame(k), "ketch"),
                    conform(pd.DataFrame(kt), "ketch_topics"), conform(pd.DataFrame(b), "braze"),
                    conform(pd.DataFrame(bg), "braze_groups"))


def classes(drift: pd.DataFrame, key: str) -> set[tuple[str, str]]:
    rows = drift[drift["subject_key"] == key]
    return set(zip(rows["drift_class"], rows["field"]))


def test_in_sync_subject_has_no_drift():
    o = observe(subject("a@x.io", ketch={"email_allowed": True, "consent_collected_at": T0},
                        braze={"email_subscribe": "subscribed"},
                        topics=[("newsletter", "email", "granted")], groups=[("g-news", "subscribed")]))
    assert diff(o, RULES).empty


def test_group_optout_missed_is_critical_and_actionable():
    o = observe(subject("a@x.io", ketch={"email_allowed": True}, braze={"email_subscribe": "subscribed"},
                        topics=[("newsletter", "email", "denied")], groups=[("g-news", "subscribed")]))
    d = diff(o, RULES)
    assert classes(d, "a@x.io") == {("missed_optout", "group:g-news")}
    row = d.iloc[0]
    assert (row["severity"], row["action"], row["group_id"]) == ("critical", "group_unsubscribe", "g-news")
    assert "newsletter/email is denied" in row["reason"]


def test_global_control_unsubscribes_every_mapped_group_and_global_state():
    o = observe(subject("a@x.io", ketch={"email_allowed": True, "global_engaged": True},
                        braze={"email_subscribe": "opted_in"},
                        groups=[("g-news", "subscribed"), ("g-promo", "subscribed")]))
    assert classes(diff(o, RULES), "a@x.io") == {
        ("missed_optout", "email_subscribe"), ("missed_optout", "group:g-news"), ("missed_optout", "group:g-promo")}


def test_group_optout_written_even_when_globally_unsubscribed():
    o = observe(subject("a@x.io", ketch={"email_allowed": False}, braze={"email_subscribe": "unsubscribed"},
                        topics=[("newsletter", "email", "denied")], groups=[("g-news", "subscribed")]))
    assert classes(diff(o, RULES), "a@x.io") == {("missed_optout", "group:g-news")}


def test_flat_topic_without_channel_level_is_used():
    o = observe(subject("a@x.io", ketch={}, braze={"email_subscribe": "subscribed"},
                        topics=[("newsletter", None, "denied")], groups=[("g-news", "subscribed")]))
    assert classes(diff(o, RULES), "a@x.io") == {("missed_optout", "group:g-news")}


def test_no_ketch_record_is_reported_never_unsubscribed():
    o = observe(subject("a@x.io", braze={"email_subscribe": "subscribed"}, groups=[("g-news", "subscribed")]))
    d = diff(o, RULES)
    assert classes(d, "a@x.io") == {("no_consent_record", "consent")}
    assert (d["action"] == "").all()


@pytest.mark.parametrize("unsub_at, expected", [
    (T0 + timedelta(days=1), "braze_newer_optout"),
    (T0, "braze_newer_optout"),  # opt-outs win ties
    (T0 - timedelta(days=1), "missed_optin"),
    (None, "missed_optin"),
])
def test_granted_in_ketch_unsubscribed_in_braze(unsub_at, expected):
    o = observe(subject("a@x.io", ketch={"email_allowed": True, "consent_collected_at": T0, "subs_collected_at": T0},
                        braze={"email_subscribe": "unsubscribed", "unsubscribed_at": unsub_at},
                        topics=[("newsletter", "email", "granted")], groups=[("g-news", "unsubscribed")]))
    d = diff(o, RULES)
    assert set(d["drift_class"]) == {expected}
    assert (d["action"] == "").all(), "never resubscribed by default"


def test_optin_applied_only_when_configured_and_newer_optout_written_back():
    o = observe(
        subject("in@x.io", ketch={"email_allowed": True, "consent_collected_at": T0},
                braze={"email_subscribe": "unsubscribed", "unsubscribed_at": T0 - timedelta(days=3)}),
        subject("out@x.io", ketch={"email_allowed": True, "consent_collected_at": T0},
                braze={"email_subscribe": "unsubscribed", "unsubscribed_at": T0 + timedelta(days=3)}))
    d = diff(o, Rules(topics=(NEWS,), apply_optins=True, write_back_optouts=True)).set_index("subject_key")
    assert d.loc["in@x.io", "action"] == "global_subscribe"
    assert d.loc["out@x.io", "action"] == "ketch_writeback"


def test_deletion_tombstone_and_ambiguity():
    o = observe(
        subject("del@x.io", deletion=True, ketch={}, braze={"email_subscribe": "subscribed"}),
        subject("gone@x.io", deletion=True, braze=None),
        subject("back@x.io", tombstone=True, braze={"email_subscribe": "subscribed"}),
        subject("two@x.io", deletion=True, braze={"email_subscribe": "subscribed", "profile_count": 2}))
    d = diff(o, RULES)
    assert classes(d, "del@x.io") == {("missed_deletion", "profile")}
    assert classes(d, "gone@x.io") == set()
    assert classes(d, "back@x.io") == {("resurrected", "profile")}
    assert classes(d, "two@x.io") == {("ambiguous_identity", "profile")}
    assert d.set_index("subject_key").loc["two@x.io", "action"] == ""
    prio = diff(o, Rules(topics=RULES.topics, deletion_prioritization=("identified", "most_recently_updated")))
    assert classes(prio, "two@x.io") == {("missed_deletion", "profile")}


def test_blocklist_for_deleted_emails_when_configured():
    o = observe(subject("del@x.io", deletion=True, braze={"email_subscribe": "subscribed"}),
                subject("ok@x.io", deletion=True, braze={"email_subscribe": "subscribed", "blocklisted": True}))
    d = diff(o, Rules(topics=RULES.topics, suppress_deleted_emails=True))
    assert classes(d, "del@x.io") == {("missed_deletion", "profile"), ("missed_blocklist", "blocklist")}
    assert classes(d, "ok@x.io") == {("missed_deletion", "profile")}


def test_unmatched_with_optional_alias():
    o = observe(subject("nobody@x.io", ketch={"email_allowed": False}, braze={"exists": False, "profile_count": 0}))
    assert classes(diff(o, RULES), "nobody@x.io") == {("unmatched", "profile")}
    d = diff(o, Rules(topics=RULES.topics, alias_unmatched=True))
    assert d["action"].tolist() == ["alias_optout"]


# ----------------------------------------------------------------------------- invariant

STATUS = st.sampled_from(["granted", "denied", None])
BRAZE = st.sampled_from(["subscribed", "opted_in", "unsubscribed"])
GROUP = st.sampled_from(["subscribed", "unsubscribed", "unknown", None])
WHEN = st.sampled_from([None, T0 - timedelta(days=2), T0, T0 + timedelta(days=2)])


@st.composite
def random_subject(draw, i):
    has_record = draw(st.booleans())
    ketch = None
    if has_record:
        ketch = {"email_allowed": draw(st.sampled_from([True, False, None])), "global_engaged": draw(st.booleans()),
                 "consent_collected_at": draw(WHEN), "subs_collected_at": draw(WHEN)}
    topics = [(m.topic, m.channel, s) for m in RULES.topics if (s := draw(STATUS))]
    groups = [(m.subscription_group_id, s) for m in RULES.topics if (s := draw(GROUP))]
    braze = {"email_subscribe": draw(BRAZE), "unsubscribed_at": draw(WHEN),
             "profile_count": draw(st.sampled_from([1, 1, 2]))} if draw(st.booleans()) or not has_record else None
    flags = draw(st.sampled_from(["none", "none", "deletion", "tombstone"]))
    return subject(f"s{i}@x.io", ketch=ketch, braze=braze, topics=topics, groups=groups,
                   deletion=flags == "deletion", tombstone=flags == "tombstone")


def apply_model(o: Observed, plan) -> Observed:
    """What Braze holds after every planned action succeeded (a pure model of the API)."""
    braze, groups = o.braze.copy(), o.braze_groups.astype({"status": "string"})
    for a in plan.actions:
        keys = set(a["subject_keys"])
        hit = braze["subject_key"].isin(keys)
        if a["kind"].startswith("global_unsubscribe"):
            braze.loc[hit, "email_subscribe"] = "unsubscribed"
        elif a["kind"] == "group_unsubscribe":
            g = groups["subject_key"].isin(keys) & (groups["group_id"] == a["params"]["group_id"])
            groups.loc[g, "status"] = "unsubscribed"
        elif a["kind"] == "delete":
            braze.loc[hit, "exists"] = False
    return Observed(o.universe, o.ketch, o.ketch_topics, braze, groups)


def more_permissive(o: Observed) -> list[str]:
    """Subjects where Braze is more permissive than Ketch after apply (must be none)."""
    bad = []
    drift = diff(o, RULES)
    for cls in ("missed_optout", "missed_deletion", "resurrected"):
        bad += drift[drift["drift_class"] == cls]["subject_key"].tolist()
    return bad


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(0, 10_000), min_size=1, max_size=12, unique=True).flatmap(
    lambda ids: st.tuples(*(random_subject(i) for i in ids))))
def test_invariant_after_apply_braze_is_never_more_permissive(subjects):
    o = observe(*subjects)
    drift = diff(o, RULES)
    assert not (drift[drift["drift_class"] == "missed_optout"]["action"] == "").any()
    plan = build_plan(drift, o.universe.set_index("subject_key")["email"], RULES, plan_fp="fp")
    after = apply_model(o, plan)
    ambiguous = set(drift[drift["drift_class"] == "ambiguous_identity"]["subject_key"])
    assert set(more_permissive(after)) <= ambiguous
    # never resubscribe, never unsubscribe a subject Ketch has no record of
    no_record = set(o.universe["subject_key"]) - set(o.ketch["subject_key"])
    touched = {s for a in plan.actions for s in a["subject_keys"]}
    assert not (touched & no_record - set(o.universe[o.universe["deletion_requested"] | o.universe["tombstoned"]]["subject_key"]))
    assert not any(a["kind"].endswith("subscribe") and "unsubscribe" not in a["kind"] for a in plan.actions)
