"""The package as users get it: a wheel built from this tree, installed into a fresh venv
outside the repository, runs `reconcile demo` in an empty folder. The packaged sandbox job
stays in step with jobs/sandbox.toml; `demo` keeps its history unless --fresh; a missing
extra is named."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _without_paths(text: str) -> str:
    text = re.sub(r'"(\.\./)?(\.reconcile/[^"]*)"', r'"\2"', text)
    text = text.replace('"sqlite:///../.reconcile/', '"sqlite:///.reconcile/').replace('dir = "../reports"', 'dir = "reports"')
    return "\n".join(ln for ln in text.splitlines() if not ln.startswith("#"))


def test_packaged_sandbox_job_matches_jobs_sandbox_toml():
    shipped = (ROOT / "reconcile" / "jobs" / "sandbox.toml").read_text(encoding="utf-8")
    assert _without_paths(shipped) == _without_paths((ROOT / "jobs" / "sandbox.toml").read_text(encoding="utf-8"))
    assert "../" not in shipped


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_wheel_installs_in_a_fresh_venv_and_runs_the_demo_in_an_empty_folder(tmp_path):
    dist = tmp_path / "dist"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                            "-q", "-w", str(dist), str(ROOT)], capture_output=True, text=True, timeout=120)
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = dist.glob("ketch_braze_reconcile-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        meta = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert {"reconcile/py.typed", "reconcile/jobs/sandbox.toml", "reconcile/store/alembic.ini"} <= names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "Name: ketch-braze-reconcile" in meta and "License-Expression: Apache-2.0" in meta
    assert "Provides-Extra: postgres" in meta and "Provides-Extra: parquet" in meta and "Provides-Extra: server" in meta

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    # the dependencies come from this venv's site-packages (added as a plain path: its .pth
    # files, such as the editable install of this tree, are not processed)
    site = Path(subprocess.check_output([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                        text=True).strip())
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-index", "--no-deps",
                              "-q", str(wheel)], capture_output=True, text=True, timeout=120)
    assert install.returncode == 0, install.stderr[-2000:]

    work = tmp_path / "empty"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECONCILE_", "PYTHON", "VIRTUAL_ENV"))}
    where = subprocess.check_output([str(py), "-c", "import reconcile; print(reconcile.__file__)"], text=True, cwd=work,
                                    env=env).strip()
    assert where.startswith(str(env_dir)), where
    demo = subprocess.run([str(env_dir / "bin" / "reconcile"), "-q", "demo", "--subjects", "200"], capture_output=True,
                          text=True, timeout=120, cwd=work, env=env)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert re.search(r"applied \(exit 0\)", demo.stdout)
    assert (work / ".reconcile" / "state.db").exists()
    report = Path(re.search(r"^report: (.+)$", demo.stdout, re.M).group(1))
    assert report.is_relative_to(work) and report.parent == work / "reports" and report.exists()

    again = subprocess.run([str(env_dir / "bin" / "reconcile"), "-q", "demo", "--subjects", "200"],
                           capture_output=True, text=True, timeout=120, cwd=work, env=env)
    assert again.returncode == 0, again.stderr
    runs = subprocess.run([str(env_dir / "bin" / "reconcile"), "--config", str(ROOT / "reconcile" / "jobs" / "sandbox.toml"),
                           "--help"], capture_output=True, text=True, cwd=work, env=env)
    assert "64" in runs.stdout and "Exit codes" in runs.stdout
    assert len(list((work / "reports").glob("*.md"))) == 2  # the first demo's history was kept
    index = (work / "reports" / "index.html").read_text()
    assert index.count('href="2') == 2  # the installed templates build the index, linking both reports
    listed = subprocess.run([str(env_dir / "bin" / "reconcile"), "runs", "list"], capture_output=True, text=True,
                            cwd=work, env=env)  # the packaged sandbox job, as `demo` uses it
    assert listed.returncode == 0 and listed.stdout.splitlines()[0].split()[:2] == ["RUN", "STARTED"]
    assert len(listed.stdout.splitlines()) == 3
    version = subprocess.check_output([str(py), "-c", "from importlib.metadata import version; "
                                       "print(version('ketch-braze-reconcile'))"], text=True, cwd=work, env=env).strip()
    assert f"by reconcile {version}" in report.with_suffix(".html").read_text()


def test_demo_keeps_history_unless_fresh(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from reconcile.cli.main import cli
    from reconcile.store.store import Store

    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    for args in (["demo", "--subjects", "60"], ["demo", "--subjects", "60"]):
        result = runner.invoke(cli, ["-q", *args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
    with Store.open(f"sqlite:///{tmp_path / '.reconcile' / 'state.db'}") as store:
        assert len(store.list_runs(10)) == 2
    fresh = runner.invoke(cli, ["-q", "demo", "--subjects", "60", "--fresh"], catch_exceptions=False)
    assert fresh.exit_code == 0, fresh.output
    with Store.open(f"sqlite:///{tmp_path / '.reconcile' / 'state.db'}") as store:
        assert len(store.list_runs(10)) == 1


def test_a_missing_extra_is_named(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from reconcile.config import extras
    from reconcile.cli.main import cli

    monkeypatch.setattr(extras, "available", lambda module: module != "uvicorn")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["sandbox", "serve"])
    assert result.exit_code == 1
    assert 'reconcile sandbox serve needs uvicorn' in result.output
    assert 'pip install "ketch-braze-reconcile[server]"' in result.output

    import dataclasses

    from reconcile.cli.common import packaged_job
    from reconcile.config import StateConfig
    from reconcile.errors import ConfigError

    monkeypatch.setattr(extras, "available", lambda module: module not in ("psycopg", "pyarrow"))
    cfg = dataclasses.replace(packaged_job(tmp_path), state=StateConfig(url_env="PG_URL"))
    with pytest.raises(ConfigError, match=r'state.url_env: a PostgreSQL state store needs psycopg.*'
                                          r'pip install "ketch-braze-reconcile\[postgres\]"'):
        extras.check_config(cfg, {"PG_URL": "postgresql+psycopg://u@h/db"})
    extras.check_config(cfg, {"PG_URL": "sqlite:///x.db"})
    parquet = dataclasses.replace(cfg, universe=dataclasses.replace(cfg.universe, parquet=tmp_path / "u.parquet"))
    with pytest.raises(ConfigError, match=r'ketch-braze-reconcile\[parquet\]'):
        extras.check_config(parquet, {})


def test_the_public_api_is_the_names_in_all_imported_on_first_use():
    import subprocess
    import sys

    code = ("import sys, reconcile; assert 'pandas' not in sys.modules and 'reconcile.pipeline' not in sys.modules; "
            "from reconcile import *; "
            "print(sorted(n for n in reconcile.__all__ if getattr(reconcile, n) is None))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    import reconcile
    from reconcile.pipeline.job import run_job
    from reconcile.pipeline.session import open_session

    assert reconcile.run_job is run_job and reconcile.open_session is open_session
    assert set(reconcile.__all__) == {"__version__", *reconcile._HOMES}
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        reconcile.nope  # noqa: B018
