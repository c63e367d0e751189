"""The shipped deploy/ examples parse, and the command line each runs exists in the CLI."""

from __future__ import annotations

import configparser
import shlex
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from reconcile.cli.main import cli

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string((DEPLOY / name).read_text(encoding="utf-8"))
    return parser


def reconcile_args(argv: list[str]) -> list[str]:
    """The arguments after the `reconcile` executable, with systemd's %i as a job name."""
    (at,) = [i for i, a in enumerate(argv) if a == "reconcile" or a.endswith("/reconcile")]
    return [a.replace("%i", "prod-hourly") for a in argv[at + 1:]]


def assert_cli_accepts(args: list[str]) -> None:
    result = CliRunner().invoke(cli, [*args, "--help"])
    assert result.exit_code == 0, (args, result.output)
    assert "Usage: " in result.output


def test_the_systemd_service_runs_the_scheduler():
    svc = unit("reconcile-scheduler.service")
    args = reconcile_args(shlex.split(svc["Service"]["ExecStart"]))
    assert args[0] == "scheduler" and "--schedules" in args
    assert svc["Service"]["KillSignal"] == "SIGTERM" and "-HUP" in svc["Service"]["ExecReload"]
    assert_cli_accepts(args)


def test_the_systemd_timer_starts_one_run_of_a_job():
    timer = unit("reconcile-job@.timer")
    assert timer["Timer"]["OnCalendar"] and timer["Install"]["WantedBy"] == "timers.target"
    svc = unit("reconcile-job@.service")
    assert svc["Service"]["Type"] == "oneshot"
    args = reconcile_args(shlex.split(svc["Service"]["ExecStart"]))
    assert args[:3] == ["run", "--job", "prod-hourly"]
    assert_cli_accepts(args)


def test_the_crontab_line_runs_one_job():
    lines = [ln for ln in (DEPLOY / "crontab").read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    entries = [ln for ln in lines if "=" not in ln.split()[0]]
    assert entries
    for line in entries:
        fields = line.split(None, 5)
        assert len(fields) == 6 and all(f for f in fields[:5])
        command = fields[5].split(">>")[0].split("&&")[-1]
        args = reconcile_args(shlex.split(command))
        assert args[:2] == ["run", "--job"]
        assert_cli_accepts(args)


def test_the_kubernetes_cronjob_forbids_concurrent_runs_and_runs_one_job():
    doc = yaml.safe_load((DEPLOY / "kubernetes-cronjob.yaml").read_text())
    assert (doc["apiVersion"], doc["kind"]) == ("batch/v1", "CronJob")
    spec = doc["spec"]
    assert spec["concurrencyPolicy"] == "Forbid" and len(spec["schedule"].split()) == 5
    (container,) = spec["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    args = reconcile_args(container["command"])
    assert args[:2] == ["run", "--job"]
    assert_cli_accepts(args)


@pytest.mark.parametrize("args", [["scheduler", "--no-such-flag"], ["run", "--jobb", "x"]])
def test_a_command_line_the_cli_does_not_have_is_caught(args):
    assert CliRunner().invoke(cli, [*args, "--help"]).exit_code != 0
