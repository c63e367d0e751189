"""`reconcile lock status|release`: inspect run locks, and remove one whose holder is gone."""

from __future__ import annotations

import getpass
import os
import socket
from datetime import datetime, timezone
from typing import Any

import click

from reconcile.cli.schedule_cmds import schedules_option
from reconcile.errors import DataError


def _config(ctx: click.Context, job: str | None, schedules: str | None) -> Any:
    """The job's config when --job names a schedules.toml job, else --config's."""
    from reconcile.cli.common import get_config
    from reconcile.config import load_config
    from reconcile.pipeline.lock import MANUAL
    from reconcile.config.schedules import find_job, load_schedules, schedules_path

    if job and job != MANUAL and not ctx.find_root().obj.get("config_path"):
        path = schedules_path(schedules)
        found = find_job(load_schedules(path), job, str(path))
        return found.job_config(load_config(found.config))
    return get_config(ctx)


def _open_store(cfg: Any) -> Any:
    from reconcile.config import state_url
    from reconcile.store.store import Store

    return Store.open(state_url(cfg))


def _ago(now: datetime, then: datetime | None) -> str:
    if then is None:
        return "never"
    secs = (now - then).total_seconds()
    return f"{then.isoformat(timespec='seconds')} ({abs(secs):.0f}s {'ago' if secs >= 0 else 'from now'})"


@click.group("lock")
def lock_group() -> None:
    """Run locks: one per job and Braze workspace, held while a run lives.

    Example:

        reconcile --config jobs/prod.toml lock status
    """


@lock_group.command("status")
@click.option("--job", default=None, metavar="NAME", help="Read the state store of this schedules.toml job.")
@schedules_option
@click.pass_context
def status_cmd(ctx: click.Context, job: str | None, schedules: str | None) -> None:
    """Every run lock in the state store: holder, process, lease, and recent forced releases.

    Example:

        reconcile --config jobs/prod.toml lock status
    """
    cfg = _config(ctx, job, schedules)
    now = datetime.now(timezone.utc)
    with _open_store(cfg) as store:
        rows = store.list_locks()
        if not rows:
            click.echo("no run lock is held")
        for row in rows:
            live = row["expires_at"] > now
            session = store.session_lock_held(row["name"])
            state = "live" if live else "expired (the next run takes it)"
            if session is not None:
                state += ", session lock " + ("held" if session else "free (holder gone; the next run takes it)")
            ident = row.get("identity") or {}
            click.echo(f"{row['name']}: {state}")
            click.echo(f"  holder {row['holder']} (pid {ident.get('pid')} on {ident.get('host')}, "
                       f"user {ident.get('user')})")
            click.echo(f"  acquired {_ago(now, row['acquired_at'])}; renewed {_ago(now, row.get('renewed_at'))}; "
                       f"expires {_ago(now, row['expires_at'])}")
        events = store.lock_events(limit=5)
        if events:
            click.echo("recent takeovers and forced releases:")
        for e in events:
            reason = (e.get("detail") or {}).get("reason") or ""
            click.echo(f"  {e['at'].isoformat(timespec='seconds')} {e['event']} of {e['name']}: holder {e['holder']} "
                       f"removed by {e['by']}" + (f" ({reason})" if reason else ""))


@lock_group.command("release")
@click.option("--job", default=None, metavar="NAME",
              help="The job whose lock to remove (`manual` for runs started without --job).")
@click.option("--name", "lock", default=None, metavar="LOCK", help="The lock's full name, as `lock status` shows it.")
@click.option("--force", is_flag=True, help="Required: remove the lock whoever holds it.")
@click.option("--reason", default="", help="Why, kept with the record of the release.")
@schedules_option
@click.pass_context
def release_cmd(ctx: click.Context, job: str | None, lock: str | None, force: bool, reason: str,
                schedules: str | None) -> None:
    """Remove a run lock whose holder is gone; recorded (who, when, which holder).

    A holder that is still alive notices at its next batch and stops there (exit 6).

    Example:

        reconcile lock release --job prod-hourly --force --reason "pod lost with its node"
    """
    from reconcile.config import braze_api_key
    from reconcile.pipeline.lock import lock_name

    if not force:
        raise DataError("lock release removes a lock whoever holds it; run `reconcile lock status` first, "
                        "then add --force")
    if bool(job) == bool(lock):
        raise DataError("name the lock with --job NAME or --name LOCK (one of them)")
    cfg = _config(ctx, job, schedules)
    name = lock or lock_name(cfg.braze.rest_endpoint, braze_api_key(cfg), job)
    by = f"{_user()}@{socket.gethostname()} (pid {os.getpid()})"
    with _open_store(cfg) as store:
        removed = store.force_release_lock(name, by, datetime.now(timezone.utc), reason)
    if removed is None:
        click.echo(f"{name}: no lock held; nothing removed")
        return
    click.echo(f"{name}: removed holder {removed['holder']} (recorded as released by {by})")


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001
        return str(os.getuid())


COMMANDS = [lock_group]
