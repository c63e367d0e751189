"""`reconcile run` stopped by SIGINT or SIGTERM mid-apply, in a subprocess with real signals.

The batch in flight finishes and is journaled (nothing is left `sending`), the run closes as
`interrupted` with exit 128 + signal (130, 143) and a report, and the next `reconcile run`
resumes the interrupted plan: its remaining actions are confirmed, no batch confirmed
before the signal is sent again, and Braze ends correct (a dry run plans nothing).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from reconcile.config import load_config
from reconcile.store.store import Store
from tests.pipeline.test_crash import WRITES, _ids

GUARDS = "[guards]\nmax_unsubscribe_fraction = 1.0\nmax_deletion_fraction = 1.0\nmax_deletions = 100000\n"


def _cli(cfg_path: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "BRAZE_API_KEY": "test-braze-key-4711", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "reconcile", "--config", str(cfg_path), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


@pytest.mark.slow
@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_a_signalled_run_closes_interrupted_then_the_next_run_resumes(world, tmp_path, signum, code):
    cfg_path = tmp_path / "job.toml"
    cfg_path.write_text(world.toml(extra=GUARDS))
    for name in ("universe.csv", "deletions.csv"):
        (tmp_path / name).write_text("identity\n")
    cfg = load_config(cfg_path)
    world.seed(cfg, subjects=1200, drift=0.35)
    world.braze.calls.clear()
    writes = lambda: [c for c in world.braze.calls if c["path"] in WRITES]  # noqa: E731

    proc = _cli(cfg_path, "run")
    try:
        _wait_for(lambda: len(writes()) >= 1 or proc.poll() is not None, 120, "the run's first write")
        world.braze.faults.latency_seconds = 0.3  # slow the writes so the signal lands mid-apply
        _wait_for(lambda: len(writes()) >= 3 or proc.poll() is not None, 60, "three writes")
        assert proc.poll() is None, "the run finished before it could be interrupted"
        signalled_at = datetime.now(timezone.utc)
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    world.braze.faults.latency_seconds = 0.0
    assert proc.returncode == code, (out, err)
    assert f"interrupted by signal {int(signum)}" in err, err
    sent_while_running = [_ids(c) for c in writes()]

    with Store.open(world.state_url) as store:
        (run,) = store.list_runs(10)
        actions = store.actions(plan_id=run["plan_id"])
    assert (run["status"], run["exit_code"]) == ("interrupted", code), run
    assert run["error"] == f"interrupted by {signal.Signals(signum).name}"
    assert run["finished_at"] is not None
    statuses = [a["status"] for a in actions]
    assert "sending" not in statuses, "the batch in flight must finish and be journaled"
    confirmed_before = {a["action_id"] for a in actions if a["status"] == "confirmed"}
    assert 1 <= len(confirmed_before) < len(actions), f"the signal must land mid-apply: {statuses}"
    assert set(statuses) <= {"confirmed", "pending"}, statuses
    # every batch that reached Braze was journaled as confirmed: nothing sent unrecorded
    by_action = {a["action_id"]: (a["endpoint"], tuple(sorted(t[2] for t in a["payload"]["targets"])))
                 for a in actions}
    assert sorted(sent_while_running) == sorted(by_action[i] for i in confirmed_before)
    # the writes are slow (0.3 s each), so the signal found a batch in flight: that batch was
    # finished and journaled after the signal instead of being abandoned
    last_finished = max(a["finished_at"] for a in actions if a["status"] == "confirmed")
    assert last_finished >= signalled_at.replace(microsecond=0), (last_finished, signalled_at)

    report = tmp_path / "reports" / f"{run['run_id']}.json"
    assert report.exists(), f"no report for the interrupted run in {sorted(p.name for p in report.parent.glob('*'))}"
    doc = json.loads(report.read_text(encoding="utf-8"))
    assert doc["outcome"]["status"] == "interrupted" and doc["outcome"]["exit_code"] == code
    assert f"report: {report.with_suffix('.md')}" in err

    # the next run resumes the interrupted plan, then plans and applies anything left
    resumed = _cli(cfg_path, "run")
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, (out, err)
    with Store.open(world.state_url) as store:
        after = {a["action_id"]: a for a in store.actions(plan_id=run["plan_id"])}
        runs = store.list_runs(10)
    assert {a["status"] for a in after.values()} == {"confirmed"}, "the interrupted plan's actions are all confirmed"
    resume_runs = [r for r in runs if r["run_id"] != run["run_id"] and r.get("plan_id") == run["plan_id"]]
    assert [r["status"] for r in resume_runs] == ["applied"], runs
    sent = [_ids(c) for c in writes()]
    for action_id in confirmed_before:
        assert sent.count(by_action[action_id]) == 1, f"confirmed batch {action_id} was sent again"
        assert after[action_id]["attempts"] == 1
    for action_id, key in by_action.items():
        assert sent.count(key) >= 1, f"batch {action_id} never reached Braze"
        if action_id not in confirmed_before:
            assert after[action_id]["attempts"] == 1, "a pending batch is sent once by the resume"

    dry = _cli(cfg_path, "run", "--dry-run")
    out, err = dry.communicate(timeout=300)
    assert dry.returncode == 0, ("Braze is correct after the resume: the dry run plans nothing", out, err)
    with Store.open(world.state_url) as store:
        last = store.list_runs(1)[0]
    assert (last["status"], last["actions_planned"]) == ("dry_run", 0)
