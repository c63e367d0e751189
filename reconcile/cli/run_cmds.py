"""`reconcile plan|apply|run|demo`: the reconciliation itself."""

from __future__ import annotations

import json
from pathlib import Path

import click

from reconcile.cli.common import DEFAULT_CONFIG, allow_option, population_options, get_config, mode_option, print_counts, print_summary, runtime
from reconcile.errors import DataError, ExitCode


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
    from reconcile.pipeline import make_plan

    with runtime(ctx) as rt:
        result = make_plan(rt, mode=mode)
        code = ExitCode.DRIFT if result.plan.actions else ExitCode.OK
        rt.store.update_run(result.run_id, status="planned", exit_code=code, finished_at=rt.clock())
        if out:
            body = rt.store.get_plan(result.plan.plan_id)["body"]
            Path(out).write_text(json.dumps(body, indent=2, default=str), encoding="utf-8")
        print_counts(result.counts)
        for t in result.tripped:
            click.echo(f"  guard {t.guard} would refuse apply: {t.message}", err=True)
        click.echo(f"run {result.run_id}: plan {result.plan.plan_id} with {len(result.plan.actions)} action(s)"
                   + (f", written to {out}" if out else ""))
    ctx.exit(code)


@click.command("apply")
@click.argument("plan")
@allow_option
@click.pass_context
def apply_cmd(ctx: click.Context, plan: str, allow: tuple[str, ...]) -> None:
    """Apply a saved plan (a file from `plan --out`, or a plan id from the state store).

    The planned subjects are re-checked first; a stale plan is refused (exit 5). Batches a
    previous attempt already confirmed are not sent again.

    Example:

        reconcile --config jobs/sandbox.toml apply plan.json
    """
    from reconcile.pipeline import apply_saved
    from reconcile.report import write_report
    from reconcile.runlock import run_lock

    with runtime(ctx) as rt:
        body = _load_plan(rt, plan)
        with run_lock(rt):
            summary = apply_saved(rt, body, set(allow))
        print_summary(summary)
        click.echo(f"report: {write_report(rt.store, summary.run_id, rt.cfg)}")
    ctx.exit(summary.exit_code)


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
@click.pass_context
def run_cmd(ctx: click.Context, mode: str, dry_run: bool, allow: tuple[str, ...]) -> None:
    """Plan and apply in one go: resume any interrupted apply, plan, guard, apply, verify.

    Example:

        reconcile --config jobs/sandbox.toml run
    """
    from reconcile.pipeline import run_once
    from reconcile.report import write_report
    from reconcile.runlock import run_lock

    with runtime(ctx) as rt:
        if dry_run:
            summary = run_once(rt, mode=mode, dry_run=True)
        else:
            with run_lock(rt):
                summary = run_once(rt, mode=mode, overrides=set(allow))
        print_summary(summary)
        click.echo(f"report: {write_report(rt.store, summary.run_id, rt.cfg)}")
    ctx.exit(summary.exit_code)


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
    from reconcile.pipeline import run_once
    from reconcile.report import write_report
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
        summary = run_once(rt, mode="full")
        print_summary(summary)
        report = write_report(rt.store, summary.run_id, cfg)
    click.echo(f"state database: {cfg.state.url}")
    click.echo(f"report: {report}")
    click.echo(f"next: reconcile --config {cfg.path} run   (finds no correctable drift left)")
    ctx.exit(summary.exit_code)


def _fresh_state(cfg) -> None:
    """The demo starts from nothing: remove its own SQLite state file (never a server DB)."""
    url = cfg.state.url
    if cfg.state.url_env is None and url.startswith("sqlite:///"):
        db = Path(url[len("sqlite:///"):])
        for p in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
            p.unlink(missing_ok=True)


COMMANDS = [plan_cmd, apply_cmd, run_cmd, demo_cmd]
