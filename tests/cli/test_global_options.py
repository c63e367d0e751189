"""Global options (--config, -q, -v, --log-format) work after the subcommand as well as before,
`--version` names the installed distribution, and the sandbox job's own comment is a command that works."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from reconcile.cli.main import hoist_global_options

ROOT = Path(__file__).resolve().parents[2]


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILE_")}
    return subprocess.run([sys.executable, "-m", "reconcile", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=120)


def test_hoisting_moves_only_global_options_after_the_subcommand():
    assert hoist_global_options(["run", "--config", "x.toml", "-q", "--dry-run"]) == \
        ["--config", "x.toml", "-q", "run", "--dry-run"]
    assert hoist_global_options(["-q", "runs", "list", "-vv", "--log-format=json", "--limit", "3"]) == \
        ["-q", "-vv", "--log-format=json", "runs", "list", "--limit", "3"]
    assert hoist_global_options(["--config", "run", "report"]) == ["--config", "run", "report"]
    assert hoist_global_options(["subject", "show", "--", "-q"]) == ["subject", "show", "--", "-q"]
    assert hoist_global_options([]) == []


def test_version_names_the_installed_distribution(tmp_path):
    result = _cli(["--version"], tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip() == f"reconcile, version {version('ketch-braze-reconcile')}"


@pytest.mark.slow
def test_the_sandbox_comment_command_works_with_options_after_the_subcommand(tmp_path):
    job = tmp_path / "jobs" / "sandbox.toml"
    job.parent.mkdir()
    job.write_text((ROOT / "jobs" / "sandbox.toml").read_text(encoding="utf-8"), encoding="utf-8")
    comment = "\n".join(ln for ln in job.read_text(encoding="utf-8").splitlines() if ln.startswith("#"))
    assert "`reconcile run --config jobs/sandbox.toml`" in comment
    seeded = _cli(["sandbox", "seed", "--config", "jobs/sandbox.toml", "--subjects", "80"], tmp_path)
    assert seeded.returncode == 0, seeded.stderr
    run = _cli(["run", "--config", "jobs/sandbox.toml", "-q"], tmp_path)
    assert run.returncode == 0, run.stderr
    assert "\r" not in run.stderr and "starting" not in run.stderr  # -q after the command silences progress
    listed = _cli(["runs", "list", "--format", "json", "--config=jobs/sandbox.toml", "--log-format", "json", "-vv"],
                  tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert len(json.loads(listed.stdout)) == 1
    lines = [ln for ln in listed.stderr.splitlines() if ln.strip()]
    assert lines and all(json.loads(ln)["level"] for ln in lines)  # -vv and --log-format json took effect
    unknown = _cli(["run", "--confg", "jobs/sandbox.toml"], tmp_path)
    assert unknown.returncode == 64 and "No such option '--confg'" in unknown.stderr


def test_package_metadata_names_project_urls():
    import tomllib

    urls = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["urls"]
    assert {"Homepage", "Documentation", "Changelog", "Issues"} <= set(urls)
    assert all(u.startswith("https://") for u in urls.values())
