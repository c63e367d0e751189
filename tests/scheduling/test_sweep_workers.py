"""`reconcile run --job NAME --worker` against the loopback sandbox: several worker processes on
one PostgreSQL do every slice of a sweep exactly once, send no batch twice and keep the shared
Braze class within its limit per window across workers; a worker killed mid-apply has its slice
finished (its plan resumed) by another; one worker on SQLite sweeps every slice the same way.
After each sweep a full, unsliced plan finds nothing left to correct."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from reconcile.store.store import Store

ROOT = Path(__file__).resolve().parents[2]
KEY = "test-braze-key-4711"
GUARDS = "[guards]\nmax_unsubscribe_fraction = 1.0\nmax_deletion_fraction = 1.0\nmax_deletions = 100000\n"
WRITES = {"/subscription/status/set", "/users/track", "/users/delete", "/email/blocklist", "/email/status",
          "/users/alias/new"}
SHARED = {"/subscription/status/get", "/subscription/user/status", "/email/unsubscribes", "/email/hard_bounces",
          "/email/status", "/email/blocklist", "/email/blacklist", "/users/export/segment"}
SLICES = 4


def setup(world, tmp_path: Path, state_url: str, *, subjects: int, drift: float, braze: str = "",
          extra: str = "") -> Path:
    from reconcile.config import load_config

    text = world.toml(extra=GUARDS + extra).replace('url = "sqlite:///state.db"', f'url = "{state_url}"')
    text = text.replace("max_retries = 3\n", "max_retries = 3\n" + braze, 1)
    (tmp_path / "job.toml").write_text(text)
    for name in ("universe.csv", "deletions.csv"):
        (tmp_path / name).write_text("identity\n")
    world.seed(load_config(tmp_path / "job.toml"), subjects=subjects, drift=drift)
    world.braze.calls.clear()
    schedules = tmp_path / "schedules.toml"
    schedules.write_text('timezone = "UTC"\n[[job]]\nname = "sweep"\nconfig = "job.toml"\ninterval = "1d"\n'
                         f'mode = "apply"\nscope = "sliced"\nslices = {SLICES}\n')
    return schedules


def worker(schedules: Path, cwd: Path, sweep: str, *, lease: float = 30, crash_at: str | None = None
           ) -> subprocess.Popen:
    env = {**os.environ, "BRAZE_API_KEY": KEY, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
    if crash_at:
        env["RECONCILE_CRASH_AT"] = crash_at
    cmd = [sys.executable, "-m", "reconcile", "run", "--job", "sweep", "--worker", "--schedules", str(schedules),
           "--sweep", sweep, "--lease-seconds", str(lease), "--format", "json"]
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(procs: list[subprocess.Popen], timeout: float) -> list[tuple[int, dict | None, str]]:
    deadline = time.monotonic() + timeout
    out = []
    try:
        for p in procs:
            stdout, stderr = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
            out.append((p.returncode, json.loads(stdout) if stdout.strip() else None, stderr))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    return out


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def write_ids(call: dict) -> tuple[str, str]:
    return call["path"], json.dumps(call["body"], sort_keys=True)


def nothing_left(world, tmp_path: Path) -> list:
    """The actions a full, unsliced plan would take now (none once the sweep covered everyone)."""
    from reconcile.config import load_config
    from reconcile.pipeline.run import plan_only
    from reconcile.pipeline.session import open_session

    with open_session(load_config(tmp_path / "job.toml"), {"BRAZE_API_KEY": KEY}) as rt:
        _, planned = plan_only(rt, "full")
    return list(planned.plan.actions)


def sweep_runs(store: Store) -> dict[int, list[dict]]:
    runs: dict[int, list[dict]] = {}
    for r in store.list_runs(100):
        if (r.get("job") or "").startswith("sweep/slice-"):
            runs.setdefault(int(r["job"].rsplit("-", 1)[1]), []).append(r)
    return runs


@pytest.mark.slow
@pytest.mark.postgres
def test_three_workers_do_every_slice_once_within_the_shared_budget(world, tmp_path, pg_database):
    limit, per = 24, 1.0  # the shared class; budget_share 0.5 -> 12 a window for all workers together
    braze = "shared_budget = true\nbudget_share = 0.5\n"
    extra = f"\n[braze.rate_limits.shared]\nrequests = {limit}\nper_seconds = {per}\n"
    schedules = setup(world, tmp_path, pg_database, subjects=400, drift=0.3, braze=braze, extra=extra)
    world.braze.limiter.set_limit("shared", limit, per)
    results = finish([worker(schedules, tmp_path, "job-uid-1") for _ in range(3)], timeout=90)
    assert [code for code, _, _ in results] == [0, 0, 0], [err[-3000:] for _, _, err in results]

    ran = [s["slice"] for _, out, _ in results for s in out["slices"]]
    assert sorted(ran) == list(range(SLICES)), "every slice ran once, on one worker"
    assert sum(1 for _, out, _ in results if out["slices"]) >= 2, "the slices were shared between workers"
    with Store.open(pg_database) as store:
        assert store.get_sweep("job-uid-1")["status"] == "done"
        slices = store.sweep_slices("job-uid-1")
        assert [(s["status"], s["attempts"], s["exit_code"]) for s in slices] == [("done", 1, 0)] * SLICES
        runs = sweep_runs(store)
        assert sorted(runs) == list(range(SLICES)) and all(len(r) == 1 for r in runs.values())
        assert {s["run_id"] for s in slices} == {r[0]["run_id"] for r in runs.values()}
        actions = [a for r in runs.values() for a in store.actions(plan_id=r[0]["plan_id"])]
    assert actions and all(a["attempts"] == 1 for a in actions), "no batch was sent twice"
    subjects = Counter(s for a in actions for s in set(a["subject_keys"]))
    by_run = {a["plan_id"] for a in actions}
    assert len(by_run) >= 2
    owners: dict[str, set[str]] = {}
    for a in actions:
        for s in a["subject_keys"]:
            owners.setdefault(s, set()).add(a["plan_id"])
    assert all(len(p) == 1 for p in owners.values()), "no subject was corrected by two slices"
    assert subjects
    writes = [write_ids(c) for c in world.braze.calls if c["path"] in WRITES]
    assert writes and len(writes) == len(set(writes)), "no write request was sent twice"

    shared = [c for c in world.braze.calls if c["path"] in SHARED]
    assert not [c for c in shared if c["status"] == 429], "no request of the shared class was refused"
    per_window = Counter(math.floor(c["at"] / per) for c in shared)
    cap = math.floor(limit * 0.5)
    # The workers count a send in the window it was reserved in; the simulator in the one it
    # arrived in. A send reserved at a window's end reaches the next window when the machine
    # stalls longer than the pacer's guard, so two adjacent windows hold at most their two
    # shares plus such stragglers, and the busy windows hold the share on average.
    pairs = [per_window[w] + per_window[w + 1] for w in per_window]
    assert max(pairs) <= 2 * cap + 2, per_window
    full = sorted(per_window)[1:-1]
    assert sum(per_window[w] for w in full) <= cap * len(full) + 2, per_window
    assert len(shared) > 2 * cap, "the shared budget bound the sweep over several windows"
    assert nothing_left(world, tmp_path) == [], "the sweep's slices together covered every subject"


@pytest.mark.slow
@pytest.mark.postgres
def test_a_killed_workers_slice_is_finished_by_another(world, tmp_path, pg_database):
    schedules = setup(world, tmp_path, pg_database, subjects=300, drift=0.35)
    doomed = worker(schedules, tmp_path, "job-uid-2", lease=3, crash_at="before_send:2")

    def claimed() -> list[dict]:
        with Store.open(pg_database) as store:
            return [s for s in store.sweep_slices("job-uid-2") if s["status"] != "pending"] \
                if store.get_sweep("job-uid-2") else []

    try:
        wait_for(lambda: doomed.poll() is not None, 60, "the first worker to be killed mid-apply")
    finally:
        if doomed.poll() is None:
            doomed.kill()
    doomed.communicate()
    assert doomed.returncode == -signal.SIGKILL
    (lost,) = [s for s in claimed() if s["status"] == "claimed"]
    rescuer = finish([worker(schedules, tmp_path, "job-uid-2", lease=3)], timeout=90)
    code, out, err = rescuer[0]
    assert code == 0, err[-3000:]
    assert lost["slice"] in [s["slice"] for s in out["slices"]], "the survivor finished the lost slice"
    assert "taken over from" in err
    with Store.open(pg_database) as store:
        slices = {s["slice"]: s for s in store.sweep_slices("job-uid-2")}
        assert store.get_sweep("job-uid-2")["status"] == "done"
        assert all(s["status"] == "done" and s["exit_code"] == 0 for s in slices.values())
        assert slices[lost["slice"]]["attempts"] == 2
        assert slices[lost["slice"]]["claimed_by"] != lost["claimed_by"]
        runs = sweep_runs(store)[lost["slice"]]
        # its worker was killed mid-apply: the run that resumed its plan closed it as failed
        (crashed,) = [r for r in runs if r["status"] == "failed"]
        assert any(r["mode"] == "apply" and r["plan_id"] == crashed["plan_id"] for r in runs), "its plan was resumed"
        resumed = store.actions(plan_id=crashed["plan_id"])
    assert {a["status"] for a in resumed} <= {"confirmed", "rejected"}
    writes = [write_ids(c) for c in world.braze.calls if c["path"] in WRITES]
    assert writes and len(writes) == len(set(writes)), "no batch was sent twice across the kill"
    assert nothing_left(world, tmp_path) == []


@pytest.mark.slow
def test_one_worker_on_sqlite_sweeps_every_slice(world, tmp_path):
    from click.testing import CliRunner

    from reconcile.cli.main import cli

    state = f"sqlite:///{tmp_path / 'state.db'}"
    schedules = setup(world, tmp_path, state, subjects=200, drift=0.3, braze="shared_budget = true\n")
    result = CliRunner().invoke(cli, ["run", "--job", "sweep", "--worker", "--schedules", str(schedules),
                                      "--format", "json"], env={"BRAZE_API_KEY": KEY})
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert [s["slice"] for s in out["slices"]] == list(range(SLICES)) and out["sweep_status"] == "done"
    with Store.open(state) as store:
        (sweep,) = store.list_sweeps("sweep")
        assert [s["status"] for s in store.sweep_slices(sweep["sweep_id"])] == ["done"] * SLICES
        assert store.get_watermark("last_success_started_at") == sweep["started_at"].isoformat()
    assert nothing_left(world, tmp_path) == []
    again = CliRunner().invoke(cli, ["run", "--job", "sweep", "--worker", "--schedules", str(schedules),
                                     "--format", "json", "--sweep", sweep["sweep_id"]], env={"BRAZE_API_KEY": KEY})
    assert again.exit_code == 0 and json.loads(again.stdout)["slices"] == [], "a finished sweep is not run again"
