"""`reconcile scheduler` as a subprocess against the loopback sandbox: a fire completes a run,
SIGHUP reloads the jobs, SIGTERM mid-apply lets the batch in flight finish and be journaled,
closes the run as interrupted and exits 0, and the next fire resumes it; `run --job` is refused
with exit 6 while the scheduler's run holds the job's lock; two replicas on one PostgreSQL
apply each fire once."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reconcile.store.store import Store

ROOT = Path(__file__).resolve().parents[2]
GUARDS = "[guards]\nmax_unsubscribe_fraction = 1.0\nmax_deletion_fraction = 1.0\nmax_deletions = 100000\n"
WRITES = {"/subscription/status/set", "/users/track", "/users/delete", "/email/blocklist", "/email/status",
          "/users/alias/new"}


def wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the scheduler exited ({proc.returncode}) while waiting for {what}: "
                                 f"{proc.communicate()[1][-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def setup(world, tmp_path: Path, jobs: str, state_url: str | None = None, subjects: int = 1500,
          drift: float = 0.35) -> Path:
    from reconcile.config import load_config

    text = world.toml(extra=GUARDS)
    if state_url:
        text = text.replace('url = "sqlite:///state.db"', f'url = "{state_url}"')
    (tmp_path / "job.toml").write_text(text)
    for name in ("universe.csv", "deletions.csv"):
        (tmp_path / name).write_text("identity\n")
    world.seed(load_config(tmp_path / "job.toml"), subjects=subjects, drift=drift)
    world.braze.calls.clear()
    return write_schedules(tmp_path, jobs)


def write_schedules(tmp_path: Path, jobs: str) -> Path:
    path = tmp_path / "schedules.toml"
    path.write_text('timezone = "UTC"\n' + jobs)
    return path


def job(name: str, mode: str = "apply", every: str = "2s") -> str:
    return f'[[job]]\nname = "{name}"\nconfig = "job.toml"\ninterval = "{every}"\nmode = "{mode}"\n' \
           'scope = "full"\nmisfire_grace_time = 60\n'


def scheduler(schedules: Path, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "BRAZE_API_KEY": "test-braze-key-4711", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "reconcile", "scheduler", "--schedules", str(schedules)],
                            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def stop(proc: subprocess.Popen, signum: int = signal.SIGTERM) -> tuple[int, str]:
    if proc.poll() is None:
        proc.send_signal(signum)
    try:
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, err


def runs(state_url: str) -> list[dict]:
    with Store.open(state_url) as store:
        return store.list_runs(100)


@pytest.mark.slow
def test_the_scheduler_runs_reloads_stops_mid_apply_and_the_next_fire_resumes(world, tmp_path):
    state = f"sqlite:///{tmp_path / 'state.db'}"
    schedules = setup(world, tmp_path, job("drift-report", mode="report"))
    writes = lambda: [c for c in world.braze.calls if c["path"] in WRITES]  # noqa: E731
    proc = scheduler(schedules, tmp_path)
    try:
        wait_for(lambda: any(r["status"] == "dry_run" and r["finished_at"] for r in runs(state)), 60,
                 "a completed report run", proc)
        assert not writes(), "a report job writes nothing to Braze"
        write_schedules(tmp_path, job("sweep"))
        world.braze.faults.latency_seconds = 0.05  # the apply must not finish between two polls
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: len(writes()) >= 1, 60, "the sweep's first write after SIGHUP", proc)
        world.braze.faults.latency_seconds = 0.5  # slow the writes so SIGTERM lands mid-apply
        wait_for(lambda: len(writes()) >= 2, 60, "a second write", proc)
        code, err = stop(proc)
    finally:
        world.braze.faults.latency_seconds = 0.0
        if proc.poll() is None:
            stop(proc, signal.SIGKILL)
    assert code == 0, err[-3000:]
    for line in ("fire: job drift-report scheduled at", "reloaded", "fire: job sweep scheduled at",
                 "stopped by SIGTERM: run", "closed as interrupted; no new runs will start", "scheduler stopped (SIGTERM)"):
        assert line in err, (line, err[-3000:])
    (stopped,) = [r for r in runs(state) if r["job"] == "sweep"]
    assert (stopped["status"], stopped["exit_code"], stopped["error"]) == ("interrupted", 143, "interrupted by SIGTERM")
    with Store.open(state) as store:
        actions = store.actions(plan_id=stopped["plan_id"])
    assert "sending" not in {a["status"] for a in actions}, "the batch in flight was journaled"
    done = {a["action_id"] for a in actions if a["status"] == "confirmed"}
    assert done and len(done) < len(actions), "the signal landed mid-apply"
    sent_before = len(writes())

    proc = scheduler(schedules, tmp_path)
    try:
        wait_for(lambda: sum(1 for r in runs(state) if r["job"] == "sweep" and r["status"] == "applied") >= 1, 90,
                 "the next fire to resume and finish", proc)
        code, err = stop(proc)
    finally:
        if proc.poll() is None:
            stop(proc, signal.SIGKILL)
    assert code == 0, err[-3000:]
    with Store.open(state) as store:
        resumed = store.actions(plan_id=stopped["plan_id"])
        sweep_runs = [r for r in store.list_runs(100) if r["job"] == "sweep"]
    assert {a["status"] for a in resumed} <= {"confirmed", "rejected"}
    assert all(a["attempts"] == 1 for a in resumed if a["action_id"] in done), "no confirmed batch was sent again"
    assert any(r["mode"] == "apply" and r["plan_id"] == stopped["plan_id"] for r in sweep_runs), "the plan was resumed"
    assert len(writes()) > sent_before


@pytest.mark.slow
def test_run_job_is_refused_with_exit_6_while_the_job_runs(world, tmp_path):
    from click.testing import CliRunner

    from reconcile.cli.main import cli
    from reconcile.config import load_config
    from reconcile.pipeline.lock import RunLock, lock_name
    from reconcile.config.schedules import load_schedules

    schedules = setup(world, tmp_path, job("sweep", every="1d"), subjects=60, drift=0.2)
    cfg = load_config(tmp_path / "job.toml")
    (sweep,) = load_schedules(schedules)
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        held = RunLock(store, lock_name(cfg.braze.rest_endpoint, world.key, "sweep"), job="sweep").acquire()
        try:
            env = {"BRAZE_API_KEY": world.key}
            result = CliRunner().invoke(cli, ["run", "--job", "sweep", "--schedules", str(schedules)], env=env)
        finally:
            held.release()
        assert result.exit_code == 6, result.output
        assert "another run of job 'sweep' holds the run lock" in result.output and held.holder in result.output
        result = CliRunner().invoke(cli, ["run", "--job", "sweep", "--schedules", str(schedules)], env=env)
        assert result.exit_code == 0, result.output
        (run,) = store.list_runs(5)
    assert (run["job"], run["status"], sweep.run_mode) == ("sweep", "applied", run["mode"])
    assert world.writes(), "the second run --job applied"


@pytest.mark.slow
@pytest.mark.postgres
def test_two_scheduler_replicas_on_one_postgresql_apply_each_fire_once(world, tmp_path, pg_database):
    schedules = setup(world, tmp_path, job("sweep"), state_url=pg_database, subjects=200, drift=0.2)
    replicas = [scheduler(schedules, tmp_path) for _ in range(2)]
    try:
        def fired() -> int:
            return sum(1 for r in runs(pg_database) if r["job"] == "sweep" and r["finished_at"])

        wait_for(lambda: fired() >= 3, 180, "three fires of the job", replicas[0])
        results = [stop(p) for p in replicas]
    finally:
        for p in replicas:
            if p.poll() is None:
                stop(p, signal.SIGKILL)
    assert [code for code, _ in results] == [0, 0], [err[-2000:] for _, err in results]
    ran: dict[str, list[int]] = {}
    both_fired = None
    for i, (_, err) in enumerate(results):
        fired = re.findall(r"fire: job sweep scheduled at (\S+)", err)
        locked = set(re.findall(r"(?:skip|missed): job sweep fire at (\S+?\+\d\d:\d\d)", err))
        claimed = set(re.findall(r"the fire at (\S+) was already run by another scheduler", err))
        for t in fired:
            if t not in locked and t not in claimed:
                ran.setdefault(t, []).append(i)
        both_fired = set(fired) if both_fired is None else both_fired & set(fired)
    assert len(both_fired) >= 2, "both replicas saw the same fires"
    assert {t: who for t, who in ran.items() if len(who) > 1} == {}, "a fire ran on both replicas"
    assert all(len(ran.get(t, [])) == 1 for t in both_fired if t in ran)
    with Store.open(pg_database) as store:
        all_runs = [r for r in store.list_runs(100) if r["job"] == "sweep"]
        actions = [a for r in all_runs if r["plan_id"] for a in store.actions(plan_id=r["plan_id"])]
    cut = sum(1 for _, err in results if "before its run started" in err)  # the stop came as a fire began
    assert sum(len(who) for who in ran.values()) - cut <= len(all_runs) <= sum(len(who) for who in ran.values()), \
        "one run per fire, recorded"
    assert all(a["attempts"] == 1 for a in actions if a["status"] == "confirmed"), "no batch was sent twice"
    sent = [c for c in world.braze.calls if c["path"] in WRITES]
    assert sent, "the first fire applied the seeded drift"


def test_the_health_endpoints_answer_during_a_run_and_readiness_ends_with_a_stop(world, tmp_path):
    """`scheduler --health-port`: /healthz and /readyz answer as JSON with each job's next
    fire and last outcome, /healthz also while a slow run holds the main thread; anything
    else is 404. Once a stop is asked, /readyz answers 503 naming it."""
    import httpx

    from reconcile.sandbox.server import free_port

    state = f"sqlite:///{tmp_path / 'state.db'}"
    schedules = setup(world, tmp_path, job("drift-report", mode="report"), subjects=300)
    port = free_port()
    env = {**os.environ, "BRAZE_API_KEY": "test-braze-key-4711", "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "reconcile", "scheduler", "--schedules", str(schedules),
                             "--health-port", str(port)], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"

    def get(path: str) -> httpx.Response | None:
        try:
            return httpx.get(base + path, timeout=5)
        except httpx.TransportError:
            return None

    try:
        wait_for(lambda: any(r["finished_at"] for r in runs(state)), 60, "a completed report run", proc)
        def last_done() -> dict | None:
            answer = get("/readyz")
            last = answer.json()["jobs"]["drift-report"]["last"] if answer is not None else None
            return answer.json() if last and last["outcome"] != "running" else None

        seen: list[dict] = []
        wait_for(lambda: seen.append(last_done()) or seen[-1] is not None, 30, "readiness after a finished fire",
                 proc)
        ready = seen[-1]
        assert ready["status"] == "ready" and ready["reason"] is None and ready["jobs"]["drift-report"]["next_fire"]
        last = ready["jobs"]["drift-report"]["last"]
        assert last["outcome"] == "dry_run" and last["run_id"] in {r["run_id"] for r in runs(state)}
        assert get("/metrics").status_code == 404
        world.braze.faults.latency_seconds = 0.3  # the next run holds the main thread for a while
        wait_for(lambda: (get("/healthz").json() or {}).get("running") == "drift-report", 60, "a run going", proc)
        alive = get("/healthz")
        assert alive.status_code == 200 and alive.json()["status"] == "alive"
        assert "test-braze-key-4711" not in alive.text
    finally:
        world.braze.faults.latency_seconds = 0.0
        code, err = stop(proc)
    assert code == 0, err[-3000:]
    assert f"health endpoints on {base}" in err
    assert get("/healthz") is None  # the server stopped with the daemon


def test_readiness_names_a_stop_and_a_scheduler_that_is_not_running(tmp_path):
    from reconcile.scheduling.daemon import Daemon

    daemon = Daemon(write_schedules(tmp_path, job("nightly")))
    assert daemon.snapshot()["reason"] == "the scheduler thread is not running"
    daemon.stop_signal = signal.SIGTERM
    assert daemon.snapshot()["reason"] == "stopping (SIGTERM)"
