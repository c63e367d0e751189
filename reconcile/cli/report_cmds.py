"""`reconcile report` and `reconcile prune`: compliance reports and retention."""

from __future__ import annotations

from datetime import date, datetime, timezone
from pathlib import Path

import click

from reconcile.cli.common import get_config
from reconcile.config import state_url
from reconcile.errors import DataError


def _when(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value) if "T" in value or " " in value else datetime.combine(
            date.fromisoformat(value), datetime.min.time())
    except ValueError:
        raise DataError(f"{name} {value!r}: not a date; write 2026-01-31 or 2026-01-31T09:00:00+00:00") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


@click.command("report")
@click.argument("run_id", required=False)
@click.option("--since", help="Every run started on or after this date (YYYY-MM-DD or an ISO time).")
@click.option("--job", help="Every run of this scheduled job.")
@click.option("--format", "fmt", type=click.Choice(["html", "json", "csv", "md"]), default="html", show_default=True,
              help="csv writes one file per table: requests (CCPA §7101), metrics (§7102), sla, drift, "
                   "exceptions, actions, runs.")
@click.option("--out", type=click.Path(), help="File to write (csv: folder). Default: report.dir.")
@click.option("--as-of", "as_of", help="Age deadlines as of this time instead of now.")
@click.option("--reveal", is_flag=True, help="Show identities in clear; recorded in every run the report shows.")
@click.option("--actor", help="Who is revealing (default: the OS user).")
@click.pass_context
def report_cmd(ctx: click.Context, run_id: str | None, since: str | None, job: str | None, fmt: str,
               out: str | None, as_of: str | None, reveal: bool, actor: str | None) -> None:
    """Write a compliance report: one run (RUN), runs since a date, or a job's runs.

    Without RUN, --since or --job it reports the latest run. The HTML file is
    self-contained: no script and no request of any kind. Identities are masked with a
    keyed hash unless --reveal.

    Example:

        reconcile --config jobs/sandbox.toml report --since 2026-01-01 --format html
    """
    from reconcile.reports.masking import mask_key
    from reconcile.reports.build import os_user, record_reveal, report_doc, write
    from reconcile.reports.history import Selection, select_runs
    from reconcile.store.store import Store

    if run_id and (since or job):
        raise DataError("give a RUN or --since/--job, not both")
    cfg = get_config(ctx, read_only=True)
    now = _when(as_of, "--as-of") or datetime.now(timezone.utc)
    sel = Selection(run_id=run_id, since=_when(since, "--since"), job=job)
    with Store.open(state_url(cfg)) as store:
        if not (run_id or since or job):
            latest = select_runs(store, Selection(since=datetime.min.replace(tzinfo=timezone.utc)))[0]
            sel = Selection(run_id=latest["run_id"])
        revealed = reveal or cfg.report.reveal
        if revealed:
            _, covered = select_runs(store, sel)
            via = "reconcile report --reveal" if reveal else "report.reveal = true"
            record_reveal(store, [r["run_id"] for r in covered], actor or os_user(), datetime.now(timezone.utc), via)
        doc = report_doc(store, cfg, sel, now, None if revealed else mask_key(cfg))
    stem = "report-" + (sel.run_id or now.strftime("%Y%m%dT%H%M%S"))
    if out and fmt != "csv":
        target = Path(out)
        paths = write(doc, target.parent, target.stem if target.suffix else target.name, [fmt])
        if target.suffix and paths[0] != target:
            paths[0].rename(target)
            paths = [target]
    else:
        paths = write(doc, Path(out) if out else Path(cfg.report.dir), stem, [fmt])
    for path in paths:
        click.echo(f"report: {path}")


@click.command("prune")
@click.option("--apply", "apply_", is_flag=True, help="Delete; without it only count what would go (dry run).")
@click.pass_context
def prune_cmd(ctx: click.Context, apply_: bool) -> None:
    """Remove history older than report.retention_months (default 24); never live drift.

    Runs as a dry run first: it prints what would be removed. Both are recorded as a run
    of mode `prune` with the counts; --apply rebuilds the report folder's index.html.

    Example:

        reconcile --config jobs/sandbox.toml prune           # counts only
        reconcile --config jobs/sandbox.toml prune --apply
    """
    from reconcile.pipeline.prune import recorded_prune
    from reconcile.reports.index import write_index
    from reconcile.store.store import Store

    cfg = get_config(ctx)
    with Store.open(state_url(cfg)) as store:
        run_id, result = recorded_prune(store, cfg, lambda: datetime.now(timezone.utc), apply=apply_)
        if apply_:
            write_index(store, Path(cfg.report.dir), datetime.now(timezone.utc))
    counts = result.counts()
    verb = "removed" if apply_ else "would remove"
    click.echo(f"{verb} (older than {counts['cutoff']}): {counts['runs']} run(s), {counts['drift_items']} drift "
               f"item(s) that were history, {counts['actions']} action(s), {counts['plans']} plan(s), "
               f"{counts['exceptions']} exception(s), {counts['report_files']} report file(s); "
               f"recorded as run {run_id}")
    if not apply_:
        click.echo("dry run: nothing was deleted; run again with --apply to delete")


COMMANDS = [report_cmd, prune_cmd]
