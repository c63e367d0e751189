"""Braze truth per profile, over loopback: the partner page's key, shared addresses,
Braze's own lists under external_id keys, verified opt-ins, and Ketch records without
topic state."""

from __future__ import annotations

from datetime import timedelta

import pytest

from reconcile.pipeline.job import run_job
from reconcile.sandbox.braze import PARTNER_PERMISSIONS

def _partner(w) -> None:
    w.braze.permissions = set(PARTNER_PERMISSIONS)


@pytest.mark.parametrize("key_type", ["email", "external_id"])
def test_the_partner_pages_eight_permissions_converge_every_correction_class(world, key_type):
    w = world
    _partner(w)
    cfg = w.config(key_type, policy={"suppress_deleted_emails": True},
                   guards={"max_unsubscribe_fraction": 1.0, "max_deletion_fraction": 1.0})
    truth = w.seed(cfg, subjects=240, drift=0.2)
    with w.runtime(cfg) as rt:
        first = run_job(rt)
        run = rt.store.get_run(first.run_id)
    assert first.exit_code == 0, first.messages
    assert first.counts["missed_optout"] > 0 and first.counts["missed_deletion"] > 0
    assert first.counts["missed_blocklist"] >= len(truth.injected["missed_blocklist"])
    assert first.verified > 0 and first.unverified == 0
    assert run["capabilities"]["email.hard_bounces"] is False  # learned from a 403, recorded
    refused = [c for c in w.braze.calls if c["status"] == 403]
    assert {c["path"] for c in refused} <= {"/email/hard_bounces", "/subscription/user/status",
                                            "/users/export/segment"}
    assert not [c for c in w.braze.calls if c["path"] == "/email/status"]
    with w.runtime(cfg) as rt:
        second = run_job(rt)
    assert second.actions_planned == 0, second.counts
    for cls in ("missed_optout", "missed_deletion", "missed_blocklist", "resurrected"):
        assert second.counts[cls] == 0, cls
    for email in truth.injected["missed_blocklist"]:  # suppressed: every profile unsubscribed
        assert {p.email_subscribe for p in w.braze.profiles_by_email(email.strip())} <= {"unsubscribed"}


def test_a_flip_on_one_of_two_profiles_sharing_an_address_is_found_fixed_and_verified(world):
    w = world
    _partner(w)
    cfg = w.config()
    w.seed(cfg, subjects=40, drift=0.0)
    email = "shared@example.com"
    at = int(w.now.timestamp()) - 86400 * 30
    w.ketch.set_consent("email", email, {"email_marketing": False}, at)
    w.ketch.set_subscriptions("email", email, {"newsletter": {"email": "denied"}}, {"global_unsubscribe": "denied"}, at)
    first_id = w.braze.add_profile(external_id="x-1", email=email, email_subscribe="unsubscribed",
                                   groups={"sg-news": "unsubscribed"})
    w.braze.add_profile(external_id="x-2", email=email, email_subscribe="unsubscribed",
                        groups={"sg-news": "unsubscribed"})
    w.braze.add_unsubscribe(email, w.now - timedelta(days=20))
    with cfg.universe.csv.open("a", encoding="utf-8") as f:
        f.write(f"{email}\n")
    with w.runtime(cfg) as rt:
        assert run_job(rt).actions_planned == 0
    # an import flips one profile back to subscribed; the address stays on the unsubscribe list
    w.braze.calls.clear()
    profile = next(p for p in w.braze.profiles_by_email(email) if p.braze_id == first_id)
    with w.braze.lock:
        w.braze.db.profiles[profile.braze_id].email_subscribe = "subscribed"
    with w.runtime(cfg) as rt:
        fixed = run_job(rt)
        items = [d for d in rt.store.drift_items(fixed.run_id) if d["subject_key"] == email]
    assert [(d["drift_class"], d["field"], d["status"]) for d in items] == [
        ("missed_optout", "email_subscribe", "verified")]
    assert {p.email_subscribe for p in w.braze.profiles_by_email(email)} == {"unsubscribed"}
    track = [c for c in w.braze.calls if c["path"] == "/users/track"]
    assert [a["braze_id"] for c in track for a in c["body"]["attributes"]] == [first_id]
    reads = {c["path"] for c in w.braze.calls}
    assert "/users/export/ids" in reads


def test_under_external_id_keys_braze_list_subjects_are_checked_written_back_and_reported(world):
    w = world
    cfg = w.config("external_id", policy={"write_back_optouts": True})
    w.seed(cfg, subjects=40, drift=0.0)
    old = int((w.now - timedelta(days=90)).timestamp())
    # in Braze (unsubscribed there last week), never in the identity list; Ketch granted long ago
    w.braze.add_profile(external_id="lonely-1", email="lonely@example.com", email_subscribe="unsubscribed")
    w.braze.add_unsubscribe("lonely@example.com", w.now - timedelta(days=7))
    w.ketch.set_consent("account_id", "lonely-1", {"email_marketing": True}, old)
    # a hard bounce on an address whose profile Ketch says opted out, still subscribed to a group
    w.braze.add_profile(external_id="bounced-1", email="bounced@example.com", email_subscribe="subscribed",
                        groups={"sg-news": "subscribed"})
    w.braze.add_hard_bounce("bounced@example.com", w.now - timedelta(days=2))
    w.ketch.set_subscriptions("account_id", "bounced-1", {"newsletter": {"email": "denied"}},
                              {"global_unsubscribe": "denied"}, old)
    # an address on the list that no external_id holds
    w.braze.add_profile(external_id=None, email="anon@example.com", email_subscribe="unsubscribed")
    w.braze.add_unsubscribe("anon@example.com", w.now - timedelta(days=3))
    with w.runtime(cfg) as rt:
        result = run_job(rt)
        exceptions = rt.store.exceptions(result.run_id)
        items = {(d["subject_key"], d["drift_class"]) for d in rt.store.drift_items(result.run_id)}
    assert result.exit_code == 0, result.messages
    assert ("lonely-1", "braze_newer_optout") in items
    assert ("bounced-1", "missed_optout") in items
    assert w.ketch.consent_of("account_id", "lonely-1")["purposes"]["email_marketing"] is False
    assert w.braze.profile_by_external_id("bounced-1").groups["sg-news"] == "unsubscribed"
    anon = [e for e in exceptions if e["identity"] == "anon@example.com"]
    assert len(anon) == 1 and "no external_id" in anon[0]["reason"]


def test_a_global_opt_in_is_applied_and_verified(world):
    w = world
    cfg = w.config(policy={"apply_optins": True})
    w.seed(cfg, subjects=30, drift=0.0)
    email = "back@example.com"
    w.braze.add_profile(external_id="b-1", email=email, email_subscribe="unsubscribed")
    w.braze.add_unsubscribe(email, w.now - timedelta(days=60))
    w.ketch.set_consent("email", email, {"email_marketing": True}, int((w.now - timedelta(days=1)).timestamp()))
    with cfg.universe.csv.open("a", encoding="utf-8") as f:
        f.write(f"{email}\n")
    with w.runtime(cfg) as rt:
        result = run_job(rt)
        items = [d for d in rt.store.drift_items(result.run_id) if d["subject_key"] == email]
    assert [(d["drift_class"], d["status"]) for d in items] == [("missed_optin", "verified")]
    assert result.unverified == 0
    assert w.braze.profiles_by_email(email)[0].email_subscribe == "subscribed"


@pytest.mark.parametrize("style", ["204", "empty_object", "missing_topic"])
def test_a_record_without_topic_state_never_touches_those_groups(world, style):
    w = world
    cfg = w.config()
    w.seed(cfg, subjects=80, drift=0.0)
    w.ketch.subscriptions_empty = "empty_object" if style == "empty_object" else "204"
    groups = [t["subscription_group_id"] for t in w.topics]
    chosen = []
    for profile in sorted(w.braze.db.profiles.values(), key=lambda p: p.braze_id)[::6]:
        subs = w.ketch.subscriptions_of("email", profile.email) if profile.email else None
        if not subs or subs["controls"].get("global_unsubscribe") == "granted":
            continue
        chosen.append(profile.email)
        # Ketch once denied every topic, but that state is gone (or the topic is absent) now
        w.ketch.set_subscriptions("email", profile.email, {t["topic"]: {t.get("channel"): "denied"} for t in w.topics},
                                  {"global_unsubscribe": "denied"}, int(w.now.timestamp()) - 3600)
        with w.braze.lock:
            profile.groups.update({g: "subscribed" for g in groups})
        if style != "missing_topic":
            with w.ketch.lock:
                w.ketch._find({"email": profile.email}).topics = None
    if style == "missing_topic":
        w.ketch.hide_topics = ("promotions",)
    assert len(chosen) >= 5
    with w.runtime(cfg) as rt:
        result = run_job(rt)
    assert result.exit_code == 0, result.messages
    for email in chosen:
        after = w.braze.profiles_by_email(email)[0].groups
        if style == "missing_topic":  # the topics still stated are applied; the hidden one is left alone
            assert after["sg-promo"] == "subscribed" and after["sg-news"] == "unsubscribed", (email, after)
        else:
            assert set(after.values()) == {"subscribed"}, (email, after)
