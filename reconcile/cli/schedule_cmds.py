"""`reconcile schedule show`: validate schedules.toml and list each job's next runs."""

from __future__ import annotations

from datetime import datetime, timezone

import click

from reconcile.cli.common import echo_json, format_option

schedules_option = click.option(
    "--schedules", "--file", "schedules", envvar="RECONCILE_SCHEDULES", type=click.Path(dir_okay=False),
    help="The schedules file (default: $RECONCILE_SCHEDULES, else ./schedules.toml); "
         "paths inside it are relative to it.")


@click.group("schedule")
def schedule_group() -> None:
    """Inspect the jobs in schedules.toml.

    Example:

        reconcile schedule show --schedules /srv/reconcile/schedules.toml
    """


@schedule_group.command("show")
@schedules_option
@click.option("--next", "count", default=3, show_default=True, type=click.IntRange(1, 50), help="Runs to list per job.")
@format_option
def show_cmd(schedules: str | None, count: int, fmt: str) -> None:
    """Validate every job (trigger, time zone, mode, scope, guards, notify, config path) and
    print its next run times.

    Example:

        reconcile schedule show --next 5
    """
    from reconcile.config.schedules import load_schedules, schedules_path

    path = schedules_path(schedules)
    now = datetime.now(timezone.utc)
    jobs = load_schedules(path)
    if fmt == "json":
        echo_json({"schedules": str(path.resolve()), "jobs": [{
            "name": j.name, "config": str(j.config), "when": j.when, "timezone": j.timezone, "mode": j.mode,
            "scope": j.scope, "slices": j.slices, "allow": list(j.allow), "guards": dict(j.guards),
            "misfire_grace_time": j.misfire_grace_time,
            "notify": [{"kind": n.kind, "url_env": n.url_env} for n in j.notify],
            "next": [t.isoformat() for t in j.next_runs(now, count)]} for j in jobs]})
        return
    click.echo(f"{path.resolve()}:")
    for job in jobs:
        runs = ", ".join(t.isoformat(timespec="minutes") for t in job.next_runs(now, count))
        notify = ", ".join(f"{n.kind} (${n.url_env})" for n in job.notify) or "none"
        click.echo(f"{job.name}: {job.describe()}; config {job.config}")
        click.echo(f"  misfire grace {job.misfire_grace_time}s; allow {', '.join(job.allow) or 'none'}; "
                   f"guards {', '.join(f'{k}={v}' for k, v in job.guards) or 'as configured'}; notify {notify}")
        click.echo(f"  next: {runs}")



def _remember(key: str):
    def callback(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
        ctx.meta[key] = value
    return callback


job_option = click.option(
    "--job", expose_value=False, callback=_remember("reconcile.job"), metavar="NAME",
    help="Run this schedules.toml job once, exactly as `reconcile scheduler` does at a fire "
         "(its config, mode, scope, guard overrides and run lock).")
schedules_meta_option = click.option(
    "--schedules", expose_value=False, envvar="RECONCILE_SCHEDULES", callback=_remember("reconcile.schedules"),
    type=click.Path(dir_okay=False), help="The schedules file for --job (default: $RECONCILE_SCHEDULES, "
                                          "else ./schedules.toml).")


COMMANDS = [schedule_group]
