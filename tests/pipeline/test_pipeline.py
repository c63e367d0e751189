"""End to end against the sandbox over loopback HTTP: every drift class and its handling."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconcile.errors import ExitCode
from reconcile.engine.plan import drift_keys
from reconcile.models.plan import ActionKind
from reconcile.pipeline.run import plan_only
from reconcile.pipeline.job import run_job


def test_every_seeded_class_is_found_corrected_and_converges(pg_world):
    w = pg_world
    cfg = w.config()
    truth = w.seed(cfg, subjects=240, drift=0.2)
    with w.runtime(cfg) as rt:
        first = run_job(rt)
        exceptions = rt.store.exceptions(first.run_id)
    c = first.counts
    assert first.exit_code == ExitCode.OK, first.messages
    assert c["missed_deletion"] == len(truth.injected["missed_deletion"])
    assert c["ambiguous_identity"] == len(truth.injected["ambiguous_identity"])
    assert c["no_consent_record"] == len(truth.injected["no_consent_record"])
    assert c["unmatched"] == len(truth.injected["unmatched"])
    assert c["missed_blocklist"] == len(truth.injected["missed_blocklist"])
    assert c["missed_optin"] >= len(truth.injected["missed_optin"])
    assert c["braze_newer_optout"] >= len(truth.injected["braze_newer_optout"])
    assert c["missed_optout"] >= sum(len(truth.injected[k]) for k in ("missed_optout_group", "missed_optout_global"))
    malformed = {e["identity"] for e in exceptions if e["reason"] == "malformed email address"}
    assert malformed == set(truth.injected["malformed"])
    assert first.verified > 0 and first.unverified == 0

    with w.runtime(cfg) as rt:
        second = run_job(rt)
    assert second.actions_planned == 0 and second.status == "in_sync"
    for cls in ("missed_optout", "missed_deletion", "missed_blocklist"):
        assert second.counts[cls] == 0, cls


def test_traps_are_handled(world):
    w = world
    cfg = w.config()
    truth = w.seed(cfg, subjects=200, drift=0.25)
    untouched = {e: w.braze.profiles_by_email(e)[0] for e in truth.injected["no_consent_record"]}
    with w.runtime(cfg) as rt:
        run_job(rt)
    # a Ketch "no record" is reported, never unsubscribed
    for email, before in untouched.items():
        (p,) = w.braze.profiles_by_email(email)
        assert p.email_subscribe == before.email_subscribe == "subscribed"
        assert p.groups == before.groups and "subscribed" in p.groups.values()
    # a Braze opt-out newer than the Ketch grant is never resubscribed
    for email in truth.injected["braze_newer_optout"]:
        (p,) = w.braze.profiles_by_email(email)
        assert p.email_subscribe == "unsubscribed"
        assert set(p.groups.values()) == {"unsubscribed"}
    # emails differing in case/whitespace are matched and corrected
    for listed in truth.injected["case_variant"]:
        (p,) = w.braze.profiles_by_email(listed.strip())
        assert set(p.groups.values()) == {"unsubscribed"}
    # an ambiguous email on a deletion is not deleted; a plain deletion is
    for email in truth.injected["ambiguous_identity"]:
        assert len(w.braze.profiles_by_email(email)) == 2
    for email in truth.injected["missed_deletion"]:
        assert w.braze.profiles_by_email(email) == []
    # the blocklist is applied for do-not-contact
    for email in truth.injected["missed_blocklist"]:
        assert email.casefold() in {k.casefold() for k in w.braze.to_dict()["hard_bounces"]}


def test_deleted_profile_that_comes_back_is_resurrected_and_deleted_again(world):
    w = world
    cfg = w.config()
    truth = w.seed(cfg, subjects=60, drift=0.2)
    with w.runtime(cfg) as rt:
        run_job(rt)
    gone = truth.injected["missed_deletion"][0]
    w.braze.add_profile(email=gone, email_subscribe="subscribed")
    (cfg.universe.deletions_csv).write_text("identity,requested_at\n")  # the request itself is closed
    with w.runtime(cfg) as rt:
        again = run_job(rt)
    assert again.counts["resurrected"] == 1
    assert w.braze.profiles_by_email(gone) == []


def test_external_id_keys(world):
    w = world
    cfg = w.config("external_id")
    truth = w.seed(cfg, subjects=150, drift=0.2)
    with w.runtime(cfg) as rt:
        first = run_job(rt)
    assert first.exit_code == ExitCode.OK, first.messages
    # external ids are unique: a deletion is never ambiguous, even when the email is shared
    assert first.counts["ambiguous_identity"] == 0
    assert first.counts["missed_deletion"] == len(truth.injected["missed_deletion"]) + len(truth.injected["ambiguous_identity"])
    sets = [c for c in w.braze.calls if c["path"] == "/subscription/status/set"]
    assert sets and all("external_id" in c["body"] and "email" not in c["body"] for c in sets)
    with w.runtime(cfg) as rt:
        assert run_job(rt).actions_planned == 0


def test_empty_ketch_extract_is_refused_and_nothing_is_written(world):
    w = world
    cfg = w.config()
    w.seed(cfg, subjects=80, drift=0.1)
    w.ketch.from_dict({"records": []})  # Ketch now answers "no record" for everyone
    w.braze.calls.clear()
    with w.runtime(cfg) as rt:
        result = run_job(rt)
        run = rt.store.list_runs(1)[0]
    assert result.exit_code == 10 and result.status == "refused"
    assert "guard empty_extract refused apply" in result.messages[0]
    assert "Ketch extract is empty" in result.messages[0]
    assert run["status"] == "refused" and run["exit_code"] == 10 and "empty_extract" in run["error"]
    assert result.report_path and "refused" in Path(result.report_path).read_text(encoding="utf-8")
    assert w.writes() == []


def test_deletions_over_the_limit_are_refused_then_allowed_with_override(world):
    w = world
    cfg = w.config(guards={"max_deletions": 2, "max_deletion_fraction": 1.0, "max_unsubscribe_fraction": 1.0})
    truth = w.seed(cfg, subjects=200, drift=0.3)
    assert len(truth.injected["missed_deletion"]) > 2
    w.braze.calls.clear()
    with w.runtime(cfg) as rt:
        refused = run_job(rt)
    assert refused.exit_code == 12 and "max_deletions" in refused.messages[0]
    assert "cannot be undone" in refused.messages[0]
    assert w.writes() == []
    with w.runtime(cfg) as rt:
        only_optouts = run_job(rt, only=frozenset({ActionKind.GROUP_UNSUBSCRIBE, ActionKind.GLOBAL_UNSUBSCRIBE}))
    assert only_optouts.status == "applied", only_optouts.messages
    assert not any(c["path"] == "/users/delete" for c in w.writes())
    assert any(c["path"] in ("/subscription/status/set", "/users/track") for c in w.writes())
    with w.runtime(cfg) as rt:
        done = run_job(rt, overrides={"max_deletions"})
        run = rt.store.get_run(done.run_id)
    assert done.overrides == ("max_deletions",) and [o["guard"] for o in run["guard_overrides"]] == ["max_deletions"]
    assert run["guard_overrides"][0]["actor"] and run["guard_overrides"][0]["at"]
    assert any(c["path"] == "/users/delete" for c in w.writes())


def test_plan_writes_nothing_to_braze(world):
    w = world
    cfg = w.config()
    w.seed(cfg, subjects=100, drift=0.2)
    w.braze.calls.clear()
    with w.runtime(cfg) as rt:
        result = plan_only(rt)[1]
    assert result.plan.actions
    assert w.writes() == []


def test_policy_switches_write_back_optin_alias_and_suppression(world):
    w = world
    cfg = w.config(policy={"write_back_optouts": True, "apply_optins": True, "alias_unmatched": True,
                           "suppress_deleted_emails": True}, guards={"max_unsubscribe_fraction": 1.0})
    truth = w.seed(cfg, subjects=200, drift=0.25)
    with w.runtime(cfg) as rt:
        first = run_job(rt)
    assert first.exit_code == ExitCode.OK, first.messages
    for email in truth.injected["braze_newer_optout"]:  # written back to Ketch, never resubscribed
        subs = w.ketch.subscriptions_of("email", email)
        # every topic now carries a denied channel (written in the channel shape, never flat)
        assert all("denied" in chans.values() for chans in subs["topics"].values()), subs
        assert w.ketch.consent_of("email", email)["purposes"]["email_marketing"] is False
        assert w.braze.profiles_by_email(email)[0].email_subscribe == "unsubscribed"
    for email in truth.injected["missed_optin"]:  # the seeded group opt-in is applied
        (p,) = w.braze.profiles_by_email(email)
        assert p.groups["sg-news"] == "subscribed"
    for email in truth.injected["unmatched"]:  # an alias profile carries the opt-out
        (p,) = w.braze.profiles_by_email(email)
        assert p.email_subscribe == "unsubscribed" and p.external_id is None
    bounced = {k.casefold() for k in w.braze.to_dict()["hard_bounces"]}
    for email in truth.injected["missed_deletion"]:  # deleted and suppressed
        assert w.braze.profiles_by_email(email) == [] and email.casefold() in bounced
    with w.runtime(cfg) as rt:
        again = run_job(rt)
    assert again.actions_planned == 0, again.counts


def test_api_key_never_reaches_logs_reports_or_the_state_database(world, caplog):
    import logging

    from reconcile.reports.build import write_report

    w = world
    cfg = w.config()
    w.seed(cfg, subjects=80, drift=0.2)
    w.braze.faults.fail_next("/subscription/status/set", 500, times=1)
    caplog.set_level(logging.DEBUG)
    with w.runtime(cfg) as rt:
        summary = run_job(rt)
        report = write_report(rt.store, summary.run_id, cfg)
    KEY = w.key
    assert KEY not in caplog.text
    assert KEY not in report.read_text() and KEY not in report.with_suffix(".json").read_text()
    assert KEY.encode() not in (w.tmp / "state.db").read_bytes()
    assert "@example.com" not in report.read_text().replace("***@example.com", "")


def test_incremental_run_checks_what_changed_since_the_last_success(world):
    import pandas as pd

    NOW = world.now
    w = world
    cfg = w.config(guards={"max_unsubscribe_fraction": 1.0})
    w.seed(cfg, subjects=120, drift=0.1)
    with w.runtime(cfg) as rt:
        assert run_job(rt).exit_code == ExitCode.OK
    listed = pd.read_csv(cfg.universe.csv, dtype=str)
    # An import overwrites two opted-out people back to subscribed; only one row says it changed.
    out = [e for e in listed["identity"] if w.ketch.consent_of("email", e) and w.braze.profiles_by_email(e)
           and not w.ketch.consent_of("email", e)["purposes"]["email_marketing"]][:2]
    assert len(out) == 2
    for email in out:
        w.braze.db.set_email_subscribe(w.braze.db.by_email(email)[0], "subscribed")
    listed["updated_at"] = (NOW - pd.Timedelta(days=30)).isoformat()
    listed.loc[listed["identity"] == out[0], "updated_at"] = (NOW + pd.Timedelta(minutes=5)).isoformat()
    listed.to_csv(cfg.universe.csv, index=False)
    with w.runtime(cfg) as rt:
        inc = run_job(rt, mode="incremental")
        checked = rt.store.get_run(inc.run_id)["universe_count"]
    assert inc.counts["missed_optout"] == 1 and checked < len(listed)
    assert w.braze.profiles_by_email(out[0])[0].email_subscribe == "unsubscribed"
    assert w.braze.profiles_by_email(out[1])[0].email_subscribe == "subscribed"
    with w.runtime(cfg) as rt:
        assert run_job(rt, mode="full").counts["missed_optout"] == 1  # the full sweep catches the other


def test_sliced_full_sweeps_cover_every_subject_every_k_runs(world):
    import pandas as pd

    w = world
    cfg = w.config(universe={"slices": 3}, guards={"max_unsubscribe_fraction": 1.0, "max_shrink_fraction": 1.0})
    w.seed(cfg, subjects=90, drift=0.0)
    listed = {e.casefold() for e in pd.read_csv(cfg.universe.csv, dtype=str)["identity"]}
    covered: set[str] = set()
    for _ in range(3):
        w.ketch.calls.clear()
        with w.runtime(cfg) as rt:
            run_job(rt)
        asked = {c["body"]["identities"]["email"].casefold() for c in w.ketch.calls if c["path"].endswith("/consent/acme/get")}
        assert 0 < len(asked & listed) < len(listed) * 0.6, "each run checks about a third"
        covered |= asked
    assert listed <= covered, "three sliced runs check everyone"


def test_run_lock_refuses_a_second_applier_and_takes_over_a_dead_one(world):
    import subprocess
    import sys

    from reconcile.errors import RunLocked
    from reconcile.pipeline.lock import lock_name, run_lock
    from reconcile.pipeline.holder import holder_name, identity

    w = world
    cfg = w.config()
    with w.runtime(cfg) as rt, run_lock(rt) as holder:
        with w.runtime(cfg) as other:
            with pytest.raises(RunLocked) as err:
                with run_lock(other):
                    pass
        assert err.value.exit_code == ExitCode.LOCKED and holder.holder in str(err.value)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    name = lock_name(cfg.braze.rest_endpoint, w.key, None)
    with w.runtime(cfg) as rt:
        ghost = {**identity(), "pid": int(dead.stdout.strip()), "start": 1}
        assert rt.store.acquire_lock(name, holder_name(ghost), rt.clock(), 3600, ghost)
        with run_lock(rt) as mine:
            assert rt.store.lock_holder(name)["holder"] == mine.holder
        assert rt.store.lock_holder(name) is None


def test_converges_through_server_errors_on_both_apis(world):
    w = world
    cfg = w.config(braze={"max_retries": 10, "backoff_cap_seconds": 0.05},
                   ketch={"max_retries": 10}, guards={"max_unsubscribe_fraction": 1.0})
    truth = w.seed(cfg, subjects=120, drift=0.2)
    # Braze is read in few requests (every group state of 50 people in one): fail more of them
    w.braze.faults.error_rate, w.ketch.faults.error_rate = 0.4, 0.2
    with w.runtime(cfg) as rt:
        first = run_job(rt)
    assert first.exit_code == ExitCode.OK and first.actions_failed == 0, first.messages
    assert sum(1 for c in w.braze.calls if c["status"] >= 500) > 0, "faults were injected"
    w.braze.faults.error_rate = w.ketch.faults.error_rate = 0.0
    with w.runtime(cfg) as rt:
        assert run_job(rt).actions_planned == 0
    for email in truth.injected["missed_deletion"]:
        assert w.braze.profiles_by_email(email) == []


def test_a_failed_ketch_lookup_skips_that_subject_never_reads_it_as_no_record(world):
    w = world
    cfg = w.config(ketch={"max_retries": 0}, guards={"max_unsubscribe_fraction": 1.0})
    w.seed(cfg, subjects=60, drift=0.2)
    w.ketch.faults.fail_next(r"/consent/acme/get", 503, times=1)  # one lookup fails for good
    with w.runtime(cfg) as rt:
        s = run_job(rt)
        exc = rt.store.exceptions(s.run_id)
        items = rt.store.drift_items(run_id=s.run_id)
    failed = [e for e in exc if e["source"] == "ketch"]
    assert len(failed) == 1 and "Ketch lookup failed" in failed[0]["reason"]
    assert s.exit_code == ExitCode.PARTIAL and any("1 subject(s) not checked" in m for m in s.messages)
    assert failed[0]["identity"].lower() not in {d["subject_key"] for d in items}
    w.braze.calls.clear()
    with w.runtime(cfg) as rt:  # checked again on the next run
        again = run_job(rt)
        assert not [e for e in rt.store.exceptions(again.run_id) if e["source"] == "ketch"]


def test_a_wrong_ketch_organization_fails_the_run_before_any_write(world):
    from reconcile.errors import NotFound

    w = world
    cfg = w.config(ketch={"organization": "not-acme"})
    w.seed(cfg, subjects=30, drift=0.2)
    w.braze.calls.clear()
    with w.runtime(cfg) as rt:
        with pytest.raises(NotFound):
            run_job(rt)
    assert w.writes() == []


def test_a_universe_read_in_parts_finds_and_fixes_the_same_drift_as_in_one_piece(world):
    w = world
    cfg_whole = w.config(guards={"max_unsubscribe_fraction": 1.0})
    truth = w.seed(cfg_whole, subjects=160, drift=0.2)
    with w.runtime(cfg_whole) as rt:
        whole = plan_only(rt)[1]  # plans only: Braze is unchanged for the chunked run
    cfg_parts = w.config(universe={"chunk_size": 25}, guards={"max_unsubscribe_fraction": 1.0})
    with w.runtime(cfg_parts) as rt:
        parts = plan_only(rt)[1]
        done = run_job(rt)
    assert parts.obs.sizes is not None and parts.obs.sizes[0] == len(whole.obs.observed.universe)
    assert sorted(drift_keys(parts.drift)) == sorted(drift_keys(whole.drift))
    assert [a.content_hash() for a in parts.plan.actions] == [a.content_hash() for a in whole.plan.actions]
    assert done.exit_code == ExitCode.OK and done.unverified == 0 and done.verified > 0
    assert len(truth.injected["missed_deletion"]) and all(
        w.braze.profiles_by_email(e) == [] for e in truth.injected["missed_deletion"])
    with w.runtime(cfg_parts) as rt:
        assert run_job(rt).actions_planned == 0
