"""`reconcile runs list|show`: the run history in the state store."""

from __future__ import annotations

import json

import click

from reconcile.cli.common import DEFAULT_CONFIG, echo_json, format_option, get_config
from reconcile.config import state_url
from reconcile.errors import DataError
from reconcile.models.run import RUN_STATUSES


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
@click.option("--job", help="Only runs of this scheduled job.")
@click.option("--status", "statuses", multiple=True, type=click.Choice(RUN_STATUSES),
              help="Only runs that ended with this outcome (repeatable).")
@click.option("--since", help="Only runs started since then: a date (2026-01-31), an ISO time, or an age (24h, 7d).")
@format_option
@click.pass_context
def list_cmd(ctx: click.Context, limit: int, job: str | None, statuses: tuple[str, ...], since: str | None,
             fmt: str) -> None:
    """List recent runs, newest first: when, how long, which job, how it ended.

    Example:

        reconcile --config jobs/sandbox.toml runs list --status failed --status refused --since 7d
    """
    from datetime import datetime, timezone

    from reconcile.cli.runs_table import json_row, matching_runs, parse_since, row, table
    from reconcile.store.store import Store

    cfg = get_config(ctx, DEFAULT_CONFIG)
    start = parse_since(since, datetime.now(timezone.utc))
    with Store.open(state_url(cfg)) as store:
        runs = matching_runs(store, job=job, statuses=statuses, since=start, limit=limit)
    if fmt == "json":
        echo_json([json_row(r, LIST_FIELDS) for r in runs])
        return
    if not runs:
        click.echo("no runs match" if (job or statuses or since) else
                   "no runs recorded yet; start one with `reconcile run` or `reconcile demo`")
        return
    click.echo(table([row(r) for r in runs]))


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

    cfg = get_config(ctx, DEFAULT_CONFIG)
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
