"""`reconcile run --job NAME --worker`: one worker of a sliced job's sweep (reconcile.scheduling.sweeps)."""

from __future__ import annotations

import click

from reconcile.cli.common import echo_json


def _remember(key: str):
    def store(ctx: click.Context, _param: click.Parameter, value: object) -> None:
        ctx.meta[key] = value
    return store


def worker_options(fn):
    """--worker, --sweep and --lease-seconds (kept in ctx.meta, read by `run_as_worker`)."""
    fn = click.option("--lease-seconds", type=click.FloatRange(min=1.0), default=None, expose_value=False,
                      callback=_remember("reconcile.lease_seconds"), metavar="SECONDS",
                      help="With --worker: the lease of a slice's claim and run lock (default 60); a dead "
                           "worker's slice is taken over once it ends.")(fn)
    fn = click.option("--sweep", "sweep_id", envvar="RECONCILE_SWEEP_ID", default=None, expose_value=False,
                      callback=_remember("reconcile.sweep"), metavar="ID",
                      help="With --worker: the sweep to join (created if new), e.g. the Kubernetes Job's uid, "
                           "so every pod of one Job works on one sweep (default: $RECONCILE_SWEEP_ID, else "
                           "the job's open sweep, else a new one).")(fn)
    fn = click.option("--worker", is_flag=True, expose_value=False, callback=_remember("reconcile.worker"),
                      help="With --job of a sliced job: claim slices of the job's sweep one at a time and "
                           "reconcile each, until the sweep is done (several workers share one sweep).")(fn)
    return fn


def run_as_worker(ctx: click.Context, fmt: str) -> None:
    """Run this process as one sweep worker of `--job` and exit with its code."""
    from click.core import ParameterSource

    from reconcile.errors import DataError
    from reconcile.pipeline.lock import LEASE_SECONDS
    from reconcile.config.schedules import find_job, load_schedules, schedules_path
    from reconcile.scheduling.sweeps import run_worker

    name = ctx.meta.get("reconcile.job")
    if not name:
        raise DataError("--worker needs --job NAME: a schedules.toml job with scope = \"sliced\"")
    given = [p for p in ("mode", "dry_run", "allow", "only")
             if ctx.get_parameter_source(p) not in (None, ParameterSource.DEFAULT)]
    if given:
        flags = ", ".join("--" + p.replace("_", "-") for p in given)
        raise DataError(f"--job {name} --worker: the job's entry in the schedules file sets its mode, slices "
                        f"and guard overrides; drop {flags}")
    path = schedules_path(ctx.meta.get("reconcile.schedules"))
    job = find_job(load_schedules(path), name, str(path))
    outcome = run_worker(job, sweep_id=ctx.meta.get("reconcile.sweep"),
                         lease_seconds=ctx.meta.get("reconcile.lease_seconds") or LEASE_SECONDS)
    if fmt == "json":
        echo_json(outcome.to_dict())
    else:
        for s in outcome.slices:
            what = f"run {s.run_id} {s.status}" if s.run_id else (s.status or "not run")
            click.echo(f"slice {s.slice}: {what} (exit {s.exit_code})" + (f": {s.error}" if s.error else ""))
        ran = len(outcome.slices)
        click.echo(f"sweep {outcome.sweep_id} of job {outcome.job}: {outcome.sweep_status}; this worker ran "
                   f"{ran} slice(s)" + (f"; stopped: {outcome.stopped}" if outcome.stopped else ""))
    ctx.exit(outcome.exit_code)
