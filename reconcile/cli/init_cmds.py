"""`reconcile init [DIR]`: the files to set up a production job, copied from the package."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import click

from reconcile.errors import DataError

# (file shipped in reconcile/scaffold/, where it is written under DIR)
BASE_FILES = [("reconcile.toml", "reconcile.toml"), ("schedules.toml", "schedules.toml"),
              ("env.example", ".env.example")]
DEPLOY_FILES = ["reconcile-scheduler.service", "reconcile-job@.service", "reconcile-job@.timer", "crontab",
                "kubernetes-cronjob.yaml", "kubernetes-sweep-job.yaml", "kubernetes-ledger.yaml", "compose.yaml",
                "prometheus-alerts.yml"]


def scaffold_files(deploy: bool) -> list[tuple[str, str]]:
    """(resource path inside reconcile/scaffold, relative target path) for what `init` writes."""
    out = list(BASE_FILES)
    if deploy:
        root = files("reconcile.scaffold").joinpath("deploy")
        out += [(f"deploy/{name}", f"deploy/{name}") for name in DEPLOY_FILES if root.joinpath(name).is_file()]
    return out


@click.command("init")
@click.argument("directory", required=False, default=".", type=click.Path(file_okay=False))
@click.option("--deploy", is_flag=True, help="Also write deploy/: systemd units, crontab, Kubernetes manifests, "
                                            "and compose.yaml (scheduler, ledger, PostgreSQL).")
@click.option("--force", is_flag=True, help="Overwrite files that already exist (default: refuse, write nothing).")
def init_cmd(directory: str, deploy: bool, force: bool) -> None:
    """Write a commented production config (reconcile.toml), schedules.toml and .env.example
    naming every secret into DIRECTORY (default: here). Values to fill in are written
    <like this>; `config check` lists each one left.

    Example:

        reconcile init prod --deploy
    """
    target = Path(directory)
    plan = scaffold_files(deploy)
    existing = [rel for _, rel in plan if (target / rel).exists()]
    if existing and not force:
        raise DataError(f"{target}: would overwrite {', '.join(existing)}; nothing written "
                        "(use --force to overwrite, or another DIRECTORY)")
    root = files("reconcile.scaffold")
    for resource, rel in plan:
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(root.joinpath(resource).read_text(encoding="utf-8"), encoding="utf-8")
        click.echo(f"wrote {path}")
    config = target / "reconcile.toml"
    click.echo("\nnext:\n"
               f"  1. fill every <placeholder> in {config}\n"
               f"  2. cp {target / '.env.example'} {target / '.env'}; fill it; set -a; . {target / '.env'}; set +a\n"
               f"  3. reconcile config check --config {config}\n"
               f"  4. reconcile doctor --config {config}; reconcile plan --config {config}")


COMMANDS = [init_cmd]
