"""Every way a scheduled run starts reaches the post-run path: `run --job`, a sweep worker
(`run --job --worker`) and the scheduler daemon each deliver a notification (to a loopback
receiver) and a metrics update, named for the job, on success with critical drift, on a
guard's refusal and on a failure. The job's `notify` targets in schedules.toml are added
to the config's. The daemon runs as a subprocess (three quick fires)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from reconcile.cli.main import cli
from tests.cli.test_notify import no_pii, receiver

ROOT = Path(__file__).resolve().parents[2]
KEY = "test-braze-key-4711"
GUARDS = "[guards]\nmax_unsubscribe_fraction = 1.0\nmax_deletion_fraction = 1.0\nmax_deletions = 100000\n"
NOTIFY = '[notify]\ntimeout_seconds = 2\nretries = 1\n[[notify.targets]]\nkind = "slack"\nurl_env = "SLACK_URL"\n'
METRICS = '[metrics]\ntextfile = "metrics/reconcile.prom"\n'
OUTCOMES = {"ok": "critical_drift", "refused": "guard_refused", "broken": "run_failed"}


def configs(world, tmp: Path, state_url: str | None = None) -> None:
    """Three job configs on one sandbox and state store: healthy, refused by a guard (a floor
    no first run reaches), and failing (a Ketch organization the simulator does not know)."""
    from reconcile.config import load_config

    base = world.toml(extra=GUARDS + NOTIFY + METRICS)
    if state_url:
        base = base.replace('url = "sqlite:///state.db"', f'url = "{state_url}"')
    (tmp / "ok.toml").write_text(base)
    (tmp / "refused.toml").write_text(base.replace("[guards]\n", "[guards]\nmin_universe = 1000000\n"))
    (tmp / "broken.toml").write_text(base.replace('organization = "acme"', 'organization = "no-such-org"'))
    for name in ("universe.csv", "deletions.csv"):
        (tmp / name).write_text("identity\n")
    world.seed(load_config(tmp / "ok.toml"), subjects=60, drift=0.2)


def schedules(tmp: Path, *, scope: str = "full", every: str = "1d", grace: int = 60) -> Path:
    extra = 'slices = 2\n' if scope == "sliced" else ""
    text = 'timezone = "UTC"\n' + "".join(
        f'[[job]]\nname = "{name}"\nconfig = "{name}.toml"\ninterval = "{every}"\nmode = "apply"\n'
        f'scope = "{scope}"\n{extra}misfire_grace_time = {grace}\n'
        'notify = [{ kind = "webhook", url_env = "HOOK_URL" }]\n' for name in OUTCOMES)
    path = tmp / "schedules.toml"
    path.write_text(text)
    return path


def metrics(tmp: Path) -> dict[str, dict]:
    """reconcile_job -> {metric name: value} from the shared textfile."""
    out: dict[str, dict] = {}
    text = (tmp / "metrics" / "reconcile.prom").read_text()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            job = s.labels.get("reconcile_job")
            if job is None:
                continue
            if s.name == "reconcile_run_info":
                out.setdefault(job, {})["status"] = s.labels["status"]
            else:
                out.setdefault(job, {}).setdefault(s.name, s.value)
    return out


def by_job(got: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for m in got:
        body = m["json"]
        job = body.get("job") or body["text"].split(":")[0].removeprefix("reconcile ")
        out.setdefault(job, []).append(m)
    return out


def check_delivered(hook: list[dict], slack: list[dict], tmp: Path, *, jobs=OUTCOMES,
                    stopped: bool = False) -> str | None:
    """Check each job's notifications and metrics; returns the job whose last run a stop cut
    short (`stopped`: a daemon stopped mid-fire; fires run one at a time, so at most one)."""
    hooks, slacks = by_job(hook), by_job(slack)
    for job, event in jobs.items():
        assert any(event in m["json"]["events"] for m in hooks.get(job, [])), (job, hooks.get(job))
        assert slacks.get(job), f"the config's slack target is told too: {job}"  # added to, not replaced
        for m in hooks[job] + slacks[job]:
            no_pii(m["json"])
    seen = metrics(tmp)
    cut = [job for job, m in seen.items() if m["status"] == "interrupted"]
    assert len(cut) <= (1 if stopped else 0), cut
    if "ok" not in cut:
        assert seen["ok"]["status"] in ("applied", "in_sync")
    assert seen["ok"]["reconcile_last_success_timestamp_seconds"] > 0
    if "refused" not in cut:
        assert seen["refused"]["status"] == "refused" and seen["refused"]["reconcile_run_exit_code"] == 10
    assert seen["refused"]["reconcile_last_success_timestamp_seconds"] == 0
    if "broken" not in cut:
        assert seen["broken"]["status"] == "failed" and seen["broken"]["reconcile_run_exit_code"] == 1
    return cut[0] if cut else None


def test_run_job_delivers_notifications_and_metrics_for_success_refusal_and_failure(world, tmp_path):
    configs(world, tmp_path)
    path = schedules(tmp_path)
    runner = CliRunner()
    with receiver() as (hook_url, hook), receiver() as (slack_url, slack):
        env = {"BRAZE_API_KEY": KEY, "HOOK_URL": hook_url, "SLACK_URL": slack_url}
        codes = {name: runner.invoke(cli, ["-q", "run", "--job", name, "--schedules", str(path)], env=env).exit_code
                 for name in OUTCOMES}
    assert codes == {"ok": 0, "refused": 10, "broken": 1}, codes
    check_delivered(hook, slack, tmp_path)
    hooks = by_job(hook)
    assert hooks["refused"][0]["json"]["guards"] == ["empty_extract"]
    assert hooks["broken"][0]["json"]["run_id"] and hooks["broken"][0]["json"]["status"] == "failed"


def test_a_sweep_worker_delivers_notifications_and_metrics_for_each_slice(world, tmp_path):
    configs(world, tmp_path)
    path = schedules(tmp_path, scope="sliced")
    runner = CliRunner()
    with receiver() as (hook_url, hook), receiver() as (slack_url, slack):
        env = {"BRAZE_API_KEY": KEY, "HOOK_URL": hook_url, "SLACK_URL": slack_url}
        codes = {name: runner.invoke(cli, ["-q", "run", "--job", name, "--worker", "--schedules", str(path)],
                                     env=env).exit_code for name in OUTCOMES}
    assert codes == {"ok": 0, "refused": 10, "broken": 1}, codes
    check_delivered(hook, slack, tmp_path)
    # one message per slice run: each slice is a run of its own
    assert len([m for m in by_job(hook)["refused"] if "guard_refused" in m["json"]["events"]]) == 2


def scheduler(path: Path, env: dict, err: Path) -> subprocess.Popen:
    """The daemon with its stderr in a file (a pipe nobody reads would fill and block it)."""
    full = {**os.environ, **env, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
    with err.open("w") as sink:
        return subprocess.Popen([sys.executable, "-m", "reconcile", "--log-format", "json", "scheduler",
                                 "--schedules", str(path)], cwd=path.parent, env=full,
                                stdout=subprocess.DEVNULL, stderr=sink, text=True)


@pytest.mark.slow
def test_the_scheduler_delivers_notifications_and_metrics_on_three_quick_fires(world, tmp_path):
    from reconcile.store.store import Store

    configs(world, tmp_path)
    path = schedules(tmp_path, every="3s")
    state = f"sqlite:///{tmp_path / 'state.db'}"
    with receiver() as (hook_url, hook), receiver() as (slack_url, slack):
        log = tmp_path / "scheduler.err"
        proc = scheduler(path, {"BRAZE_API_KEY": KEY, "HOOK_URL": hook_url, "SLACK_URL": slack_url}, log)
        try:
            deadline = time.monotonic() + 420
            while time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.5)
                if not (tmp_path / "state.db").exists():
                    continue
                with Store.open(state) as store:
                    done = [r for r in store.list_runs(100) if r.get("finished_at")]
                if all(sum(1 for r in done if r["job"] == name) >= 3 for name in OUTCOMES):
                    break
            time.sleep(1)  # the last fire's post-run path
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=120)
    err = log.read_text()
    assert proc.returncode == 0, err[-3000:]
    lines = [json.loads(line) for line in err.splitlines() if line.strip()]  # stderr is pure NDJSON
    with Store.open(state) as store:
        finished = [r for r in store.list_runs(100) if r.get("finished_at")]
    for name in OUTCOMES:
        assert sum(1 for r in finished if r["job"] == name) >= 3, (name, err[-3000:])
    # the daemon is stopped while any job's next fire may be running: that fire ends interrupted,
    # and it is the newest run
    cut = check_delivered(hook, slack, tmp_path, stopped=True)
    if cut is not None:
        newest = max(finished, key=lambda r: (r["started_at"], r["run_id"]))
        assert (newest["job"], newest["status"]) == (cut, "interrupted"), newest
    # every fire that ran tells: three or more messages per job (the healthy one: its first fire's
    # critical drift; later fires of it find none and stay quiet)
    hooks = by_job(hook)
    assert len(hooks["refused"]) >= 3 and len(hooks["broken"]) >= 3
    fires = [e for e in lines if e.get("event") == "fire"]
    assert {e["job"] for e in fires} == set(OUTCOMES) and all(e.get("fire_time") for e in fires)
    ends = [e for e in lines if e.get("event") == "run_end"]
    assert {e["job"] for e in ends} == set(OUTCOMES)
    assert all(e["run_id"] and e["outcome"] and "exit_code" in e["counts"] for e in ends)
    assert {e["level"] for e in ends if e["outcome"] in ("refused", "failed")} == {"warning"}
    done = [e for e in lines if e.get("event") == "fire_done"]
    assert all(e["run_id"] and e["job"] and e["fire_time"] for e in done)
