"""`reconcile runs list|show`: the run history in the state store."""

from __future__ import annotations

import json

import click

from reconcile.cli.common import echo_json, format_option, get_config
from reconcile.config import state_url
from reconcile.errors import DataError


@click.group("runs")
def runs_group() -> None:
    """Inspect recorded runs.

    Example:

        reconcile --config jobs/sandbox.toml runs list
    """


LIST_FIELDS = ("run_id", "mode", "status", "exit_code", "started_at", "finished_at", "drift_counts",
               "actions_planned", "actions_sent", "actions_failed", "verified_count", "unverified_count",
               "exceptions_count", "plan_id", "job")


def resolve_run(store, ref: str) -> str:
    """A run id from `latest`, a full id, or a unique prefix of one."""
    if ref == "latest":
        runs = store.list_runs(1)
        if not runs:
            raise DataError("no runs recorded yet; start one with `reconcile run` or `reconcile demo`")
        return runs[0]["run_id"]
    if store.get_run(ref):
        return ref
    matches = [r["run_id"] for r in store.list_runs(100_000) if r["run_id"].startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise DataError(f"run id prefix {ref!r} matches {len(matches)} runs ({', '.join(matches[:5])}"
                        f"{', ...' if len(matches) > 5 else ''}); give more characters")
    raise DataError(f"no run {ref!r}; see `reconcile runs list`")


@runs_group.command("list")
@click.option("--limit", type=click.IntRange(1, 100_000), default=20, show_default=True)
@format_option
@click.pass_context
def list_cmd(ctx: click.Context, limit: int, fmt: str) -> None:
    """List recent runs, newest first.

    Example:

        reconcile --config jobs/sandbox.toml runs list --limit 5 --format json
    """
    from reconcile.store.store import Store

    cfg = get_config(ctx)
    with Store.open(state_url(cfg)) as store:
        runs = store.list_runs(limit)
    if fmt == "json":
        echo_json([{k: r.get(k) for k in LIST_FIELDS} for r in runs])
        return
    for r in runs:
        counts = r.get("drift_counts") or {}
        click.echo(f"{r['run_id']}  {r.get('mode') or '':<11} {r.get('status') or '':<9} exit={r.get('exit_code')} "
                   f"drift={sum(counts.values())} actions={r.get('actions_planned') or 0} "
                   f"started={r.get('started_at')}")


@runs_group.command("show")
@click.argument("run_id")
@format_option
@click.option("--reveal", is_flag=True, help="Show identities in clear (default: masked).")
@click.pass_context
def show_cmd(ctx: click.Context, run_id: str, fmt: str, reveal: bool) -> None:
    """Show one run: drift counts per class, exceptions, actions, verification.

    RUN_ID is a run id, a unique prefix of one, or `latest`.

    Example:

        reconcile --config jobs/sandbox.toml runs show latest --format json
    """
    from datetime import datetime, timezone

    from reconcile.reports.build import report_doc
    from reconcile.reports.history import Selection
    from reconcile.reports.masking import mask_key, masked
    from reconcile.reports.outcome import run_document
    from reconcile.reports.render import markdown
    from reconcile.store.store import Store

    cfg = get_config(ctx)
    key = None if reveal or cfg.report.reveal else mask_key(cfg)
    with Store.open(state_url(cfg)) as store:
        run_id = resolve_run(store, run_id)
        try:
            doc = run_document(store, run_id)
        except KeyError:
            raise DataError(f"no run {run_id!r}; see `reconcile runs list`") from None
        if fmt != "json":  # the run's compliance report, in the one Markdown layout reports use
            now = doc["run"].get("finished_at") or datetime.now(timezone.utc)
            click.echo(markdown(report_doc(store, cfg, Selection(run_id=run_id), now, key)))
            return
    click.echo(json.dumps(doc if key is None else masked(doc, key), indent=2, default=str))


COMMANDS = [runs_group]
