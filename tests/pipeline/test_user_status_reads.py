"""Braze reads at the floor, counted at the sandbox, over loopback.

With `subscription.groups.get` and the `users[]` answer of `/subscription/user/status`,
every group state comes from that answer (no `/subscription/status/get`), a profile is
exported by `email_address` only when it has no external id, an address listed without a
profile is not read again, and verify reads back only what the run wrote. With the
documented flat answer (which cannot tell whose state it lists) or the partner page's eight
permissions the job reads per group, and finds the same drift.
"""

from __future__ import annotations

import math
from datetime import timedelta

import httpx
import pytest

from reconcile.engine.plan import drift_keys
from reconcile.errors import ExitCode
from reconcile.pipeline import plan_only, run_job
from reconcile.sandbox.braze import PARTNER_PERMISSIONS

GUARDS = {"max_unsubscribe_fraction": 1.0, "max_deletion_fraction": 1.0}
READS = ("/users/export/ids", "/subscription/status/get", "/subscription/user/status", "/email/unsubscribes",
         "/email/hard_bounces")


def paths(calls: list[dict], path: str) -> list[dict]:
    return [c for c in calls if c["path"] == path]


def by_address(calls: list[dict]) -> list[str]:
    return [c["body"]["email_address"].casefold() for c in paths(calls, "/users/export/ids")
            if "email_address" in (c["body"] or {})]


def verify_reads(calls: list[dict]) -> list[dict]:
    """The reads after the first write: verify's (the plan phase reads before any write)."""
    first = next((i for i, c in enumerate(calls) if c["path"] not in READS), len(calls))
    return [c for c in calls[first:] if c["path"] in READS]


def seeded(w, key_type: str, keys: str, shape: str):
    cfg = w.config(key_type, guards=GUARDS)
    truth = w.seed(cfg, subjects=160, drift=0.2)
    w.braze.user_status_shape = shape
    if keys == "partner":
        w.braze.permissions = set(PARTNER_PERMISSIONS)
    w.braze.calls.clear()
    return cfg, truth


def xidless_addresses(w) -> set[str]:
    w.braze.tick()
    return {p.email.casefold() for p in w.braze.db.profiles.values() if p.email and p.external_id is None}


@pytest.mark.parametrize("key_type", ["email", "external_id"])
def test_every_group_state_comes_from_user_status_and_only_unknown_profiles_are_exported(world, key_type):
    w = world
    cfg, _truth = seeded(w, key_type, "all", "users")
    xidless = xidless_addresses(w)
    with w.runtime(cfg) as rt:
        _, planned = plan_only(rt)
    calls = list(w.braze.calls)
    subjects = len(planned.obs.observed.universe)
    assert paths(calls, "/subscription/status/get") == [], "no group is read a second time"
    listed = paths(calls, "/subscription/user/status")
    asked = [i for c in listed for i in c["query"].get("email[]", []) + c["query"].get("external_id[]", [])]
    assert len(asked) == len(set(asked)), "nobody is asked of user/status twice"
    exported = by_address(calls)
    assert len(exported) == len(set(exported)) and set(exported) <= xidless, \
        "only an address holding a profile without an external id is exported by address"
    if key_type == "email":
        assert len(listed) == math.ceil(subjects / 50)
        assert set(exported) == xidless & set(planned.obs.observed.universe["subject_key"])
    ids = [i for c in paths(calls, "/users/export/ids") for i in (c["body"] or {}).get("external_ids", [])]
    assert len(ids) == len(set(ids)), "no profile is exported twice"


@pytest.mark.parametrize("shape", ["users", "documented"])
@pytest.mark.parametrize("keys", ["all", "partner"])
@pytest.mark.parametrize("key_type", ["email", "external_id"])
def test_both_answer_shapes_and_both_keys_find_the_same_drift_and_converge(world, key_type, keys, shape):
    """The convenient reading (all permissions, users[]) is the reference; the flat answer
    costs one request and then the per-group reads; the eight permissions one refused
    request. Each finds the same drift, and a run corrects and verifies all of it."""
    w = world
    cfg, _truth = seeded(w, key_type, "all", "users")
    with w.runtime(cfg) as rt:
        _, reference = plan_only(rt)
    w.braze.user_status_shape = shape
    if keys == "partner":
        w.braze.permissions = set(PARTNER_PERMISSIONS)
    w.braze.calls.clear()
    with w.runtime(cfg) as rt:
        done = run_job(rt)
    calls = list(w.braze.calls)
    listed = paths(calls, "/subscription/user/status")
    per_group = paths(calls, "/subscription/status/get")
    if keys == "partner":
        assert [c["status"] for c in listed] == [403], "one refused request teaches the run the permission is missing"
        assert per_group
    elif shape == "documented":
        assert len(listed) == 1, "one flat answer, then never asked again (channels included)"
        assert per_group
    else:
        assert per_group == []
    assert done.exit_code == ExitCode.OK and done.unverified == 0, done.messages
    assert done.counts == reference.counts
    with w.runtime(cfg) as rt:
        _, after = plan_only(rt)
    assert not after.plan.actions, sorted(drift_keys(after.drift))


def shared_address_opt_out(w) -> str:
    """An address two profiles share: the one without an external id is subscribed to the
    newsletter group, the one with an external id (updated later) is not. Ketch denies the
    newsletter. `status/get` by address speaks for the later profile only."""
    email = "shared.optout@example.com"
    at = int((w.now - timedelta(days=3)).timestamp())
    w.braze.add_profile(email=email, groups={"sg-news": "subscribed"}, created_at=at - 86400, updated_at=at - 86400)
    w.braze.add_profile(external_id="shared-1", email=email, groups={"sg-news": "unsubscribed"},
                        created_at=at - 86400, updated_at=at)
    w.ketch.set_consent("email", email, {"email_marketing": True}, at, {"email_marketing": "consent_optin"})
    w.ketch.set_subscriptions("email", email, {"newsletter": {"email": "denied"}}, {"global_unsubscribe": "denied"},
                              at)
    with open(w.tmp / "universe.csv", "a", encoding="utf-8") as fh:
        fh.write(f"{email}\n")
    return email


def test_an_opt_out_seen_only_in_a_group_state_of_user_status_is_corrected(world):
    w = world
    cfg = w.config(guards=GUARDS)
    w.seed(cfg, subjects=30, drift=0.0)
    email = shared_address_opt_out(w)
    by_address_answer = httpx.get(f"{w.braze_url}/subscription/status/get",
                                  params={"subscription_group_id": "sg-news", "email[]": email},
                                  headers={"Authorization": f"Bearer {w.key}"}).json()
    assert by_address_answer["status"] == {email: "Unsubscribed"}, "the per-group read by address cannot see it"
    w.braze.calls.clear()
    with w.runtime(cfg) as rt:
        done = run_job(rt)
    assert done.exit_code == ExitCode.OK and done.counts["missed_optout"] == 1 and done.verified == 1, done.messages
    assert {p.groups["sg-news"] for p in w.braze.profiles_by_email(email)} == {"unsubscribed"}
    assert paths(w.braze.calls, "/subscription/status/get") == []
    sets = [c["body"] for c in paths(w.braze.calls, "/subscription/status/set")]
    assert sets == [{"subscription_group_id": "sg-news", "subscription_state": "unsubscribed", "email": [email]}]


@pytest.mark.parametrize("keys", ["all", "partner"])
def test_verify_reads_back_only_what_was_written(world, keys):
    """One group opt-out in an otherwise clean workspace: verify asks one request about that
    one subject (user/status with the permission; status/get of that group alone with the
    eight), and no export, no address list, no other group."""
    w = world
    cfg = w.config(guards=GUARDS)
    w.seed(cfg, subjects=30, drift=0.0)
    email = "one.optout@example.com"
    at = int((w.now - timedelta(days=3)).timestamp())
    w.braze.add_profile(external_id="one-1", email=email, groups={"sg-news": "subscribed", "sg-promo": "subscribed"})
    w.ketch.set_consent("email", email, {"email_marketing": True}, at, {"email_marketing": "consent_optin"})
    w.ketch.set_subscriptions("email", email, {"newsletter": {"email": "denied"}}, {"global_unsubscribe": "denied"},
                              at)
    with open(w.tmp / "universe.csv", "a", encoding="utf-8") as fh:
        fh.write(f"{email}\n")
    if keys == "partner":
        w.braze.permissions = set(PARTNER_PERMISSIONS)
    w.braze.calls.clear()
    with w.runtime(cfg) as rt:
        done = run_job(rt)
    assert done.exit_code == ExitCode.OK and done.verified == 1 and done.unverified == 0, done.messages
    reads = verify_reads(list(w.braze.calls))
    assert len(reads) == 1, [(c["path"], c["query"]) for c in reads]
    (read,) = reads
    if keys == "all":
        assert read["path"] == "/subscription/user/status" and read["query"]["email[]"] == [email]
    else:
        assert read["path"] == "/subscription/status/get"
        assert read["query"]["subscription_group_id"] == ["sg-news"] and read["query"]["email[]"] == [email]


def test_an_address_user_status_lists_without_a_profile_is_not_exported(world):
    w = world
    cfg = w.config(guards=GUARDS)
    w.seed(cfg, subjects=30, drift=0.0)
    ghosts = [f"ghost{i}@example.com" for i in range(5)]
    with open(w.tmp / "universe.csv", "a", encoding="utf-8") as fh:
        fh.writelines(f"{g}\n" for g in ghosts)
    w.braze.calls.clear()
    with w.runtime(cfg) as rt:
        _, planned = plan_only(rt)
    assert not set(ghosts) & set(by_address(w.braze.calls))
    braze = planned.obs.observed.braze.set_index("subject_key")
    assert not braze.loc[ghosts, "exists"].any()
