"""A chunked read journals each finished part: a run killed mid-read is resumed part by
part (only what the saved parts do not cover is read again), subjects that joined or
left a part since are handled, and the result equals a read in one piece."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from reconcile.config import load_config
from reconcile.engine.plan import drift_keys
from reconcile.pipeline.parts import PartResult
from reconcile.pipeline.run import plan_only
from reconcile.pipeline.session import open_session
from reconcile.store.schema import run_parts
from reconcile.store.store import Store

SUBJECTS, CHUNK = 160, 30  # six parts


def _job(w, tmp: Path, chunk: int, extra: str = "") -> Path:
    text = w.toml(extra="[guards]\nmax_unsubscribe_fraction = 1.0\nmax_deletion_fraction = 1.0\n"
                        "max_deletions = 100000\n")
    text = text.replace('full_since = "2015-01-01"', f'full_since = "2015-01-01"\nchunk_size = {chunk}\n{extra}')
    path = tmp / f"job-{chunk}.toml"
    path.write_text(text)
    for name in ("universe.csv", "deletions.csv"):
        if not (tmp / name).exists():
            (tmp / name).write_text("identity\n")
    return path


def _kill_at_part(w, cfg, nth: int) -> None:
    env = {**os.environ, "BRAZE_API_KEY": w.key, "RECONCILE_CRASH_AT": f"part:{nth}", "PYTHONUNBUFFERED": "1"}
    child = subprocess.run([sys.executable, "-m", "reconcile", "-q", "--config", str(cfg.path), "run"],
                           env=env, capture_output=True, text=True, timeout=120)
    assert child.returncode == -signal.SIGKILL, f"never reached part {nth}\n{child.stdout}\n{child.stderr}"


def _saved(cfg) -> dict[int, PartResult]:
    with Store.open(cfg.state.url) as store, store._engine.connect() as conn:
        rows = conn.execute(run_parts.select()).all()
    return {row.part: PartResult.load(row.payload) for row in rows}


def _consent_reads(w) -> int:
    return sum(1 for c in w.ketch.calls if c["path"].endswith("/get") and "/consent/" in c["path"])


def _plan(w, cfg):
    with open_session(cfg, {"BRAZE_API_KEY": w.key}, clock=lambda: w.now) as rt:
        return plan_only(rt)[1]


@pytest.fixture
def setup(world, tmp_path):
    w = world
    chunked = load_config(_job(w, tmp_path, CHUNK), {"BRAZE_API_KEY": w.key})
    whole = load_config(_job(w, tmp_path, 10**6), {"BRAZE_API_KEY": w.key})
    w.seed(chunked, subjects=SUBJECTS, drift=0.3, seed=11)
    return w, chunked, whole


def test_a_run_killed_mid_read_resumes_from_its_saved_parts(setup):
    w, chunked, whole = setup
    _kill_at_part(w, chunked, 3)
    saved = _saved(chunked)
    assert len(saved) == 3, "each finished part is saved before the next is read"
    covered = {k for part in saved.values() for k in part.seen["subject_key"]}
    assert 0 < len(covered) < SUBJECTS
    drifting = {k for part in saved.values() for k in part.drift["subject_key"]}
    assert drifting, "the saved parts hold drift"
    assert not [c for c in w.braze.calls if c["method"] == "POST" and "export" not in c["path"]
                and "status/get" not in c["path"]], "nothing was written before the read finished"

    w.ketch.calls.clear()
    resumed = _plan(w, chunked)
    # the saved parts' subjects without drift are not read again; their drift subjects are
    assert _consent_reads(w) == resumed.obs.sizes[0] - len(covered - drifting), "saved parts are not read again"
    assert _saved(chunked) == {}, "a finished read forgets its parts"
    one_piece = _plan(w, whole)
    assert sorted(drift_keys(resumed.drift)) == sorted(drift_keys(one_piece.drift))
    assert [a.content_hash() for a in resumed.plan.actions] == [a.content_hash() for a in one_piece.plan.actions]
    assert resumed.obs.sizes == (len(one_piece.obs.observed.universe),
                                 int(one_piece.obs.observed.ketch["has_record"].sum()),
                                 int(one_piece.obs.observed.braze["exists"].sum()))


def test_subjects_that_joined_or_left_a_saved_part_are_read_or_dropped(setup):
    w, chunked, whole = setup
    _kill_at_part(w, chunked, 4)
    saved = _saved(chunked)
    listed = pd.read_csv(chunked.universe.csv, dtype=str)
    drifting = {k for part in saved.values() for k in part.drift["subject_key"]}
    leaving = next(e for e in listed["identity"] if e.casefold() in drifting)
    w.braze.add_profile(email="joined@example.com", email_subscribe="subscribed")
    w.ketch.set_consent("email", "joined@example.com", {"email_marketing": False}, int(w.now.timestamp()))
    changed = pd.concat([listed[listed["identity"] != leaving], pd.DataFrame({"identity": ["joined@example.com"]})])
    changed.to_csv(chunked.universe.csv, index=False)

    w.ketch.calls.clear()
    resumed = _plan(w, chunked)
    covered = {k for part in saved.values() for k in part.seen["subject_key"]} - {leaving.casefold()} - drifting
    assert _consent_reads(w) == resumed.obs.sizes[0] - len(covered)
    assert leaving.casefold() not in set(resumed.drift["subject_key"])
    one_piece = _plan(w, whole)
    assert sorted(drift_keys(resumed.drift)) == sorted(drift_keys(one_piece.drift))
    assert [a.content_hash() for a in resumed.plan.actions] == [a.content_hash() for a in one_piece.plan.actions]


def test_parts_older_than_the_resume_period_are_read_again(setup):
    w, chunked, _ = setup
    _kill_at_part(w, chunked, 2)
    assert len(_saved(chunked)) == 2
    w.ketch.calls.clear()
    later = w.now + timedelta(hours=chunked.universe.resume_parts_hours + 1)
    with open_session(chunked, {"BRAZE_API_KEY": w.key}, clock=lambda: later) as rt:
        plan = plan_only(rt)[1]
    assert _consent_reads(w) == plan.obs.sizes[0]


def test_a_saved_part_round_trips_with_its_dtypes(setup):
    w, chunked, _ = setup
    _kill_at_part(w, chunked, 1)
    (part,) = _saved(chunked).values()
    again = PartResult.load(part.dump())
    for name in ("seen", "drift", "failed", *part.state):
        a = getattr(part, name) if name in ("seen", "drift", "failed") else part.state[name]
        b = getattr(again, name) if name in ("seen", "drift", "failed") else again.state[name]
        pd.testing.assert_frame_equal(a, b)
    assert again.print == part.print and len(part.drift)


def test_a_saved_subject_with_a_new_deletion_request_is_read_again_and_the_watermark_waits(setup):
    w, chunked, whole = setup
    _kill_at_part(w, chunked, 3)
    saved = _saved(chunked)
    drifting = {k for part in saved.values() for k in part.drift["subject_key"]}
    quiet = sorted({k for part in saved.values() for k in part.seen["subject_key"]} - drifting)
    asked = quiet[0]
    with open(chunked.universe.deletions_csv, "a") as f:
        f.write(f"{asked}\n")
    with Store.open(chunked.state.url) as store:
        killed = store.list_runs(1)[0]["started_at"]
    env = {"BRAZE_API_KEY": w.key}
    with open_session(chunked, env) as rt:
        from reconcile.pipeline.job import run_job

        result = run_job(rt)
        mark = rt.store.get_watermark("last_success_started_at")
    assert result.counts["missed_deletion"] >= 1 and w.braze.profiles_by_email(asked) == [], \
        "a deletion requested after the part was saved is found"
    assert mark == killed.isoformat(), "the watermark is the killed run's start: later changes are read next time"
