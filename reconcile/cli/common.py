"""Helpers shared by the commands: loading the config, opening a runtime, printing."""

from __future__ import annotations

from typing import Any

import click

from reconcile.config import Config, config_path, load_config
from reconcile.engine.classes import DRIFT_CLASSES, SEVERITY

DEFAULT_CONFIG = "jobs/sandbox.toml"


def get_config(ctx: click.Context, default: str | None = None) -> Config:
    raw = ctx.find_root().obj.get("config_path") or default
    return load_config(config_path(raw))


def runtime(ctx: click.Context, default: str | None = None) -> Any:
    from reconcile.runtime import open_runtime  # heavy (pandas, httpx, SQLAlchemy): only when a command runs

    return open_runtime(get_config(ctx, default))


allow_option = click.option(
    "--allow", "allow", multiple=True, metavar="GUARD",
    type=click.Choice(["empty_extract", "extract_shrink", "max_deletions", "max_deletion_fraction",
                       "max_unsubscribe_fraction", "max_subscribe_fraction"]),
    help="Override a tripped guard after review (repeatable); the override is recorded in the run.")

ONLY = {
    "optouts": ("group_unsubscribe", "global_unsubscribe"),
    "blocklists": ("blocklist",),
    "deletions": ("delete",),
    "writebacks": ("ketch_writeback",),
    "aliases": ("alias_optout",),
    "optins": ("group_subscribe", "global_subscribe"),
}

only_option = click.option(
    "--only", "only", multiple=True, type=click.Choice(list(ONLY)),
    help="Apply only these correction classes (repeatable); guards on the other classes do not hold them, "
         "e.g. `--only optouts` sends opt-outs while deletions wait for review.")


def only_kinds(only: tuple[str, ...]) -> frozenset:
    from reconcile.models.plan import ActionKind

    if not only:
        return frozenset(ActionKind)
    return frozenset(ActionKind(k) for name in only for k in ONLY[name])

mode_option = click.option("--mode", type=click.Choice(["full", "incremental"]), default="full", show_default=True,
                           help="full: sweep the whole universe; incremental: the Braze lists' recent window plus open drift.")


def population_options(fn):
    """--subjects, --drift and --seed for commands that seed the sandbox."""
    fn = click.option("--seed", type=int, default=None, help="Random seed (default: sandbox.seed).")(fn)
    fn = click.option("--drift", type=float, default=None,
                      help="Fraction of subjects given drift (default: sandbox.drift).")(fn)
    return click.option("--subjects", type=int, default=None, help="Population size (default: sandbox.subjects).")(fn)


def print_counts(counts: dict[str, int]) -> None:
    click.echo("drift by class:")
    for c in DRIFT_CLASSES:
        click.echo(f"  {c:<20} {SEVERITY[c]:<9} {counts.get(c, 0)}")


def print_summary(s: Any) -> None:
    print_counts(s.counts)
    click.echo(f"run {s.run_id}: {s.status} (exit {s.exit_code}); actions planned {s.actions_planned}, "
               f"sent {s.actions_sent}, failed {s.actions_failed}, items rejected {s.rejected_items}; "
               f"verified {s.verified}, unverified {s.unverified}")
    if s.overrides:
        click.echo(f"guards overridden: {', '.join(s.overrides)}")
    for m in s.messages[:10]:
        click.echo(f"  ! {m}", err=True)
