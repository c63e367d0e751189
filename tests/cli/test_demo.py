"""The README's main command: `reconcile demo`, then `reconcile run` finds nothing left to correct."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from click.testing import CliRunner

from reconcile.cli.main import cli

ROOT = Path(__file__).resolve().parents[2]


def test_demo_then_run_converges_and_seed_works(tmp_path):
    (tmp_path / "jobs").mkdir()
    job = tmp_path / "jobs" / "sandbox.toml"
    shutil.copy(ROOT / "jobs" / "sandbox.toml", job)  # its paths are relative: everything lands in tmp_path
    runner = CliRunner()
    demo = runner.invoke(cli, ["--config", str(job), "demo", "--subjects", "300", "--drift", "0.1"])
    assert demo.exit_code == 0, demo.output
    found = dict(re.findall(r"^\s+(\w+)\s+\w+\s+(\d+)$", demo.output, re.M))
    assert int(found["missed_optout"]) > 0 and int(found["missed_deletion"]) > 0
    assert re.search(r"applied \(exit 0\).*verified [1-9]", demo.output)
    report = Path(re.search(r"^report: (.+)$", demo.output, re.M).group(1))
    assert report.exists() and report.is_relative_to(tmp_path)
    assert (tmp_path / ".reconcile" / "state.db").exists()

    again = runner.invoke(cli, ["--config", str(job), "run"])
    assert again.exit_code == 0, again.output
    assert "in_sync (exit 0); actions planned 0" in again.output

    seeded = runner.invoke(cli, ["--config", str(job), "sandbox", "seed", "--subjects", "50", "--drift", "0.2"])
    assert seeded.exit_code == 0 and "seeded 50 subjects" in seeded.output
    shrunk = runner.invoke(cli, ["--config", str(job), "run", "--dry-run"])
    assert shrunk.exit_code == 11, shrunk.output  # 300 subjects to 50: the shrink guard's verdict, as run would
    dry = runner.invoke(cli, ["--config", str(job), "run", "--dry-run", "--allow", "extract_shrink"])
    assert dry.exit_code == 2, dry.output  # the fresh population has corrections pending
