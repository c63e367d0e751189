"""A consent write-back names every purpose with its legalBasisCode, as Ketch's
`SetConsentRequest` requires (the simulator refuses 400 otherwise). Ketch may answer a
purpose without its legal basis (`{"allowed": "true"}`, or a bare `"true"`), and an
update may merge into or replace the stored purposes: under every combination the Braze
opt-out reaches Ketch, and no other purpose is changed or lost when its basis is known
(answered, or `mapping.purpose_legal_bases`). Runs over loopback against the simulators."""

from __future__ import annotations

from datetime import timedelta

import pytest

from reconcile.pipeline.job import run_job

EMAIL = "writes.back@example.com"


def build(w) -> None:
    """Ketch granted ten days ago, purposes stored without a legal basis; Braze unsubscribed
    two days ago (a known time, after the grant): braze_newer_optout, written back."""
    for gid in ("sg-news", "sg-promo", "sg-product"):
        w.braze.add_group(gid)
    granted = int((w.now - timedelta(days=10)).timestamp())
    w.ketch.set_consent("email", EMAIL, {"email_marketing": True, "analytics": False}, granted)
    w.ketch.set_subscriptions("email", EMAIL, {"newsletter": {"email": "granted"}}, {"global_unsubscribe": "denied"},
                              granted)
    w.braze.add_profile(external_id="wb-1", email=EMAIL, email_subscribe="unsubscribed",
                        created_at=w.now - timedelta(days=60), updated_at=w.now - timedelta(days=2))
    w.braze.add_unsubscribe(EMAIL, w.now - timedelta(days=2))
    (w.tmp / "universe.csv").write_text(f"identity\n{EMAIL}\n")
    (w.tmp / "deletions.csv").write_text("identity,requested_at\n")


@pytest.mark.parametrize("shape", ["object", "bare"])
@pytest.mark.parametrize("mode", ["merge", "replace"])
def test_the_opt_out_reaches_ketch_with_every_legal_basis(world, shape, mode):
    w = world
    w.ketch.require_legal_basis, w.ketch.purpose_shape, w.ketch.update_mode = True, shape, mode
    build(w)
    cfg = w.config(policy={"write_back_optouts": True},
                   mapping={"purpose_legal_bases": {"analytics": "legitimateinterest"}})
    with w.runtime(cfg) as rt:
        result = run_job(rt)
    assert result.status == "applied", result.messages
    assert result.counts["braze_newer_optout"] >= 1
    updates = [c for c in w.ketch.calls if c["path"].endswith("/consent/acme/update")]
    assert updates and all(c["status"] == 200 for c in updates), [c["status"] for c in updates]
    for c in updates:
        assert all(p.get("legalBasisCode") for p in c["body"]["purposes"].values()), c["body"]["purposes"]
    stored = w.ketch.consent_of("email", EMAIL)["purposes"]
    assert stored == {"email_marketing": False, "analytics": False}  # the other purpose kept, unchanged


@pytest.mark.parametrize("shape", ["object", "bare"])
def test_without_a_known_basis_other_purposes_are_left_out_not_refused(world, shape):
    """Under the merge reading a purpose left out of the update keeps its state."""
    w = world
    w.ketch.require_legal_basis, w.ketch.purpose_shape = True, shape
    build(w)
    with w.runtime(w.config(policy={"write_back_optouts": True})) as rt:
        result = run_job(rt)
    assert result.status == "applied", result.messages
    (update,) = [c for c in w.ketch.calls if c["path"].endswith("/consent/acme/update")]
    assert update["status"] == 200
    assert update["body"]["purposes"] == {"email_marketing": {"allowed": "false", "legalBasisCode": "consent_optin"}}
    assert w.ketch.consent_of("email", EMAIL)["purposes"] == {"email_marketing": False, "analytics": False}
