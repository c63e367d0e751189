"""`reconcile init` as a pip user meets it: the wheel installed in a fresh venv outside the
repository writes a production config whose every `config check` problem is a named
placeholder or secret to fill; after `demo`, `runs list` finds the demo's state without --config."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCAFFOLD = ROOT / "reconcile" / "scaffold"


def _env_names(data, out=None) -> set[str]:
    out = set() if out is None else out
    if isinstance(data, dict):
        for k, v in data.items():
            if k.endswith("_env") and isinstance(v, str):
                out.add(v)
            else:
                _env_names(v, out)
    elif isinstance(data, list):
        for v in data:
            _env_names(v, out)
    return out


def test_env_example_names_every_secret_of_the_config():
    names = _env_names(tomllib.loads((SCAFFOLD / "reconcile.toml").read_text(encoding="utf-8")))
    example = (SCAFFOLD / "env.example").read_text(encoding="utf-8")
    declared = set(re.findall(r"^([A-Z][A-Z0-9_]*)=", example, re.M))
    assert names and names <= declared, names - declared


def test_shipped_deploy_files_are_the_repository_ones_and_run_the_scaffold_jobs():
    shipped = SCAFFOLD / "deploy"
    for path in (ROOT / "deploy").iterdir():
        assert (shipped / path.name).read_text(encoding="utf-8") == path.read_text(encoding="utf-8"), path.name
    jobs = {j["name"] for j in tomllib.loads((SCAFFOLD / "schedules.toml").read_text(encoding="utf-8"))["job"]}
    for path in shipped.iterdir():
        for name in re.findall(r"--job[ \"',]+([\w-]+)", path.read_text(encoding="utf-8")):
            assert name in jobs, (path.name, name)


def test_init_refuses_to_overwrite_and_writes_nothing(tmp_path):
    from click.testing import CliRunner

    from reconcile.cli.main import cli

    (tmp_path / "schedules.toml").write_text("# mine\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["init", str(tmp_path)])
    assert result.exit_code == 1 and "would overwrite schedules.toml" in result.output
    assert not (tmp_path / "reconcile.toml").exists()
    assert (tmp_path / "schedules.toml").read_text(encoding="utf-8") == "# mine\n"
    forced = CliRunner().invoke(cli, ["init", str(tmp_path), "--force"])
    assert forced.exit_code == 0 and (tmp_path / "schedules.toml").read_text(encoding="utf-8").startswith("# When")


def _run(args, cwd, env, timeout=120):
    return subprocess.run(args, capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_wheel_init_check_demo_and_runs_list_without_config(tmp_path):
    dist = tmp_path / "dist"
    build = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
                  "-w", str(dist), str(ROOT)], ROOT, None)
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = dist.glob("ketch_braze_reconcile-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        meta = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert {"reconcile/scaffold/reconcile.toml", "reconcile/scaffold/schedules.toml", "reconcile/scaffold/env.example",
            "reconcile/scaffold/deploy/kubernetes-cronjob.yaml", "reconcile/scaffold/deploy/crontab"} <= names
    assert re.search(r"^Project-URL: Homepage, https://", meta, re.M)

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    site = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path,
                     None).stdout.strip())
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    install = _run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-index", "--no-deps", "-q",
                    str(wheel)], tmp_path, None)
    assert install.returncode == 0, install.stderr[-2000:]

    work = tmp_path / "empty"
    work.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RECONCILE_", "PYTHON", "VIRTUAL_ENV")) and not k.endswith(("_API_KEY", "_URL"))}
    exe = str(env_dir / "bin" / "reconcile")
    assert _run([exe, "--version"], work, env).stdout.strip() == "reconcile, version 0.1.0"

    init = _run([exe, "init", "prod", "--deploy"], work, env)
    assert init.returncode == 0, init.stderr
    assert {p.name for p in (work / "prod").iterdir()} == {"reconcile.toml", "schedules.toml", ".env.example", "deploy"}
    assert (work / "prod" / "deploy" / "reconcile-scheduler.service").exists()

    check = _run([exe, "config", "check", "--config", "prod/reconcile.toml", "--format", "json"], work, env)
    assert check.returncode == 1, check.stdout + check.stderr
    problems = json.loads(check.stdout)["problems"]
    secrets = set(re.findall(r"^([A-Z][A-Z0-9_]*)=", (work / "prod" / ".env.example").read_text(), re.M))
    placeholders = [p for p in problems if p["problem"].startswith("placeholder not filled in: <")]
    unset = [p for p in problems if (m := re.match(r"environment variable (\w+) is not set$", p["problem"]))
             and m.group(1) in secrets]
    assert len(placeholders) + len(unset) == len(problems), problems
    assert {p["key"] for p in placeholders} >= {"braze.rest_endpoint", "ketch.organization",
                                                 "mapping.topics[0].subscription_group_id"}
    assert {p["key"] for p in unset} == {"braze.api_key_env", "universe.sql.url_env", "state.url_env"}

    schedules = _run([exe, "schedule", "show", "--schedules", "prod/schedules.toml"], work, env)
    assert "prod-hourly" in schedules.stdout + schedules.stderr

    needs = _run([exe, "config", "show"], work, env)
    assert needs.returncode == 1 and "`reconcile init` writes a production config" in needs.stderr
    before = _run([exe, "runs", "list"], work, env)
    assert before.returncode == 0 and "no runs recorded yet" in before.stdout

    demo = _run([exe, "demo", "--subjects", "150", "-q"], work, env)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    listed = _run([exe, "runs", "list", "--format", "json"], work, env)
    assert listed.returncode == 0, listed.stderr
    runs = json.loads(listed.stdout)
    assert len(runs) == 1 and runs[0]["exit_code"] == 0
    shown = _run([exe, "runs", "show", "latest", "--format", "json"], work, env)
    assert shown.returncode == 0 and json.loads(shown.stdout)["run"]["run_id"] == runs[0]["run_id"]
