"""The Kubernetes Indexed Job example: every pod is a sweep worker of one sliced job, all pods
join one sweep (the Job's uid), and its command line exists in the CLI."""

from __future__ import annotations

from pathlib import Path

import yaml
from click.testing import CliRunner

from reconcile.cli.main import cli

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def test_the_indexed_job_runs_one_sweep_worker_per_pod():
    doc = yaml.safe_load((DEPLOY / "kubernetes-sweep-job.yaml").read_text())
    assert (doc["apiVersion"], doc["kind"]) == ("batch/v1", "Job")
    spec = doc["spec"]
    assert spec["completionMode"] == "Indexed" and spec["parallelism"] == spec["completions"] > 1
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    argv = container["command"]
    args = argv[argv.index("reconcile") + 1:]
    assert args[:4] == ["run", "--job", "prod-sweep", "--worker"]
    (sweep,) = [e for e in container["env"] if e["name"] == "RECONCILE_SWEEP_ID"]
    assert "controller-uid" in sweep["valueFrom"]["fieldRef"]["fieldPath"]
    result = CliRunner().invoke(cli, [*args, "--help"])
    assert result.exit_code == 0 and "--worker" in result.output and "RECONCILE_SWEEP_ID" in result.output


def test_worker_without_a_sliced_job_is_refused(tmp_path):
    (tmp_path / "job.toml").write_text("")
    schedules = tmp_path / "schedules.toml"
    schedules.write_text('timezone = "UTC"\n[[job]]\nname = "hourly"\nconfig = "job.toml"\ninterval = "1h"\n'
                         'mode = "apply"\nscope = "full"\n')
    no_job = CliRunner().invoke(cli, ["run", "--worker"])
    assert no_job.exit_code != 0 and "--worker needs --job NAME" in no_job.output
    flags = CliRunner().invoke(cli, ["run", "--job", "hourly", "--worker", "--dry-run", "--schedules", str(schedules)])
    assert flags.exit_code != 0 and "drop --dry-run" in flags.output
    full = CliRunner().invoke(cli, ["run", "--job", "hourly", "--worker", "--schedules", str(schedules)])
    assert full.exit_code == 1 and "a sweep worker needs scope = \"sliced\"" in full.output
