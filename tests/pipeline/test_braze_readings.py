"""Braze's less convenient readings, over loopback against the sandbox switched to each:
one segment export per run whatever the parts, a fallback to per-profile reads on every
documented export failure (own bucket, failed, busy) and a wait for a late file; a
/users/track batch over a 50-object contract refused in other words; alias opt-outs
that never race an alias Braze has not propagated yet."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from reconcile.engine.apply import ALIAS_LABEL
from reconcile.engine.plan import drift_keys
from reconcile.errors import ExitCode
from reconcile.pipeline import plan_only, run_job

SEGMENT = {"segment_id": "all-users", "segment_export_poll_seconds": 0.2}
GUARDS = {"max_unsubscribe_fraction": 1.0, "max_deletion_fraction": 1.0}


def exports(w) -> list[dict]:
    return [c for c in w.braze.calls if c["method"] == "POST" and c["path"] == "/users/export/segment"]


def downloads(w) -> list[dict]:
    return [c for c in w.braze.calls if c["path"].startswith("/_downloads/")]


def per_address_reads(w) -> list[dict]:
    return [c for c in w.braze.calls if c["path"] == "/users/export/ids" and "email_address" in (c["body"] or {})]


def four_parts(w, **braze) -> tuple:
    """(config reading the universe in 4 parts, the drift of the same world read in one piece
    with the convenient reading: a URL at once)."""
    whole = w.config(braze=SEGMENT, guards=GUARDS)
    w.seed(whole, subjects=160, drift=0.2)
    with w.runtime(whole) as rt:
        _, one_piece = plan_only(rt)
    size = len(one_piece.obs.observed.universe)
    w.braze.calls.clear()
    cfg = w.config(braze={**SEGMENT, **braze}, universe={"chunk_size": -(-size // 4)}, guards=GUARDS)
    return cfg, sorted(drift_keys(one_piece.drift))


def test_a_run_in_four_parts_starts_exactly_one_segment_export(world):
    w = world
    cfg, expected = four_parts(w)
    with w.runtime(cfg) as rt:
        _, planned = plan_only(rt)
        assert rt.store.segment_export("run:" + planned.run_id) is None, "the run's export is dropped once read"
    assert planned.obs.sizes is not None, "the universe was read in parts"
    assert len(exports(w)) == 1 and exports(w)[0]["status"] == 201
    assert per_address_reads(w) == [], "every part took its profiles from the one export"
    assert sorted(drift_keys(planned.drift)) == expected
    w.braze.calls.clear()
    with w.runtime(cfg) as rt:
        done = run_job(rt)
    assert done.exit_code == ExitCode.OK and done.unverified == 0, done.messages
    assert len(exports(w)) == 1, "one export for the applying run too (verify reads no export)"


@pytest.mark.parametrize("mode", ["bucket", "failed", "busy"])
def test_an_export_braze_cannot_deliver_falls_back_to_per_profile_reads_once_per_run(world, mode):
    w = world
    cfg, expected = four_parts(w, segment_export_wait_seconds=1.5)
    w.braze.segment_export = mode
    started = time.monotonic()
    with w.runtime(cfg) as rt:
        _, planned = plan_only(rt)
    took = time.monotonic() - started
    assert sorted(drift_keys(planned.drift)) == expected, "the fallback reads the same state"
    posts = exports(w)
    assert len(posts) == 1, f"one start per run, never one per part ({len(posts)})"
    assert per_address_reads(w), "profiles were read one by one"
    if mode == "busy":
        assert posts[0]["status"] == 429, "Braze's answer to a second export of a running segment"
        assert downloads(w) == []
    if mode == "bucket":
        assert posts[0]["status"] == 201 and downloads(w) == []
    if mode == "failed":
        assert 1 <= len(downloads(w)) <= 1.5 / 0.2 + 2, "polled for the configured wait, not an hour"
        assert all(c["status"] == 404 for c in downloads(w))
    assert took < 60


def test_a_late_file_is_waited_for_and_used(world):
    w = world
    cfg, expected = four_parts(w)
    w.braze.segment_export_delay_seconds = 1.0
    with w.runtime(cfg) as rt:
        _, planned = plan_only(rt)
    statuses = [c["status"] for c in downloads(w)]
    assert len(exports(w)) == 1 and statuses[-1] == 200 and 404 in statuses
    assert per_address_reads(w) == []
    assert sorted(drift_keys(planned.drift)) == expected


def test_the_wait_for_an_export_is_sized_from_the_workspace():
    from reconcile.engine.shared_export import MAX_WAIT_SECONDS, MIN_WAIT_SECONDS, expected_wait

    assert expected_wait(0) == MIN_WAIT_SECONDS == 300
    assert expected_wait(1_000_000) == pytest.approx(300 + 3 * 1_000_000 / 2800)
    assert expected_wait(50_000_000) == MAX_WAIT_SECONDS == 3600


def add_global_optouts(w, n: int) -> list[str]:
    """n people subscribed in Braze whose email purpose Ketch says is denied, in the universe."""
    emails = [f"optout{i:03d}@example.com" for i in range(n)]
    at = int((w.now - timedelta(days=3)).timestamp())
    for email in emails:
        w.braze.add_profile(email=email, email_subscribe="subscribed")
        w.ketch.set_consent("email", email, {"email_marketing": False}, at, {"email_marketing": "consent_optin"})
    with open(w.tmp / "universe.csv", "a", encoding="utf-8") as fh:
        fh.writelines(f"{e}\n" for e in emails)
    return emails


def test_a_track_batch_over_a_50_object_contract_is_split_whatever_the_400_says(world):
    w = world
    cfg = w.config(guards=GUARDS)
    w.seed(cfg, subjects=40, drift=0.0)
    emails = add_global_optouts(w, 80)
    w.braze.track_object_limit, w.braze.track_limit_wording = 50, "other"
    w.braze.calls.clear()
    with w.runtime(cfg) as rt:
        done = run_job(rt)
        rejected = [e for e in rt.store.exceptions(done.run_id) if e["source"] == "braze_rejected"]
    assert done.exit_code == ExitCode.OK and rejected == [], (done.messages, rejected)
    assert all(w.braze.profiles_by_email(e)[0].email_subscribe == "unsubscribed" for e in emails)
    tracks = [(c["status"], len(c["body"]["attributes"])) for c in w.braze.calls if c["path"] == "/users/track"]
    assert tracks[0] == (400, 75), "the 75-object batch was refused in other words than Max Input Length Exceeded"
    assert all(n <= 50 for status, n in tracks[1:]) and {s for s, _ in tracks[1:]} == {201}
    with w.runtime(cfg) as rt:
        assert run_job(rt).actions_planned == 0


def test_alias_optouts_never_race_an_alias_braze_has_not_propagated(world):
    w = world
    cfg = w.config(policy={"alias_unmatched": True}, guards=GUARDS)
    truth = w.seed(cfg, subjects=200, drift=0.25)
    w.braze.alias_visibility_delay_seconds = 600  # an alias made by /users/alias/new stays unseen by users/track
    with w.runtime(cfg) as rt:
        done = run_job(rt)
    assert done.exit_code == ExitCode.OK, done.messages
    assert truth.injected["unmatched"]
    assert not [c for c in w.braze.calls if c["path"] == "/users/alias/new"]
    for email in truth.injected["unmatched"]:
        holders = [p for p in w.braze.db.profiles.values() if p.has_alias(email, ALIAS_LABEL)]
        assert len(holders) == 1, f"one alias profile per address, not a duplicate ({len(holders)})"
        assert holders[0].email_subscribe == "unsubscribed" and holders[0].email == email
    with w.runtime(cfg) as rt:
        assert run_job(rt).actions_planned == 0
