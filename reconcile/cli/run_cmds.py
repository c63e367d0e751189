"""`reconcile plan|apply|run|demo`: the reconciliation itself."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from reconcile.cli.common import (
    DEFAULT_CONFIG, allow_option, get_config, mode_option, only_kinds, only_option, population_options, print_counts,
    print_summary, runtime,
)
from reconcile.errors import DataError, ExitCode


def _execute(rt, fn, *args, **kwargs):
    """Run one pipeline entry point with signal handling: an interrupt lets the batch in
    flight finish and be journaled (the run closes as interrupted, exit 130/143)."""
    from reconcile.interrupts import deferred, handle_signals

    with handle_signals():
        return fn(rt, *args, batch_guard=deferred, **kwargs)


def _finish(ctx: click.Context, rt, result) -> None:
    print_summary(result)
    if result.report_path:
        click.echo(f"report: {result.report_path}")
    ctx.exit(result.exit_code)


@click.command("plan")
@mode_option
@click.option("--out", type=click.Path(dir_okay=False), help="Also write the plan as JSON to this file.")
@click.pass_context
def plan_cmd(ctx: click.Context, mode: str, out: str | None) -> None:
    """Extract both sides, diff, and store the plan; writes nothing to Braze.

    Exit 0 when nothing needs correcting, 2 when the plan has corrections.

    Example:

        reconcile --config jobs/sandbox.toml plan --out plan.json
    """
    from reconcile.pipeline import plan_only

    out_path = _writable(out)
    with runtime(ctx) as rt:
        result, planned = plan_only(rt, mode)
        if out_path:
            body = rt.store.get_plan(planned.plan.plan_id)["body"]
            write_private(out_path, json.dumps(body, indent=2, default=str))
        print_counts(result.counts)
        for t in planned.tripped:
            click.echo(f"  guard {t.guard} would refuse apply: {t.message}", err=True)
        click.echo(f"run {result.run_id}: plan {planned.plan.plan_id} with {len(planned.plan.actions)} action(s)"
                   + (f", written to {out}" if out else ""))
        click.echo(f"report: {result.report_path}")
    ctx.exit(result.exit_code)


def _writable(out: str | None) -> Path | None:
    """Fail before any extract when the plan file cannot be written."""
    if not out:
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
@click.pass_context
def apply_cmd(ctx: click.Context, plan: str, allow: tuple[str, ...]) -> None:
    """Apply a saved plan (a file from `plan --out`, or a plan id from the state store).

    The file must match the plan the state store saved; the planned subjects are
    re-checked first and a stale plan is refused (exit 5). Batches a previous attempt
    already confirmed are not sent again.

    Example:

        reconcile --config jobs/sandbox.toml apply plan.json
    """
    from reconcile.pipeline import apply_saved
    from reconcile.runlock import run_lock

    with runtime(ctx) as rt:
        body = _load_plan(rt, plan)
        with run_lock(rt):
            result = _execute(rt, apply_saved, body, set(allow))
        _finish(ctx, rt, result)


def _load_plan(rt, ref: str) -> dict:
    path = Path(ref)
    if path.exists():
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise DataError(f"{ref}: not a plan file ({exc}); pass the file written by `reconcile plan --out`") from None
    saved = rt.store.get_plan(ref)
    if not saved:
        raise DataError(f"{ref}: no such plan file or plan id; list plans with `reconcile runs list`")
    return saved["body"]


@click.command("run")
@mode_option
@click.option("--dry-run", is_flag=True, help="Plan only: report drift, write nothing to Braze (exit 2 if drift).")
@allow_option
@only_option
@click.pass_context
def run_cmd(ctx: click.Context, mode: str, dry_run: bool, allow: tuple[str, ...], only: tuple[str, ...]) -> None:
    """Plan and apply in one go: resume any interrupted apply, plan, guard, apply, verify.

    Example:

        reconcile --config jobs/sandbox.toml run
    """
    from reconcile.pipeline import run_job
    from reconcile.runlock import run_lock

    with runtime(ctx) as rt:
        if dry_run:
            result = run_job(rt, mode=mode, dry_run=True)
        else:
            with run_lock(rt):
                result = _execute(rt, run_job, mode=mode, overrides=set(allow), only=only_kinds(only))
        _finish(ctx, rt, result)


@click.command("demo")
@population_options
@click.pass_context
def demo_cmd(ctx: click.Context, subjects: int | None, drift: float | None, seed: int | None) -> None:
    """Seed a fresh sandbox, run a full reconciliation into SQLite, print the summary.

    Uses jobs/sandbox.toml unless --config says otherwise. A `reconcile run` right after
    finds no correctable drift left.

    Example:

        reconcile demo --subjects 2000 --drift 0.03
    """
    from reconcile.cli.sandbox_cmds import seed_sandbox
    from reconcile.pipeline import run_job
    from reconcile.runlock import run_lock
    from reconcile.runtime import open_runtime

    cfg = get_config(ctx, DEFAULT_CONFIG)
    if not cfg.sandbox.enabled:
        raise DataError(f"{cfg.path}: demo needs [sandbox] enabled = true")
    _fresh_state(cfg)
    truth = seed_sandbox(cfg, subjects, drift, seed)
    click.echo(f"sandbox seeded: {truth.subjects} subjects, drift injected: "
               + ", ".join(f"{k} {v}" for k, v in sorted(truth.counts().items())))
    with open_runtime(cfg) as rt, run_lock(rt):
        result = _execute(rt, run_job, mode="full")
        print_summary(result)
    click.echo(f"state database: {cfg.state.url}")
    click.echo(f"report: {result.report_path}")
    click.echo(f"next: reconcile --config {cfg.path} run   (finds no correctable drift left)")
    ctx.exit(result.exit_code)


def _fresh_state(cfg) -> None:
    """The demo starts from nothing: remove its own SQLite state file (never a server DB)."""
    url = cfg.state.url
    if cfg.state.url_env is None and url.startswith("sqlite:///"):
        db = Path(url[len("sqlite:///"):])
        for p in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
            p.unlink(missing_ok=True)


COMMANDS = [plan_cmd, apply_cmd, run_cmd, demo_cmd]
