"""Crash safety: `reconcile apply` is killed with SIGKILL mid-run, then resumed.

The simulators run in this process behind loopback HTTP; the apply runs in a subprocess.
After the resume the Braze state is correct, and no batch the journal had confirmed
before the kill was sent twice (counted from the simulator's call log).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reconcile.pipeline.run import plan_only
from reconcile.store.store import Store

WRITES = {"/subscription/status/set", "/email/status", "/users/delete", "/email/blocklist", "/users/track"}


def _ids(call: dict) -> tuple[str, tuple[str, ...]]:
    body = call["body"] or {}
    ids = body.get("email") or body.get("external_id") or [
        e["email"] if isinstance(e, dict) else e for e in body.get("email_addresses", [])] or body.get("external_ids", [])
    ids = ids or [a.get("braze_id") or a.get("external_id") for a in body.get("attributes", [])]
    ids = [ids] if isinstance(ids, str) else ids
    return call["path"], tuple(sorted(ids))


def _write_config(world, cfg_path: Path) -> None:
    cfg_path.write_text(world.toml(extra="[guards]\nmax_unsubscribe_fraction = 1.0\nmax_deletion_fraction = 1.0\n"))


def _apply(cfg_path: Path, plan_path: Path, key: str) -> subprocess.Popen:
    env = {**os.environ, "BRAZE_API_KEY": key, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "reconcile", "--config", str(cfg_path), "apply", str(plan_path)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the apply subprocess")
        time.sleep(0.01)


@pytest.mark.slow
def test_sigkill_mid_apply_then_resume_sends_no_confirmed_batch_twice(world, tmp_path):
    cfg_path = tmp_path / "job.toml"
    _write_config(world, cfg_path)
    for name in ("universe.csv", "deletions.csv"):
        (tmp_path / name).write_text("identity\n")
    from reconcile.config import load_config

    cfg = load_config(cfg_path)
    world.seed(cfg, subjects=1200, drift=0.35)
    with world.runtime(cfg) as rt:
        result = plan_only(rt)[1]
        plan_body = rt.store.get_plan(result.plan.plan_id)["body"]
    planned = len(result.plan.actions)
    assert planned >= 6
    plan_path = tmp_path / "plan.json"
    plan_path.write_text(json.dumps(plan_body, default=str))

    world.braze.calls.clear()
    proc = _apply(cfg_path, plan_path, world.key)
    writes = lambda: [c for c in world.braze.calls if c["path"] in WRITES]  # noqa: E731
    _wait_for(lambda: len(writes()) >= 1 or proc.poll() is not None, 120)
    world.braze.faults.latency_seconds = 0.4  # slow the writes so the kill lands mid-apply
    _wait_for(lambda: len(writes()) >= 3 or proc.poll() is not None, 120)
    proc.send_signal(signal.SIGKILL)
    killed_output, _ = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL, killed_output
    world.braze.faults.latency_seconds = 0.0

    with Store.open(world.state_url) as store:
        before = {a["action_id"]: a for a in store.actions(plan_id=result.plan.plan_id)}
        killed = {a["run_id"] for a in before.values()}
        assert [store.get_run(r)["status"] for r in killed] == ["applying"]  # nobody closed the killed run
    confirmed_before = {k for k, a in before.items() if a["status"] == "confirmed"}
    assert 1 <= len(confirmed_before) < planned, "the kill must land mid-apply"

    resumed = _apply(cfg_path, plan_path, world.key)
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out

    with Store.open(world.state_url) as store:
        after = {a["action_id"]: a for a in store.actions(plan_id=result.plan.plan_id)}
        closed = store.get_run(killed.pop())  # the run that resumed its plan closed it
        assert closed["status"] == "failed" and "closed by the later run that resumed its plan" in closed["error"]
        assert not [r for r in store.list_runs(20) if r["status"] in ("running", "applying")]
    assert {a["status"] for a in after.values()} == {"confirmed"}
    sent = [_ids(c) for c in world.braze.calls if c["path"] in WRITES]
    by_action = {k: (a["endpoint"], tuple(sorted(t[2] for t in a["payload"]["targets"]))) for k, a in after.items()}
    for action_id in confirmed_before:
        assert sent.count(by_action[action_id]) == 1, f"confirmed batch {action_id} was sent again"
        assert after[action_id]["attempts"] == 1
    for action_id, key in by_action.items():
        assert sent.count(key) >= 1, f"batch {action_id} never reached Braze"

    with world.runtime(cfg) as rt:
        assert plan_only(rt)[1].plan.actions == (), "Braze is correct after the resume"
