"""`reconcile runs list|show`: the run history in the state store."""

from __future__ import annotations

import json

import click

from reconcile.cli.common import get_config
from reconcile.config import state_url
from reconcile.errors import DataError


@click.group("runs")
def runs_group() -> None:
    """Inspect recorded runs.

    Example:

        reconcile --config jobs/sandbox.toml runs list
    """


@runs_group.command("list")
@click.option("--limit", type=int, default=20, show_default=True)
@click.pass_context
def list_cmd(ctx: click.Context, limit: int) -> None:
    """List recent runs, newest first.

    Example:

        reconcile --config jobs/sandbox.toml runs list --limit 5
    """
    from reconcile.store.store import Store

    cfg = get_config(ctx)
    with Store.open(state_url(cfg)) as store:
        for r in store.list_runs(limit):
            counts = r.get("drift_counts") or {}
            click.echo(f"{r['run_id']}  {r.get('mode') or '':<11} {r.get('status') or '':<9} exit={r.get('exit_code')} "
                       f"drift={sum(counts.values())} actions={r.get('actions_planned') or 0} "
                       f"started={r.get('started_at')}")


@runs_group.command("show")
@click.argument("run_id")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--reveal", is_flag=True, help="Show identities in clear (default: masked).")
@click.pass_context
def show_cmd(ctx: click.Context, run_id: str, fmt: str, reveal: bool) -> None:
    """Show one run: drift counts per class, exceptions, actions, verification.

    Example:

        reconcile --config jobs/sandbox.toml runs show 20261128T103000-ab12cd --format json
    """
    from reconcile.report import mask_key, markdown, masked, run_document
    from reconcile.store.store import Store

    cfg = get_config(ctx)
    with Store.open(state_url(cfg)) as store:
        try:
            doc = run_document(store, run_id)
        except KeyError:
            raise DataError(f"no run {run_id!r}; see `reconcile runs list`") from None
    if not reveal and not cfg.report.reveal:
        doc = masked(doc, mask_key(cfg))
    if fmt == "json":
        click.echo(json.dumps(doc, indent=2, default=str))
    else:
        click.echo(markdown(doc))


COMMANDS = [runs_group]
