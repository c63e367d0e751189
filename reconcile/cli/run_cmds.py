"""`reconcile plan|apply|run|demo`: the reconciliation itself."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from reconcile.cli.common import (
    DEFAULT_CONFIG, allow_option, echo_json, format_option, get_config, is_packaged, metrics_option, mode_option,
    stop_display,
    observed, only_kinds, only_option, population_options, print_channels, print_counts, print_summary, runtime,
)
from reconcile.cli.schedule_cmds import job_option, schedules_meta_option
from reconcile.cli.worker_cmds import worker_options
from reconcile.errors import DataError


def _remember_actor(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    ctx.meta["reconcile.actor"] = value


actor_option = click.option(
    "--actor", expose_value=False, callback=_remember_actor, metavar="NAME",
    help="Who is running this, recorded with every --allow override (default: the OS user).")


def _execute(rt, fn, *args, **kwargs):
    """Run one pipeline entry point with signal handling: an interrupt lets the batch in
    flight finish and be journaled (the run closes as interrupted, exit 130/143)."""
    from reconcile.pipeline.interrupts import deferred, handle_signals

    ctx = click.get_current_context(silent=True)
    actor = ctx.meta.get("reconcile.actor") if ctx is not None else None
    with handle_signals():
        return fn(rt, *args, batch_guard=deferred, **({"actor": actor} if actor else {}), **kwargs)


def _finish(ctx: click.Context, rt, result, fmt: str = "text") -> None:
    stop_display(ctx)
    if fmt == "json":
        echo_json(result.to_dict())
    else:
        print_summary(result)
        if result.report_path:
            click.echo(f"report: {result.report_path}")
    ctx.exit(result.exit_code)


@click.command("plan")
@mode_option
@click.option("--out", type=click.Path(dir_okay=False, allow_dash=True),
              help="Also write the plan as JSON to this file; `-` writes it to stdout (the summary goes to stderr).")
@click.option("--masked", is_flag=True,
              help="With --out: write a view of the plan with every identity masked (for review or tickets); "
                   "it cannot be applied. Apply by plan id, or from an unmasked --out file.")
@format_option
@metrics_option
@click.pass_context
def plan_cmd(ctx: click.Context, mode: str, out: str | None, masked: bool, fmt: str, metrics_file: str | None) -> None:
    """Extract both sides, diff, and store the plan; writes nothing to Braze.

    Prints what would change, Terraform style: per drift class and endpoint, the drift
    items, subjects and batches, with a few masked examples. Exit 0 when nothing needs
    correcting, 2 when the plan has corrections.

    Example:

        reconcile --config jobs/sandbox.toml plan --out plan.json
    """
    from reconcile.cli.plan_summary import plan_rows, plan_text
    from reconcile.pipeline.run import plan_only
    from reconcile.reports.masking import mask, mask_key

    if out == "-" and fmt == "json":
        raise click.UsageError("--out - and --format json both write to stdout; pick one")
    out_path = _writable(out)
    cfg = get_config(ctx)
    with observed(ctx, cfg, metrics_file), runtime(ctx, cfg=cfg) as rt:
        result, planned = plan_only(rt, mode)
        body = rt.store.get_plan(planned.plan.plan_id)["body"]
        if masked:
            from reconcile.reports.masking import masked_plan
            body = masked_plan(body, mask_key(cfg))
        if out == "-":
            click.echo(json.dumps(body, indent=2, default=str))
        elif out_path:
            write_private(out_path, json.dumps(body, indent=2, default=str))
        key = mask_key(cfg)
        rows = plan_rows(planned.plan.actions, lambda s: mask(s, key) if not cfg.report.reveal else s)
        if fmt == "json":
            echo_json({**result.to_dict(), "plan_id": planned.plan.plan_id, "changes": rows,
                       "guards": [t.to_json() for t in planned.tripped],
                       "guard_verdicts": [v.to_json() for v in planned.verdicts], "plan_file": out})
        else:
            err = out == "-"
            print_counts(result.counts, err=err)
            click.echo("", err=err)
            for line in plan_text(planned.plan.plan_id, rows, planned.tripped, planned.verdicts):
                click.echo(line, err=err)
            click.echo(f"run {result.run_id}: plan {planned.plan.plan_id} with {len(planned.plan.actions)} action(s)"
                       + (f", written to {out}" if out_path else ""), err=err)
            click.echo(f"report: {result.report_path}", err=err)
    ctx.exit(result.exit_code)


def _writable(out: str | None) -> Path | None:
    """Fail before any extract when the plan file cannot be written (`-` is stdout)."""
    if not out or out == "-":
        return None
    path = Path(out)
    if not path.parent.exists() or path.is_dir():
        raise DataError(f"--out {out}: no such folder or it is a folder; give a writable file path")
    return path


def write_private(path: Path, text: str) -> None:
    """Write a file readable only by its owner (plans hold identities)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(path, 0o600)


@click.command("apply")
@click.argument("plan")
@allow_option
@actor_option
@format_option
@metrics_option
@click.pass_context
def apply_cmd(ctx: click.Context, plan: str, allow: tuple[str, ...], fmt: str, metrics_file: str | None) -> None:
    """Apply a saved plan (a file from `plan --out`, or a plan id from the state store).

    The file must match the plan the state store saved; the planned subjects are
    re-checked first and a stale plan is refused (exit 5). Batches a previous attempt
    already confirmed are not sent again.

    Example:

        reconcile --config jobs/sandbox.toml apply plan.json
    """
    from reconcile.pipeline.saved import apply_saved
    from reconcile.pipeline.lock import run_lock

    cfg = get_config(ctx)
    with observed(ctx, cfg, metrics_file), runtime(ctx, cfg=cfg) as rt:
        body = _load_plan(rt, plan)
        with run_lock(rt) as lock:
            result = _execute(rt, apply_saved, body, set(allow), before_batch=lock.check)
        _finish(ctx, rt, result, fmt)


def _load_plan(rt, ref: str) -> dict:
    path = Path(ref)
    if path.exists():
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise DataError(f"{ref}: not a plan file ({exc}); pass the file written by "
                            "`reconcile plan --out`") from None
    saved = rt.store.get_plan(ref)
    if not saved:
        raise DataError(f"{ref}: no such plan file or plan id; list plans with `reconcile runs list`")
    return saved["body"]


@click.command("run")
@mode_option
@click.option("--dry-run", is_flag=True, help="Plan only: report drift, write nothing to Braze (exit 2 if drift).")
@allow_option
@actor_option
@only_option
@format_option
@metrics_option
@job_option
@schedules_meta_option
@worker_options
@click.pass_context
def run_cmd(ctx: click.Context, mode: str, dry_run: bool, allow: tuple[str, ...], only: tuple[str, ...], fmt: str,
            metrics_file: str | None) -> None:
    """Plan and apply in one go: resume any interrupted apply, plan, guard, apply, verify.

    With --job NAME --worker (a job with scope = "sliced"), this process is one worker of
    the job's sweep: it claims slices one at a time until every slice is done.

    Example:

        reconcile --config jobs/sandbox.toml run
    """
    from reconcile.pipeline.job import run_job
    from reconcile.pipeline.lock import run_lock

    if ctx.meta.get("reconcile.worker"):
        from reconcile.cli.worker_cmds import run_as_worker

        run_as_worker(ctx, fmt)
    if ctx.meta.get("reconcile.job"):
        from reconcile.cli.scheduler_cmds import run_named_job

        _finish(ctx, None, run_named_job(ctx), fmt)
    cfg = get_config(ctx)
    with observed(ctx, cfg, metrics_file), runtime(ctx, cfg=cfg) as rt:
        if dry_run:
            result = run_job(rt, mode=mode, dry_run=True, overrides=set(allow))
        else:
            with run_lock(rt) as lock:
                result = _execute(rt, run_job, mode=mode, overrides=set(allow), only=only_kinds(only),
                                  before_batch=lock.check)
        _finish(ctx, rt, result, fmt)


@click.command("demo")
@population_options
@click.option("--fresh", is_flag=True,
              help="Delete the demo's own SQLite state (run history, journal, tombstones) first.")
@metrics_option
@click.pass_context
def demo_cmd(ctx: click.Context, subjects: int | None, drift: float | None, seed: int | None, fresh: bool,
             metrics_file: str | None) -> None:
    """Seed the sandbox, run a full reconciliation into SQLite, print the summary.

    Uses jobs/sandbox.toml unless --config says otherwise; in a folder without one, the
    sandbox job shipped with the package, with state in ./.reconcile/ and reports in
    ./reports/. The run history is kept between demos; --fresh starts it over. A
    `reconcile run` right after finds no correctable drift left.

    Example:

        reconcile demo --subjects 2000 --drift 0.03
    """
    from reconcile.cli.sandbox_cmds import seed_sandbox
    from reconcile.pipeline.job import run_job
    from reconcile.pipeline.lock import run_lock

    cfg = get_config(ctx, DEFAULT_CONFIG)
    if not cfg.sandbox.enabled:
        raise DataError(f"{cfg.path}: demo needs [sandbox] enabled = true")
    if fresh:
        _fresh_state(cfg)
    truth = seed_sandbox(cfg, subjects, drift, seed)
    click.echo(f"sandbox seeded: {truth.subjects} subjects, drift injected: "
               + ", ".join(f"{k} {v}" for k, v in sorted(truth.counts().items())))
    with observed(ctx, cfg, metrics_file), runtime(ctx, cfg=cfg) as rt, run_lock(rt) as lock:
        result = _execute(rt, run_job, mode="full", before_batch=lock.check)
        stop_display(ctx)
        print_summary(result)
        print_channels(rt.store, result.run_id, cfg)
    click.echo(f"state database: {cfg.state.url}")
    click.echo(f"report: {result.report_path}")
    if is_packaged(cfg):
        click.echo("next: reconcile demo   (again: the history is kept; --fresh starts it over)")
    else:
        click.echo(f"next: reconcile --config {cfg.path} run   (finds no correctable drift left)")
    ctx.exit(result.exit_code)


def _fresh_state(cfg) -> None:
    """`demo --fresh`: remove the demo's own SQLite state file (never a server DB)."""
    url = cfg.state.url
    if cfg.state.url_env is None and url.startswith("sqlite:///"):
        db = Path(url[len("sqlite:///"):])
        for p in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
            p.unlink(missing_ok=True)


COMMANDS = [plan_cmd, apply_cmd, run_cmd, demo_cmd]
