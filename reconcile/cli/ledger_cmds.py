"""`reconcile ledger serve|requests|events`: the Ketch webhook ledger."""

from __future__ import annotations

import logging

import click

from reconcile.cli.common import get_config
from reconcile.errors import DataError


@click.group("ledger")
def ledger_group() -> None:
    """Receive Ketch webhooks (consent, subscriptions, DSRs) and follow erasure requests.

    Example:

        KETCH_WEBHOOK_TOKEN=... reconcile --config job.toml ledger serve
    """


def _store(cfg):
    from reconcile.config import state_url
    from reconcile.store.store import Store

    return Store.open(state_url(cfg))


@ledger_group.command("serve")
@click.option("--host", default=None, help="Listen address (default: ledger.host, 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Listen port (default: ledger.port, 8787).")
@click.pass_context
def serve_cmd(ctx: click.Context, host: str | None, port: int | None) -> None:
    """Serve the Ketch Forwarder endpoint (ledger.path) and /healthz over plain HTTP.

    Put it behind a reverse proxy that terminates TLS (Ketch calls https endpoints only).
    Credentials come from the variables named by ledger.bearer_token_env or
    ledger.basic_user_env/basic_password_env. The access log (-v) holds no identities.

    Example:

        reconcile --config job.toml -v ledger serve --port 8787
    """
    from reconcile.ledger.app import create_app
    from reconcile.ledger.serve import ledger_limits, run_forever
    from reconcile.pipeline.session import install_secret_filter

    cfg = get_config(ctx)
    if not cfg.ledger.enabled:
        raise DataError(f"{cfg.path}: set [ledger] enabled = true to serve the ledger")
    install_secret_filter(cfg)
    logging.getLogger("reconcile.ledger.access").setLevel(logging.INFO)
    store = _store(cfg)
    try:
        app = create_app(cfg, store)
        host, port = host or cfg.ledger.host, port or cfg.ledger.port
        click.echo(f"ledger: listening on http://{host}:{port}{cfg.ledger.path} (state {store.url})", err=True)
        run_forever(app, host, port, ledger_limits(cfg))
    finally:
        store.close()


@ledger_group.command("requests")
@click.option("--status", type=click.Choice(["in_progress", "completed"]), default=None)
@click.option("--history", "with_history", is_flag=True, help="Show each request's status history too.")
@click.pass_context
def requests_cmd(ctx: click.Context, status: str | None, with_history: bool) -> None:
    """List DeleteRequests with their status, reason, due time and callbacks (identities not shown).

    Example:

        reconcile --config job.toml ledger requests --status in_progress
    """
    from reconcile.store.ledger import LedgerStore

    cfg = get_config(ctx)
    with _store(cfg) as store:
        ledger = LedgerStore.of(store)
        rows = ledger.requests(status)
        if not rows:
            click.echo("no DeleteRequests recorded")
        for r in rows:
            cbs = ledger.callbacks(r["uid"])
            states = ", ".join(f"{c['status']}({c['attempts']})" for c in cbs) or "none"
            click.echo(f"{r['uid']}  {r['status']:<11} {r['reason'] or '-':<28} {r['regulation'] or '-':<8} "
                       f"due {r['due_at']:%Y-%m-%d}  callbacks: {states}" if r["due_at"] else
                       f"{r['uid']}  {r['status']:<11} {r['reason'] or '-':<28} callbacks: {states}")
            for c in cbs:
                if c["last_error"]:
                    click.echo(f"    callback {c['position']}: {c['last_error']}")
            if with_history:
                for h in ledger.history(r["uid"]):
                    click.echo(f"    {h['at']:%Y-%m-%d %H:%M:%S} {h['status']} "
                               f"{h['reason'] or ''} {h['message'] or ''}")


@ledger_group.command("events")
@click.option("--outcome", type=click.Choice(["accepted", "unknown_kind", "invalid"]), default=None)
@click.option("--limit", type=int, default=20, show_default=True)
@click.option("--body", "with_body", is_flag=True,
              help="Print the stored (secret-scrubbed) bodies, which hold identities.")
@click.pass_context
def events_cmd(ctx: click.Context, outcome: str | None, limit: int, with_body: bool) -> None:
    """List received messages, newest first, e.g. the unknown kinds kept for inspection.

    Example:

        reconcile --config job.toml ledger events --outcome unknown_kind
    """
    from reconcile.store.ledger import LedgerStore

    cfg = get_config(ctx)
    with _store(cfg) as store:
        for e in LedgerStore.of(store).events(outcome, limit):
            click.echo(f"{e['id']}  {e['received_at']:%Y-%m-%d %H:%M:%S}  {e['outcome']:<12} {e['kind'] or '-':<28} "
                       f"{e['reply_status']}  {e['body_bytes']} bytes" + (f"  {e['error']}" if e["error"] else ""))
            if with_body:
                click.echo(e["body"])


COMMANDS = [ledger_group]
