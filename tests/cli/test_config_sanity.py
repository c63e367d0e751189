"""`config check` through the CLI: a Braze dashboard host as REST endpoint is a warning, a
universe CSV whose header lacks the identity column is a problem naming the columns found."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _job(tmp_path: Path, endpoint: str, header: str) -> Path:
    text = (ROOT / "jobs" / "sandbox.toml").read_text(encoding="utf-8")
    text = text.replace("enabled = true", "enabled = false", 1)
    text = text.replace('rest_endpoint = "https://rest.iad-01.braze.com"', f'rest_endpoint = "{endpoint}"')
    text = text.replace('"../.reconcile/sandbox/universe.csv"', '"universe.csv"')
    text = text.replace('"../.reconcile/sandbox/deletions.csv"', '"deletions.csv"')
    (tmp_path / "universe.csv").write_text(f"{header}\na@example.com\n", encoding="utf-8")
    (tmp_path / "deletions.csv").write_text("identity,requested_at\n", encoding="utf-8")
    job = tmp_path / "job.toml"
    job.write_text(text, encoding="utf-8")
    return job


def _check(tmp_path: Path, job: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILE_")}
    env["BRAZE_API_KEY"] = "a" * 36
    return subprocess.run([sys.executable, "-m", "reconcile", "config", "check", "--config", str(job), *extra],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60)


def test_dashboard_host_warns_and_a_good_config_passes(tmp_path):
    good = _check(tmp_path, _job(tmp_path, "https://rest.iad-01.braze.com", "identity"))
    assert good.returncode == 0, good.stdout + good.stderr
    assert "warning" not in good.stderr
    dash = _check(tmp_path, _job(tmp_path, "https://dashboard-01.braze.com", "identity"))
    assert dash.returncode == 0, dash.stderr
    assert "warning: braze.rest_endpoint: dashboard-01.braze.com is not a Braze REST host" in dash.stderr
    as_json = json.loads(_check(tmp_path, _job(tmp_path, "https://dashboard-01.braze.com", "identity"),
                                "--format", "json").stdout)
    assert as_json["ok"] and len(as_json["warnings"]) == 1


def test_universe_header_without_the_identity_column_is_a_problem(tmp_path):
    bad = _check(tmp_path, _job(tmp_path, "https://rest.iad-01.braze.com", "email,name"))
    assert bad.returncode == 1
    assert "universe.identity_column" in bad.stderr and "no column 'identity' (columns: email, name)" in bad.stderr
