"""The drift classes of semantics §4, one case each, plus the §4 invariant as a property."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis_profiles import examples

from reconcile.config import TopicMapping
from reconcile.engine.diff import Rules, diff
from reconcile.engine.extract import BrazeLists, summarize
from reconcile.engine.frames import Observed, conform
from reconcile.engine.plan import build_plan, drift_keys
from reconcile.models.plan import ActionKind

T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)
NEWS = TopicMapping("newsletter", "email", "g-news")
PROMO = TopicMapping("promos", None, "g-promo")
RULES = Rules(key_type="email", topics=(NEWS, PROMO))


def subject(key, *, ketch=None, braze=None, topics=(), groups=(), deletion=False, tombstone=False):
    """One subject's observed state as frame rows."""
    return dict(key=key, ketch=ketch, braze=braze, topics=topics, groups=groups, deletion=deletion, tombstone=tombstone)


def observe(*subjects) -> Observed:
    """Frames for the subjects; a Braze side is given per subject (`email_subscribe` for its
    one profile) or per profile (`profiles`: a list of email_subscribe values)."""
    u, k, kt, p, bg = [], [], [], [], []
    braze_extra = {}
    for s in subjects:
        key = s["key"]
        u.append({"subject_key": key, "identity": key, "email": key, "deletion_requested": s["deletion"],
                  "tombstoned": s["tombstone"], "sources": "list"})
        if s["ketch"] is not None:
            k.append({"subject_key": key, "has_record": True, **s["ketch"]})
        kt += [{"subject_key": key, "topic": t, "channel": c, "status": st_} for t, c, st_ in s["topics"]]
        b = dict(s["braze"] or {"exists": False})
        if b.get("exists", True):
            states = b.pop("profiles", None) or [b.get("email_subscribe", "subscribed")] * b.get("profile_count", 1)
            p += [{"subject_key": key, "braze_id": f"{key}#{i}", "external_id": None, "email": key,
                   "email_subscribe": state} for i, state in enumerate(states)]
        braze_extra[key] = b
        bg += [{"subject_key": key, "group_id": g, "status": st_} for g, st_ in s["groups"]]
    universe = conform(pd.DataFrame(u), "universe")
    profiles = conform(pd.DataFrame(p), "braze_profiles")
    unsub = pd.DataFrame([{"email": key, "unsubscribed_at": b["unsubscribed_at"]} for key, b in braze_extra.items()
                          if b.get("unsubscribed_at") is not None], columns=["email", "unsubscribed_at"])
    bounced = pd.DataFrame([{"email": key, "hard_bounced_at": T0} for key, b in braze_extra.items()
                            if b.get("blocklisted")], columns=["email", "hard_bounced_at"])
    lists = BrazeLists(unsub.astype({"unsubscribed_at": "datetime64[ns, UTC]"}),
                       bounced.astype({"hard_bounced_at": "datetime64[ns, UTC]"}), True)
    return Observed(universe, conform(pd.DataFrame(k), "ketch"), conform(pd.DataFrame(kt), "ketch_topics"),
                    summarize(universe, profiles, lists), conform(pd.DataFrame(bg), "braze_groups"), profiles)


def classes(drift: pd.DataFrame, key: str) -> set[tuple[str, str]]:
    keys = [d for d in drift_keys(drift) if d.subject_key == key]
    return {(d.drift_class, d.stored_field) for d in keys}


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
    (None, "braze_newer_optout"),  # an opt-out of unknown time is never resubscribed
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
    o = observe(subject("nobody@x.io", ketch={"email_allowed": False}, braze={"exists": False}))
    assert classes(diff(o, RULES), "nobody@x.io") == {("unmatched", "profile")}
    d = diff(o, Rules(topics=RULES.topics, alias_unmatched=True))
    assert d["action"].tolist() == ["alias_optout"]


# ----------------------------------------------------------------------------- per profile


def test_one_subscribed_profile_of_a_shared_address_is_a_missed_optout_and_targets_only_it():
    o = observe(subject("two@x.io", ketch={"email_allowed": False},
                        braze={"profiles": ["unsubscribed", "subscribed"], "unsubscribed_at": T0}))
    d = diff(o, RULES)
    assert classes(d, "two@x.io") == {("missed_optout", "email_subscribe")}
    plan = build_plan(d, o.universe.set_index("subject_key")["email"], o.braze_profiles, RULES, plan_fp="fp",
                      plan_id="p")
    (action,) = plan.actions
    assert action.kind is ActionKind.GLOBAL_UNSUBSCRIBE
    assert action.values == ["two@x.io#1"] and action.id_type == "braze_id"


def test_missing_topic_state_is_no_opinion_even_beside_granted_topics():
    o = observe(subject("a@x.io", ketch={"email_allowed": True}, braze={"email_subscribe": "subscribed"},
                        topics=[("newsletter", "email", "granted")],
                        groups=[("g-news", "subscribed"), ("g-promo", "subscribed")]))
    assert diff(o, RULES).empty


def test_blocklist_unknown_without_the_bounce_list_is_planned_whatever_the_profiles_say():
    """When unsure, blocklist: unsubscribed profiles, or none, are no evidence of a blocklist;
    only a known one (the list, or the job's own confirmed blocklist) is."""
    from dataclasses import replace

    o = observe(subject("dnc@x.io", ketch={"blocklist_engaged": True}, braze={"email_subscribe": "subscribed"}),
                subject("done@x.io", ketch={"blocklist_engaged": True}, braze={"email_subscribe": "unsubscribed"}),
                subject("ours@x.io", ketch={"blocklist_engaged": True}, braze={"email_subscribe": "unsubscribed"}))
    unknown = replace(o, braze=o.braze.assign(blocklisted=pd.array([pd.NA, pd.NA, True], dtype="boolean")))
    d = diff(unknown, RULES)
    assert ("missed_blocklist", "blocklist") in classes(d, "dnc@x.io")
    assert ("missed_blocklist", "blocklist") in classes(d, "done@x.io")
    assert ("missed_blocklist", "blocklist") not in classes(d, "ours@x.io")


# ----------------------------------------------------------------------------- invariant

STATUS = st.sampled_from(["granted", "denied", None])  # None: Ketch has no state for that topic
BRAZE = st.sampled_from(["subscribed", "opted_in", "unsubscribed"])
GROUP = st.sampled_from(["subscribed", "unsubscribed", "unknown", None])
WHEN = st.sampled_from([None, T0 - timedelta(days=2), T0, T0 + timedelta(days=2)])
MAYBE = st.sampled_from([True, False, None])  # None: the purpose or control is missing


@st.composite
def random_subject(draw, i):
    has_record = draw(st.booleans())
    ketch = None
    if has_record:
        ketch = {"email_allowed": draw(MAYBE), "global_engaged": draw(MAYBE), "blocklist_engaged": draw(MAYBE),
                 "consent_collected_at": draw(WHEN), "subs_collected_at": draw(WHEN)}
        ketch = {k: v for k, v in ketch.items() if v is not None}
    topics = [(m.topic, m.channel, s) for m in RULES.topics if (s := draw(STATUS))]
    groups = [(m.subscription_group_id, s) for m in RULES.topics if (s := draw(GROUP))]
    braze = None
    if draw(st.booleans()) or not has_record:
        braze = {"profiles": draw(st.lists(BRAZE, min_size=1, max_size=3)), "unsubscribed_at": draw(WHEN),
                 "blocklisted": draw(st.booleans())}
    flags = draw(st.sampled_from(["none", "none", "deletion", "tombstone"]))
    return subject(f"s{i}@x.io", ketch=ketch, braze=braze, topics=topics, groups=groups,
                   deletion=flags == "deletion", tombstone=flags == "tombstone")


def apply_model(o: Observed, plan) -> Observed:
    """What Braze holds after every planned action succeeded (a pure model of the API)."""
    profiles, groups = o.braze_profiles.copy(), o.braze_groups.astype({"status": "string"})
    for a in plan.actions:
        keys = set(a.subject_keys)
        if a.kind is ActionKind.GLOBAL_UNSUBSCRIBE:
            profiles.loc[profiles["braze_id"].isin(a.values), "email_subscribe"] = "unsubscribed"
        elif a.kind is ActionKind.GROUP_UNSUBSCRIBE:
            g = groups["subject_key"].isin(keys) & (groups["group_id"] == a.group_id)
            groups.loc[g, "status"] = "unsubscribed"
        elif a.kind is ActionKind.DELETE:
            profiles = profiles[~profiles["subject_key"].isin(keys)]
    braze = summarize(o.universe, profiles, BrazeLists(pd.DataFrame(columns=["email", "unsubscribed_at"]),
                                                       pd.DataFrame(columns=["email", "hard_bounced_at"]), True))
    braze["unsubscribed_at"] = o.braze["unsubscribed_at"].array
    braze["blocklisted"] = o.braze["blocklisted"].array
    return Observed(o.universe, o.ketch, o.ketch_topics, braze, groups, profiles)


def more_permissive(o: Observed) -> list[str]:
    """Subjects where Braze is more permissive than Ketch after apply (must be none)."""
    drift = diff(o, RULES)
    return drift[drift["drift_class"].isin(["missed_optout", "missed_deletion", "resurrected"])]["subject_key"].tolist()


def no_opinion_groups(o: Observed) -> set[tuple[str, str]]:
    """(subject, group) pairs on which Ketch has no opinion: no topic state and no global or
    do-not-contact control engaged."""
    k = o.ketch.set_index("subject_key")
    out = set()
    for m in RULES.topics:
        stated = set(o.ketch_topics[o.ketch_topics["topic"] == m.topic]["subject_key"])
        for key in o.universe["subject_key"]:
            engaged = key in k.index and bool(k.loc[key, "global_engaged"] or k.loc[key, "blocklist_engaged"])
            if key not in stated and not engaged:
                out.add((key, m.subscription_group_id))
    return out


@settings(max_examples=examples(120), deadline=None)
@given(st.lists(st.integers(0, 10_000), min_size=1, max_size=12, unique=True).flatmap(
    lambda ids: st.tuples(*(random_subject(i) for i in ids))))
def test_invariant_after_apply_braze_is_never_more_permissive(subjects):
    o = observe(*subjects)
    drift = diff(o, RULES)
    assert not (drift[drift["drift_class"] == "missed_optout"]["action"] == "").any()
    plan = build_plan(drift, o.universe.set_index("subject_key")["email"], o.braze_profiles, RULES, plan_fp="fp",
                      plan_id="p")
    after = apply_model(o, plan)
    ambiguous = set(drift[drift["drift_class"] == "ambiguous_identity"]["subject_key"])
    assert set(more_permissive(after)) <= ambiguous
    # never resubscribe, never unsubscribe a subject Ketch has no record of
    no_record = set(o.universe["subject_key"]) - set(o.ketch["subject_key"])
    doomed = set(o.universe[o.universe["deletion_requested"] | o.universe["tombstoned"]]["subject_key"])
    touched = {s for a in plan.actions for s in a.subject_keys}
    assert not (touched & no_record - doomed)
    assert not any(a.kind.subscribes for a in plan.actions)
    # no overreach: a group on which Ketch has no opinion is never written
    quiet = no_opinion_groups(o)
    for a in plan.actions:
        if a.kind is ActionKind.GROUP_UNSUBSCRIBE:
            assert not {(s, a.group_id) for s in a.subject_keys} & quiet


def test_a_group_read_for_several_profiles_is_one_drift_item_per_subject():
    o = observe(subject("two@x.io", ketch={"email_allowed": True}, braze={"profiles": ["subscribed", "subscribed"]},
                        topics=[("newsletter", "email", "denied")],
                        groups=[("g-news", "unsubscribed"), ("g-news", "subscribed")]))
    d = diff(o, RULES)
    assert d[["drift_class", "field", "group_id"]].values.tolist() == [["missed_optout", "group", "g-news"]]


SMS_NEWS = TopicMapping("newsletter", "sms", "g-news-sms")


@pytest.mark.parametrize("unsub_at", [None, T0 - timedelta(days=30), T0 + timedelta(days=1)])
@pytest.mark.parametrize("apply_optins, write_back", [(False, False), (True, False), (True, True)])
def test_an_sms_opt_out_of_unknown_time_is_never_resubscribed(unsub_at, apply_optins, write_back):
    """Ketch grants the topic's SMS channel, Braze has the number unsubscribed (a STOP reply
    keeps no time; the address's email unsubscribe time says nothing about SMS)."""
    o = observe(subject("a@x.io", ketch={"email_allowed": True, "consent_collected_at": T0, "subs_collected_at": T0},
                        braze={"email_subscribe": "subscribed", "unsubscribed_at": unsub_at},
                        topics=[("newsletter", "email", "granted"), ("newsletter", "sms", "granted")],
                        groups=[("g-news", "subscribed"), ("g-news-sms", "unsubscribed")]))
    d = diff(o, Rules(topics=(NEWS, SMS_NEWS), apply_optins=apply_optins, write_back_optouts=write_back))
    (row,) = d.to_dict("records")
    assert (row["drift_class"], row["group_id"]) == ("braze_newer_optout", "g-news-sms")
    assert row["action"] == ("ketch_writeback" if write_back else "") and "STOP" in row["reason"]
    assert pd.isna(row["braze_unsubscribed_at"])


def test_a_topics_email_and_sms_channels_reach_their_own_groups():
    o = observe(subject("a@x.io", ketch={"email_allowed": True, "subs_collected_at": T0},
                        topics=[("newsletter", "email", "granted"), ("newsletter", "sms", "denied")],
                        groups=[("g-news", "subscribed"), ("g-news-sms", "subscribed")], braze={"email_subscribe": "subscribed"}),
                subject("b@x.io", ketch={"email_allowed": True, "subs_collected_at": T0},
                        topics=[("newsletter", "email", "denied")],  # no opinion on SMS
                        groups=[("g-news", "subscribed"), ("g-news-sms", "subscribed")], braze={"email_subscribe": "subscribed"}))
    d = diff(o, Rules(topics=(NEWS, SMS_NEWS)))
    assert classes(d, "a@x.io") == {("missed_optout", "group:g-news-sms")}
    assert classes(d, "b@x.io") == {("missed_optout", "group:g-news")}
