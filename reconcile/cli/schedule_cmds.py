"""`reconcile schedule show`: validate schedules.toml and list the next runs."""

from __future__ import annotations

from datetime import datetime, timezone

import click


@click.group("schedule")
def schedule_group() -> None:
    """Inspect the job schedules in schedules.toml.

    Example:

        reconcile schedule show --file schedules.toml
    """


@schedule_group.command("show")
@click.option("--file", "path", default="schedules.toml", show_default=True, type=click.Path(dir_okay=False),
              help="The schedules file.")
@click.option("--next", "count", default=3, show_default=True, type=click.IntRange(1, 50), help="Runs to list per schedule.")
def show_cmd(path: str, count: int) -> None:
    """Validate every schedule (cron, mode, config path) and print its next run times.

    Example:

        reconcile schedule show --next 5
    """
    from reconcile.schedules import load_schedules

    now = datetime.now(timezone.utc)
    for s in load_schedules(path):
        runs = ", ".join(t.isoformat(timespec="minutes") for t in s.next_runs(now, count))
        click.echo(f"{s.name}: {s.mode} run of {s.config} on '{s.cron}' "
                   f"(misfire grace {s.misfire_grace_seconds}s); next: {runs}")


COMMANDS = [schedule_group]
