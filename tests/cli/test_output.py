"""Machine-readable output and exit codes: --format json, runs show latest/prefixes,
the plan summary, `--out -`, usage errors (64) and the exit-code table in every --help."""

from __future__ import annotations

import json
import re

import click
import pytest
from click.testing import CliRunner

from reconcile.cli.main import EXIT_CODES, cli
from reconcile.observability.logs import EMAIL


def paths(group: click.Group = cli, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for name, command in sorted(group.commands.items()):
        out.append((*prefix, name))
        if isinstance(command, click.Group):
            out += paths(command, (*prefix, name))
    return out


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_reconcile_help_lists_every_exit_code():
    out = invoke("--help").output
    for code, words in (("0", "in sync"), ("1", "error"), ("2", "drift found"), ("4", "partial"), ("5", "stale"),
                        ("6", "run lock"), ("10-15", "guard refused"), ("64", "usage error"), ("130", "SIGINT"),
                        ("143", "SIGTERM")):
        assert re.search(rf"^\s+{re.escape(code)}\s+.*{words}", out, re.M | re.I), (code, out)
    assert "15 max_subscribe_fraction" in out


@pytest.mark.parametrize("path", paths(), ids=" ".join)
def test_every_command_help_ends_with_the_exit_codes(path):
    out = invoke(*path, "--help").output
    assert "Exit codes:" in out and "64     usage error" in out and "143    stopped by SIGTERM" in out


@pytest.mark.parametrize("args", [["runs", "list", "--bogus"], ["no-such-command"], ["run", "--mode", "sideways"],
                                  ["runs", "list", "--limit", "zero"]])
def test_usage_errors_exit_64_not_2(args):
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 64, result.output


def test_exit_code_table_is_in_the_readme():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Exit codes", 1)[1].split("\n## ", 1)[0]
    for code in ("| 64 |", "| 130 |", "| 143 |", "15 `max_subscribe_fraction`"):
        assert code in section, code
    assert EXIT_CODES.startswith("\b")


def test_run_json_then_runs_list_and_show_latest_and_prefix(job):
    job.seed()
    run = job.cli("-q", "run", "--format", "json")
    assert run.exit_code == 0, run.output
    result = json.loads(run.stdout)
    assert result["status"] == "applied" and result["exit_code"] == 0 and result["actions_sent"] > 0

    listed = job.cli("runs", "list", "--format", "json")
    assert listed.exit_code == 0, listed.output
    runs = json.loads(listed.stdout)
    assert runs[0]["run_id"] == result["run_id"] and runs[0]["status"] == "applied"
    assert set(runs[0]["drift_counts"]) >= {"missed_optout", "missed_deletion"}

    latest = job.cli("runs", "show", "latest", "--format", "json")
    assert latest.exit_code == 0, latest.output
    assert json.loads(latest.stdout)["run"]["run_id"] == result["run_id"]
    prefix = job.cli("runs", "show", result["run_id"][:-3], "--format", "json")
    assert json.loads(prefix.stdout)["run"]["run_id"] == result["run_id"]
    missing = job.cli("runs", "show", "19990101")
    assert missing.exit_code == 1 and "no run" in missing.output


def test_ambiguous_prefix_is_refused(job):
    job.seed()
    assert job.cli("-q", "run", "--dry-run").exit_code == 2
    assert job.cli("-q", "run", "--dry-run").exit_code == 2
    ambiguous = job.cli("runs", "show", "2")
    assert ambiguous.exit_code == 1 and "matches 2 runs" in ambiguous.output


def test_plan_summary_is_per_class_and_endpoint_with_masked_examples(job):
    job.seed()
    plan = job.cli("-q", "plan")
    assert plan.exit_code == 2, plan.output
    out = plan.stdout
    assert "Reconcile would make the following corrections in Braze:" in out
    assert re.search(r"^\s+~ missed_optout\s+/\S+\s+\d+ item\(s\), \d+ subject\(s\) in \d+ batch\(es\)$", out, re.M)
    assert re.search(r"^\s+- missed_deletion\s+/users/delete\s+", out, re.M)
    examples = re.findall(r"e\.g\. (.+)$", out, re.M)
    assert examples and all("***@" in e or "id#" in e for e in examples)
    assert not [m for m in EMAIL.findall(out) if "***@" not in m]
    assert "Nothing was written to Braze." in out
    assert job.world.writes() == []


def test_plan_json_and_out_dash(job):
    job.seed()
    as_json = job.cli("-q", "plan", "--format", "json")
    assert as_json.exit_code == 2
    doc = json.loads(as_json.stdout)
    assert doc["plan_id"].startswith("plan-") and doc["changes"] and doc["status"] == "planned"
    assert {"drift_class", "kind", "endpoint", "items", "subjects", "batches", "examples"} <= set(doc["changes"][0])

    dash = job.cli("-q", "plan", "--out", "-")
    assert dash.exit_code == 2
    body = json.loads(dash.stdout)  # stdout is the plan document alone
    assert body["plan_id"].startswith("plan-") and body["actions"]
    assert "Reconcile would make" in dash.stderr

    both = job.cli("plan", "--out", "-", "--format", "json")
    assert both.exit_code == 64


def test_unwritable_out_fails_before_any_extract(job, tmp_path):
    job.seed()
    result = job.cli("plan", "--out", str(tmp_path / "missing" / "plan.json"))
    assert result.exit_code == 1 and "--out" in result.output
    assert job.world.braze.calls == [] and job.world.ketch.calls == []


def test_config_check_json(job, tmp_path):
    job.seed()
    good = job.cli("config", "check", "--format", "json")
    assert good.exit_code == 0, good.output
    assert json.loads(good.stdout)["ok"] is True
    bad = tmp_path / "bad.toml"
    bad.write_text('[nonsense]\na = 1\n[braze]\napi_key = "x"\n', encoding="utf-8")
    result = CliRunner().invoke(cli, ["--config", str(bad), "config", "check", "--format", "json"])
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["ok"] is False and {p["key"] for p in doc["problems"]} >= {"nonsense", "braze.api_key"}

