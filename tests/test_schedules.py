"""schedules.toml: parsed with APScheduler's cron triggers, every problem reported at once."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconcile.cli.main import cli
from reconcile.errors import ConfigError
from reconcile.schedules import load_schedules

ROOT = Path(__file__).resolve().parents[1]


def test_the_shipped_schedules_file_is_valid_and_fires_when_it_says():
    schedules = {s.name: s for s in load_schedules(ROOT / "schedules.toml")}
    nightly = schedules["sandbox-full-nightly"]
    assert nightly.mode == "full" and nightly.config == (ROOT / "jobs" / "sandbox.toml").resolve()
    after = datetime(2026, 11, 28, 10, 30, tzinfo=timezone.utc)
    assert [t.isoformat() for t in nightly.next_runs(after, 2)] == [
        "2026-11-29T02:00:00+00:00", "2026-11-30T02:00:00+00:00"]
    hourly = schedules["sandbox-incremental-hourly"]
    assert hourly.next_runs(after, 1)[0] == datetime(2026, 11, 28, 11, 15, tzinfo=timezone.utc)


def test_every_problem_is_reported(tmp_path):
    f = tmp_path / "schedules.toml"
    f.write_text('timezone = "Mars/Olympus"\n[[schedule]]\nname = "a"\nconfig = "missing.toml"\ncron = "61 * * * *"\n'
                 'mode = "sometimes"\nmisfire_grace_seconds = 0\ncolour = "red"\n'
                 '[[schedule]]\nname = "b"\nconfig = "schedules.toml"\ncron = "0 1 * * *"\n'
                 '[[schedule]]\nname = "b"\nconfig = "schedules.toml"\ncron = "0 2 * * *"\n')
    with pytest.raises(ConfigError) as err:
        load_schedules(f)
    keys = {p.key for p in err.value.problems}
    assert keys == {"timezone", "schedule[0].config", "schedule[0].cron", "schedule[0].mode",
                    "schedule[0].misfire_grace_seconds", "schedule[0].colour", "schedule"}


def test_schedule_show_command(tmp_path):
    result = CliRunner().invoke(cli, ["schedule", "show", "--file", str(ROOT / "schedules.toml"), "--next", "2"])
    assert result.exit_code == 0, result.output
    assert "sandbox-full-nightly: full run of" in result.output and "02:00" in result.output
    bad = tmp_path / "s.toml"
    bad.write_text("[[schedule]]\nname = 1\n")
    result = CliRunner().invoke(cli, ["schedule", "show", "--file", str(bad)])
    assert result.exit_code == 1 and "schedule[0].name" in result.output
