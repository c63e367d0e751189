"""An opt-out of unknown time is never re-subscribed. Braze's `/email/unsubscribes` is read
two ways for an address several profiles share: it stays on the list while any of its
profiles is unsubscribed, or it leaves the list once any profile re-subscribes
(`BrazeSim(unsubscribe_list="current_only")`). Under the second reading a profile that
opted out after Ketch's grant has no known opt-out time; with `apply_optins = true` it must
still not be re-subscribed. Runs over loopback against the simulators."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from reconcile.pipeline import run_job
from tests.pipeline.conftest import KEY, NOW

EMAIL = "shared.home@example.com"


def track(w, external_id: str, state: str) -> None:
    r = httpx.post(w.braze_url + "/users/track", headers={"Authorization": f"Bearer {KEY}"}, timeout=10,
                   json={"attributes": [{"external_id": external_id, "email_subscribe": state}]})
    assert r.status_code in (200, 201), r.text


def build(w, key_type: str, reading: str) -> None:
    """Ketch granted five days ago; then profile a1 opted out in Braze and b1, sharing the
    address, opted back in (both through the REST API, so the list follows the reading)."""
    w.braze.db.unsubscribe_list = reading
    for gid in ("sg-news", "sg-promo", "sg-product"):
        w.braze.add_group(gid)
    for xid in ("a1", "b1"):
        w.braze.add_profile(external_id=xid, email=EMAIL, email_subscribe="subscribed",
                            created_at=NOW - timedelta(days=30), updated_at=NOW - timedelta(days=30))
    space, value = ("email", EMAIL) if key_type == "email" else ("account_id", "a1")
    granted = int((NOW - timedelta(days=5)).timestamp())
    w.ketch.set_consent(space, value, {"email_marketing": True}, granted)
    track(w, "a1", "unsubscribed")
    track(w, "b1", "unsubscribed")
    track(w, "b1", "subscribed")
    rows = "identity\n" + EMAIL + "\n" if key_type == "email" else "identity,email\na1," + EMAIL + "\n"
    (w.tmp / "universe.csv").write_text(rows)
    (w.tmp / "deletions.csv").write_text("identity,requested_at\n")


@pytest.mark.parametrize("key_type", ["email", "external_id"])
@pytest.mark.parametrize("reading", ["while_any", "current_only"])
def test_an_opt_out_after_the_grant_is_never_resubscribed(world, key_type, reading):
    w = world
    build(w, key_type, reading)
    listed = {e["email"] for e in w.braze.to_dict()["unsubscribes"].values()}
    assert (EMAIL in listed) == (reading == "while_any")  # the switch does what it says
    cfg = w.config(key_type, policy={"apply_optins": True, "write_back_optouts": False},
                   guards={"max_subscribe_fraction": 1.0})
    before = len(w.braze.calls)
    with w.runtime(cfg) as rt:
        result = run_job(rt)
    assert result.counts["missed_optin"] == 0
    assert result.counts["braze_newer_optout"] >= 1
    profiles = {p.external_id: p.email_subscribe for p in w.braze.profiles_by_email(EMAIL)}
    assert profiles["a1"] == "unsubscribed"
    subscribes = [c for c in w.braze.calls[before:] if c["path"] == "/users/track"
                  and any(a.get("email_subscribe") in ("subscribed", "opted_in")
                          for a in (c["body"] or {}).get("attributes", []))]
    assert subscribes == []


@pytest.mark.parametrize("reading", ["while_any", "current_only"])
def test_an_opt_out_of_unknown_time_written_back_is_newer_than_the_grant(world, reading):
    """Written back to Ketch, an opt-out Braze gives no time for carries the run's time, so
    a Ketch that keeps the newest answer does not drop it behind the grant it overrides."""
    w = world
    build(w, "email", reading)
    cfg = w.config(policy={"write_back_optouts": True})
    with w.runtime(cfg) as rt:
        result = run_job(rt)
    assert result.status == "applied", result.messages
    stored = w.ketch.consent_of("email", EMAIL)
    assert stored["purposes"]["email_marketing"] is False
    assert stored["collected_at"] > int((NOW - timedelta(days=5)).timestamp())
    assert result.verified >= 1 and result.unverified == 0


@pytest.mark.parametrize("reading", ["while_any", "current_only"])
def test_an_opt_out_of_known_time_older_than_the_grant_is_resubscribed_only_with_apply_optins(world, reading):
    """The other side of the rule: an opt-out Braze dates, older than Ketch's grant."""
    w = world
    w.braze.db.unsubscribe_list = reading
    for gid in ("sg-news", "sg-promo", "sg-product"):
        w.braze.add_group(gid)
    w.braze.add_profile(external_id="c1", email="old.optout@example.com", email_subscribe="unsubscribed",
                        created_at=NOW - timedelta(days=60), updated_at=NOW - timedelta(days=20))
    w.braze.add_unsubscribe("old.optout@example.com", NOW - timedelta(days=20))
    w.ketch.set_consent("email", "old.optout@example.com", {"email_marketing": True},
                        int((NOW - timedelta(days=1)).timestamp()))
    (w.tmp / "universe.csv").write_text("identity\nold.optout@example.com\n")
    (w.tmp / "deletions.csv").write_text("identity,requested_at\n")
    with w.runtime(w.config(policy={"apply_optins": True}, guards={"max_subscribe_fraction": 1.0})) as rt:
        result = run_job(rt)
    assert result.counts["missed_optin"] == 1
    (p,) = w.braze.profiles_by_email("old.optout@example.com")
    assert p.email_subscribe == "subscribed"
