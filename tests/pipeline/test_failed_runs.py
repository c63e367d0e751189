"""Runs that fail end `failed` in the runs table with the error and a non-zero exit code,
and each has a report saying why (status, exit code, error): a 401 from Braze (wrong
REST key), a universe file without the identity column, and retries spent on a Braze that
answers 503 to everything. Nothing is written to Braze in any of them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconcile.errors import AuthError, DataError, TransientApiError
from reconcile.pipeline.job import run_job
from reconcile.store.store import Store
from tests.cli.conftest import Job

FAST_RETRIES = "max_retries = 2\nbackoff_cap_seconds = 0.05"


@pytest.fixture
def job(world) -> Job:
    """The CLI job of tests/cli, with retries that give up quickly."""
    path = world.tmp / "job.toml"
    text = world.toml()
    assert "max_retries = 3" in text
    path.write_text(text.replace("max_retries = 3", FAST_RETRIES, 1), encoding="utf-8")
    return Job(world, path)


def only_run(world) -> dict:
    with Store.open(world.state_url) as store:
        runs = store.list_runs(10)
    assert len(runs) == 1, runs
    return runs[0]


def report_of(world, run: dict) -> tuple[dict, str]:
    base = world.tmp / "reports" / run["run_id"]
    js, md = base.with_suffix(".json"), base.with_suffix(".md")
    assert js.exists() and md.exists(), f"no report for failed run {run['run_id']}: " \
        f"{sorted(p.name for p in (world.tmp / 'reports').glob('*'))}"
    return json.loads(js.read_text(encoding="utf-8")), md.read_text(encoding="utf-8")


def assert_failed(world, result, says: str) -> dict:
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    assert says in result.stderr, result.stderr
    run = only_run(world)
    assert run["status"] == "failed", run
    assert run["exit_code"] == result.exit_code
    assert run["finished_at"] is not None
    assert says in (run["error"] or ""), run["error"]
    doc, md = report_of(world, run)
    assert doc["outcome"]["status"] == "failed"
    assert doc["outcome"]["exit_code"] == result.exit_code
    assert says in (doc["outcome"]["error"] or "")
    assert "failed" in md and says in md, md
    assert f"report: {world.tmp / 'reports' / run['run_id']}.md" in result.stderr
    assert world.writes() == [], "a failed run writes nothing to Braze"
    return run


def test_a_wrong_braze_api_key_fails_the_run_on_401(job):
    w = job.world
    job.seed(subjects=40, drift=0.2)
    w.braze.calls.clear()
    result = job.cli("run", env={"BRAZE_API_KEY": "not-the-key"})
    run = assert_failed(w, result, "unauthorized")
    assert any(c["status"] == 401 for c in w.braze.calls)
    assert "not-the-key" not in (run["error"] or "") and "not-the-key" not in result.output


def test_a_universe_file_without_the_identity_column_fails_the_run(job):
    w = job.world
    job.seed(subjects=40, drift=0.2)
    (w.tmp / "universe.csv").write_text("email,name\na@example.com,A\n", encoding="utf-8")
    w.braze.calls.clear()
    result = job.cli("run")
    run = assert_failed(w, result, "no column 'identity'")
    assert "universe.csv" in run["error"]


def test_exhausted_retries_on_503_fail_the_run(job):
    w = job.world
    job.seed(subjects=40, drift=0.2)
    w.braze.calls.clear()
    w.braze.faults.fail_next(r".*", 503, times=10**6)  # Braze answers 503 to everything
    result = job.cli("run")
    run = assert_failed(w, result, "503")
    tried = [c for c in w.braze.calls if c["status"] == 503]
    assert len(tried) >= 3, "the first try and max_retries = 2 retries"
    assert len({c["path"] for c in tried}) >= 1
    assert run["mode"] == "full"


@pytest.mark.parametrize("case", ["401", "universe", "503"])
def test_run_job_writes_the_failed_runs_report_and_names_the_run_in_its_progress(world, case):
    cfg = world.config(braze={"max_retries": 2, "backoff_cap_seconds": 0.05})
    world.seed(cfg, subjects=30, drift=0.2)
    expected = {"401": AuthError, "universe": DataError, "503": TransientApiError}[case]
    env = {"BRAZE_API_KEY": "wrong-key" if case == "401" else world.key}
    if case == "universe":
        (world.tmp / "universe.csv").write_text("email\na@example.com\n", encoding="utf-8")
    if case == "503":
        world.braze.faults.fail_next(r".*", 503, times=10**6)
    from reconcile.observability.events import RunIds
    from reconcile.pipeline.session import open_session

    runs = RunIds()
    with open_session(cfg, env, clock=lambda: world.now, progress=runs) as rt:
        with pytest.raises(expected) as caught:
            run_job(rt)
        run = rt.store.list_runs(1)[0]
    assert not hasattr(caught.value, "report_path") and not hasattr(caught.value, "run_id")
    assert runs.ids == [run["run_id"]], "the progress events name the run the exception ended"
    path = Path(cfg.report.dir) / f"{run['run_id']}.md"
    assert path.exists(), "the failed run's report is written before the exception leaves run_job"
    doc = json.loads(Path(path).with_suffix(".json").read_text(encoding="utf-8"))
    assert (run["status"], doc["outcome"]["status"]) == ("failed", "failed")
    assert run["exit_code"] == doc["outcome"]["exit_code"] == expected.exit_code != 0
    assert run["error"] and doc["outcome"]["error"] == run["error"]
    assert run["error"] == str(caught.value), "the runs table keeps the error's own message"
