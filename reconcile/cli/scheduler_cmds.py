"""`reconcile scheduler`: the foreground daemon that runs schedules.toml."""

from __future__ import annotations

import logging

import click

from reconcile.cli.schedule_cmds import schedules_option


@click.command("scheduler")
@schedules_option
@click.option("--job", "only", multiple=True, metavar="NAME", help="Run only these jobs (repeatable).")
@click.option("--health-port", type=click.IntRange(0, 65535), default=None, metavar="PORT",
              help="Serve /healthz (liveness) and /readyz (readiness) as JSON on this port (0: any free one).")
@click.option("--health-host", default="127.0.0.1", show_default=True,
              help="Address the health endpoints listen on (0.0.0.0 for an orchestrator's probes).")
@click.pass_context
def scheduler_cmd(ctx: click.Context, schedules: str | None, only: tuple[str, ...], health_port: int | None,
                  health_host: str) -> None:
    """Run the jobs of schedules.toml on their schedules, in the foreground, until SIGTERM.

    Each fire runs exactly what `reconcile run --job NAME` runs. A fire is skipped while the
    job's previous run is still going or another process holds the job's run lock, and is
    missed when it could not start within the job's misfire_grace_time. SIGTERM or SIGINT
    lets the batch in flight finish and be journaled, closes the run as interrupted (the next
    fire resumes it) and exits 0; SIGHUP re-reads the schedules file.

    With --health-port, GET /healthz answers 200 while the process runs (a long run
    included) and GET /readyz 200 while the scheduler runs its jobs, 503 once it is stopping;
    both carry each job's next fire and last outcome.

    Example:

        reconcile scheduler --schedules /srv/reconcile/schedules.toml --health-port 8788
    """
    from reconcile.config.schedules import schedules_path
    from reconcile.scheduling.daemon import Daemon

    for name in ("reconcile.scheduling", "reconcile.events"):  # fires, skips and each run's end
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.INFO)
    root = ctx.find_root().obj or {}
    display = _display(ctx) if root.get("log_format") == "json" else None  # text: the log lines say enough
    health = None if health_port is None else (health_host, health_port)
    ctx.exit(Daemon(schedules_path(schedules), only=only, display=display, health=health).serve())


def _display(ctx: click.Context):
    """A progress display factory for each run, as the interactive commands show it."""
    from reconcile.observability.display import display_for

    root = ctx.find_root().obj or {}
    return lambda telemetry: display_for(telemetry, quiet=bool(root.get("quiet")),
                                         log_format=str(root.get("log_format") or "text"))



def run_named_job(ctx: click.Context) -> object:
    """`reconcile run --job NAME`: the scheduler's job function, once; returns the run's result."""
    from click.core import ParameterSource

    from reconcile.errors import DataError
    from reconcile.config.schedules import find_job, load_schedules, schedules_path
    from reconcile.scheduling.jobs import run_scheduled

    name = ctx.meta["reconcile.job"]
    given = [p for p in ("mode", "dry_run", "allow", "only")
             if ctx.get_parameter_source(p) not in (None, ParameterSource.DEFAULT)]
    if given:
        flags = ", ".join("--" + p.replace("_", "-") for p in given)
        raise DataError(f"--job {name}: the job's entry in the schedules file sets its mode, scope and guard "
                        f"overrides; drop {flags} (or run without --job)")
    from reconcile.cli.common import run_ids
    from reconcile.config import load_config

    path = schedules_path(ctx.meta.get("reconcile.schedules"))
    job = find_job(load_schedules(path), name, str(path))
    outcome = run_scheduled(job, display=_display(ctx), progress=run_ids(ctx, job.job_config(load_config(job.config))))
    return outcome.result


COMMANDS = [scheduler_cmd]
