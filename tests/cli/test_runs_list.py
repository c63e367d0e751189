"""`reconcile runs list` and `runs show` as people read them: a table with headers, human
times and durations, filters by job, outcome and start time, and never "None"."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from reconcile.store.store import Store
from tests.reports.seed import seed_history

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def folder(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    (tmp_path / "jobs").mkdir()
    shutil.copy(ROOT / "jobs" / "sandbox.toml", tmp_path / "jobs" / "sandbox.toml")
    (tmp_path / ".reconcile").mkdir()
    with Store.open(f"sqlite:///{tmp_path / '.reconcile' / 'state.db'}") as store:
        ids = seed_history(store)
        store.start_run("20260313T090000-eeeeee", mode="incremental", config_hash="cfg-2",  # still running
                        started_at=datetime(2026, 3, 13, 9, 0, tzinfo=timezone.utc))
    return tmp_path, ids


def runs(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILE_")}
    return subprocess.run([sys.executable, "-m", "reconcile", "--config", "jobs/sandbox.toml", "runs", *args],
                          cwd=folder, capture_output=True, text=True, env=env, timeout=120)


def test_the_list_is_a_table_with_headers_human_times_and_durations(folder) -> None:
    path, ids = folder
    done = runs(path, "list")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["RUN", "STARTED", "DURATION", "JOB", "MODE", "OUTCOME", "EXIT", "DRIFT", "ACTIONS"]
    assert [ln.split()[0] for ln in lines[1:]] == ["20260313T090000-eeeeee", ids["failed"], ids["overridden"],
                                                   ids["refused"], ids["applied"]]
    row = {ln.split()[0]: ln for ln in lines[1:]}
    assert re.search(r"2026-03-02 09:10:00 UTC\s+\d+m \d\ds\s+nightly\s+full\s+applied\s+0\s+3\s+1/1 sent$",
                     row[ids["applied"]]), row[ids["applied"]]
    assert re.search(r"UTC\s+running\s+-\s+incremental\s+running\s+-\s+-\s+-$", row["20260313T090000-eeeeee"])
    assert "None" not in done.stdout and "+00:00" not in done.stdout and "exit=" not in done.stdout


def test_filters_by_job_status_and_start(folder) -> None:
    path, ids = folder
    failed = runs(path, "list", "--status", "failed", "--status", "refused").stdout.splitlines()[1:]
    assert [ln.split()[0] for ln in failed] == [ids["failed"], ids["refused"]]
    nightly = runs(path, "list", "--job", "nightly", "--since", "2026-03-10").stdout.splitlines()[1:]
    assert [ln.split()[0] for ln in nightly] == [ids["failed"], ids["overridden"]]
    assert runs(path, "list", "--job", "weekly").stdout.strip() == "no runs match"
    as_json = json.loads(runs(path, "list", "--since", "2026-03-11T09:00:00+00:00", "--format", "json").stdout)
    assert [r["run_id"] for r in as_json] == ["20260313T090000-eeeeee", ids["failed"], ids["overridden"]]
    assert as_json[2]["duration_seconds"] > 0 and as_json[0]["duration_seconds"] is None
    bad = runs(path, "list", "--since", "last tuesday")
    assert bad.returncode == 1 and "--since 'last tuesday'" in bad.stderr and "24h or 7d" in bad.stderr
    wrong = runs(path, "list", "--status", "great")
    assert wrong.returncode == 64 and "great" in wrong.stderr


def test_show_prints_no_none(folder) -> None:
    path, ids = folder
    for run_id in (ids["failed"], "20260313T090000-eeeeee", ids["applied"]):
        done = runs(path, "show", run_id)
        assert done.returncode == 0, done.stderr
        assert "None" not in done.stdout, done.stdout
    shown = runs(path, "show", ids["failed"]).stdout
    assert "universe - subjects" in shown and "sent -" in shown
