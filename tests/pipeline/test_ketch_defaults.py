"""Defaults are not choices: Ketch may answer an identity that made no choice with an empty
answer (204 or `{}`) or with its jurisdiction's legal-basis defaults (purposes with
`allowed`, controls and topics with statuses, no `collectedAt`). Under both readings such
a subject is `no_consent_record` and is never unsubscribed or resubscribed; a tenant may
opt into reading defaults as choices (`policy.ketch_defaults_are_choices`). Runs over
loopback against the simulators."""

from __future__ import annotations

import pytest

from reconcile.pipeline import run_job

DEFAULT_TOPICS = {"newsletter": {"email": "denied"}, "promotions": {"email": "denied"}}
DEFAULT_CONTROLS = {"global_unsubscribe": "denied", "do_not_contact": "denied"}


def switch_to_defaults(w) -> None:
    """Unknown identities get the jurisdiction's defaults: the email purpose (consent_optin)
    not allowed, topics denied, controls not engaged; no collectedAt."""
    w.ketch.unknown_identity = "defaults"
    w.ketch.default_topics = DEFAULT_TOPICS
    w.ketch.default_controls = DEFAULT_CONTROLS


@pytest.mark.parametrize("reading", ["empty", "defaults"])
def test_a_subject_without_a_choice_is_reported_never_unsubscribed(world, reading):
    w = world
    cfg = w.config()
    truth = w.seed(cfg, subjects=150, drift=0.25)
    if reading == "defaults":
        switch_to_defaults(w)
    no_record = truth.injected["no_consent_record"]
    assert no_record
    before = {e: w.braze.profiles_by_email(e)[0] for e in no_record}
    with w.runtime(cfg) as rt:
        result = run_job(rt)
    assert result.status == "applied", result.messages
    assert result.counts["no_consent_record"] == len(no_record)
    for email, was in before.items():
        (p,) = w.braze.profiles_by_email(email)
        assert p.email_subscribe == was.email_subscribe == "subscribed"
        assert p.groups == was.groups
    with w.runtime(cfg) as rt:  # and it stays that way: nothing is left to correct
        again = run_job(rt)
    assert again.status == "in_sync" and again.counts["no_consent_record"] == len(no_record)


def test_the_defaults_answer_really_carries_values(world):
    """The switch is not a disguised empty answer: a default reads as denied state."""
    w = world
    switch_to_defaults(w)
    cfg = w.config()
    with w.runtime(cfg) as rt:
        consent = rt.ketch.run(rt.ketch.get_consent({"email": "nobody@example.com"},
                                                    {"email_marketing": "consent_optin"}))
        subs = rt.ketch.run(rt.ketch.get_subscriptions({"email": "nobody@example.com"}))
    assert consent is not None and consent.purposes == {"email_marketing": False} and consent.collected_at is None
    assert subs is not None and subs.topics[("newsletter", "email")] == "denied" and subs.collected_at is None


def test_a_tenant_may_read_defaults_as_choices(world):
    w = world
    cfg = w.config(policy={"ketch_defaults_are_choices": True})
    truth = w.seed(cfg, subjects=150, drift=0.25)
    switch_to_defaults(w)
    no_record = truth.injected["no_consent_record"]
    with w.runtime(cfg) as rt:
        result = run_job(rt)
    assert result.status == "applied", result.messages
    assert result.counts["no_consent_record"] == 0
    for email in no_record:
        (p,) = w.braze.profiles_by_email(email)
        assert p.email_subscribe == "unsubscribed"  # the default (consent_optin: not allowed) read as a choice
