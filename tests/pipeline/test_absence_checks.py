"""Subjects that must not exist in Braze (deletion requested, tombstoned) are proven absent
once per `universe.absence_recheck_hours` by incremental runs, and on every full sweep."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest

from reconcile.errors import ExitCode
from reconcile.pipeline.job import run_job
from reconcile.pipeline.session import open_session




def _runtime(w, cfg, hours: float):
    return open_session(cfg, {"BRAZE_API_KEY": w.key}, clock=lambda: w.now + timedelta(hours=hours))


def _email_exports(w) -> list[str]:
    """The addresses a run looked up: each one-address export, and every address asked of
    `/subscription/user/status` (whose answer proves an address has no profile)."""
    exports = [c["body"]["email_address"].casefold() for c in w.braze.calls
               if c["path"] == "/users/export/ids" and "email_address" in (c.get("body") or {})]
    listed = [e.casefold() for c in w.braze.calls if c["path"] == "/subscription/user/status"
              for e in (c.get("query") or {}).get("email[]", [])]
    return exports + listed


def _id_exports(w) -> set[str]:
    return {i for c in w.braze.calls if c["path"] == "/users/export/ids"
            for i in (c.get("body") or {}).get("external_ids") or []}


def _first_run(w, cfg):
    with _runtime(w, cfg, 0) as rt:
        first = run_job(rt)
        tombstoned = {t["subject_key"] for t in rt.store.tombstones()}
        absent = rt.store.absent_since(w.now - timedelta(minutes=1))
    assert first.exit_code == ExitCode.OK, first.messages
    assert tombstoned and tombstoned <= set(absent)  # every verified deletion is recorded as absent
    return tombstoned


def _found_again(result) -> int:
    """Deleted subjects found with a profile: `missed_deletion` while the request is still
    listed, `resurrected` once it is not."""
    return result.counts.get("resurrected", 0) + result.counts.get("missed_deletion", 0)


def _quiet_listing(cfg) -> None:
    """The identity list has not changed since the first run (incremental runs skip it)."""
    listed = pd.read_csv(cfg.universe.csv, dtype=str)
    listed["updated_at"] = "2020-01-01T00:00:00+00:00"
    listed.to_csv(cfg.universe.csv, index=False)


def test_incremental_runs_do_not_reprove_a_recent_absence_but_full_sweeps_do(world):
    w = world
    cfg = w.config(guards={"max_unsubscribe_fraction": 1.0}, universe={"absence_recheck_hours": 24})
    w.seed(cfg, subjects=120, drift=0.2)
    gone = _first_run(w, cfg)
    _quiet_listing(cfg)

    w.braze.calls.clear()
    with _runtime(w, cfg, 1) as rt:
        inc = run_job(rt, mode="incremental")
        summary = rt.store.get_run(inc.run_id)["summary"]
    assert inc.exit_code == ExitCode.OK, inc.messages
    assert not gone & set(_email_exports(w)), "a tombstone confirmed absent an hour ago was exported again"
    assert summary["absence_skipped"] >= len(gone)

    w.braze.calls.clear()
    with _runtime(w, cfg, 26) as rt:  # the period is over: read again, and recorded again
        later = run_job(rt, mode="incremental")
        refreshed = rt.store.absent_since(w.now + timedelta(hours=25))
    assert later.exit_code == ExitCode.OK
    assert gone <= set(_email_exports(w)) and gone <= set(refreshed)

    w.braze.calls.clear()
    with _runtime(w, cfg, 27) as rt:
        full = run_job(rt, mode="full")
    assert full.exit_code == ExitCode.OK
    assert gone <= set(_email_exports(w)), "a full sweep must prove every absence again"


def _erased_then_back(w, cfg) -> tuple[list[str], str]:
    """A first run erases subjects; the listing goes quiet; the first of them gets a Braze
    profile again. Returns (the erased subjects, the one back)."""
    w.seed(cfg, subjects=120, drift=0.2)
    gone = sorted(_first_run(w, cfg))
    _quiet_listing(cfg)
    w.braze.add_profile(email=gone[0], email_subscribe="subscribed")
    return gone, gone[0]


def test_a_resurrected_profile_is_found_by_the_next_full_sweep_and_with_recheck_off_by_any_run(world):
    w = world
    cfg = w.config(guards={"max_unsubscribe_fraction": 1.0})
    _gone, back = _erased_then_back(w, cfg)

    with _runtime(w, cfg, 1) as rt:  # within the period, an incremental run does not look
        assert _found_again(run_job(rt, mode="incremental")) == 0
    assert w.braze.profiles_by_email(back)

    off = w.config(guards={"max_unsubscribe_fraction": 1.0}, universe={"absence_recheck_hours": 0})
    with _runtime(w, off, 2) as rt:
        assert _found_again(run_job(rt, mode="incremental")) == 1
    assert w.braze.profiles_by_email(back) == []

    w.braze.add_profile(email=back, email_subscribe="subscribed")
    with _runtime(w, cfg, 3) as rt:
        run_job(rt, mode="full", dry_run=True)
        assert back not in rt.store.absent_since(w.now)  # found with a profile: no longer known absent
        assert _found_again(run_job(rt, mode="full")) == 1
        assert back in rt.store.absent_since(w.now + timedelta(hours=3))  # deleted and verified again
    assert w.braze.profiles_by_email(back) == []


def test_another_source_still_brings_a_confirmed_absence_in(world):
    w = world
    cfg = w.config(guards={"max_unsubscribe_fraction": 1.0})
    w.seed(cfg, subjects=120, drift=0.2)
    gone = sorted(_first_run(w, cfg))
    _quiet_listing(cfg)
    listed = pd.read_csv(cfg.universe.csv, dtype=str)
    extra = pd.DataFrame({"identity": [gone[0]], "updated_at": [(w.now + timedelta(minutes=30)).isoformat()]})
    pd.concat([listed, extra], ignore_index=True).to_csv(cfg.universe.csv, index=False)
    w.braze.calls.clear()
    with _runtime(w, cfg, 1) as rt:
        assert run_job(rt, mode="incremental").exit_code == ExitCode.OK
    exported = _email_exports(w)
    assert gone[0] in exported and not set(gone[1:]) & set(exported)


def test_external_id_keys_skip_the_recently_confirmed_ids(world):
    w = world
    cfg = w.config("external_id", guards={"max_unsubscribe_fraction": 1.0})
    w.seed(cfg, subjects=120, drift=0.2)
    gone = _first_run(w, cfg)
    _quiet_listing(cfg)
    w.braze.calls.clear()
    with _runtime(w, cfg, 1) as rt:
        assert run_job(rt, mode="incremental").exit_code == ExitCode.OK
    assert not gone & _id_exports(w)
    w.braze.calls.clear()
    with _runtime(w, cfg, 2) as rt:
        assert run_job(rt, mode="full").exit_code == ExitCode.OK
    assert gone <= _id_exports(w)


@pytest.mark.parametrize("hours", [-1, 24 * 32])
def test_the_recheck_period_is_validated(world, hours):
    from reconcile.errors import ConfigError

    with pytest.raises(ConfigError, match="universe.absence_recheck_hours"):
        world.config(universe={"absence_recheck_hours": hours})


def test_a_new_erasure_request_after_the_confirmed_absence_is_read_again(world):
    w = world
    cfg = w.config(guards={"max_unsubscribe_fraction": 1.0})
    _gone, back = _erased_then_back(w, cfg)  # signs up again, then asks again
    dels = pd.read_csv(cfg.universe.deletions_csv, dtype=str)
    again = pd.DataFrame({"identity": [back], "requested_at": [(w.now + timedelta(hours=2)).isoformat()]})
    pd.concat([dels, again], ignore_index=True).to_csv(cfg.universe.deletions_csv, index=False)
    with _runtime(w, cfg, 3) as rt:
        assert _found_again(run_job(rt, mode="incremental")) == 1
    assert w.braze.profiles_by_email(back) == []
