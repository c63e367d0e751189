"""`reconcile config check|show`."""

from __future__ import annotations

import json

import click

from reconcile.cli.common import echo_json, format_option, get_config
from reconcile.config import check_file, config_path, load_config
from reconcile.errors import ConfigError
from reconcile.redact import REDACTED, is_secret_name


@click.group("config")
def config_group() -> None:
    """Check or show the job configuration.

    Example:

        reconcile --config jobs/sandbox.toml config check
    """


@config_group.command("check")
@format_option
@click.pass_context
def check(ctx: click.Context, fmt: str) -> None:
    """Report every problem in the config at once, with its key and the fix.

    With --format json: `{"path", "ok", "config_hash", "problems": [{"key", "problem", "fix"}]}`
    on stdout (exit 1 when there are problems).

    Example:

        reconcile --config jobs/production.example.toml config check --format json
    """
    from reconcile.config.sanity import endpoint_warnings, universe_header_problems

    path = config_path(ctx.find_root().obj.get("config_path"))
    problems = check_file(path)
    warnings: list[str] = []
    if not problems:
        cfg = load_config(path)
        problems += universe_header_problems(cfg)
        warnings = endpoint_warnings(cfg)
    if fmt == "json":
        echo_json({"path": str(path), "ok": not problems, "config_hash": None if problems else load_config(path).hash(),
                   "problems": [{"key": p.key, "problem": p.problem, "fix": p.fix} for p in problems],
                   "warnings": warnings})
        ctx.exit(ConfigError.exit_code if problems else 0)
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    if problems:
        raise ConfigError(problems, source=str(path))
    click.echo(f"{path}: ok (config hash {load_config(path).hash()})")
    from reconcile.reports.masking import mask_key_notes

    for note in mask_key_notes(load_config(path)):
        click.echo(f"note: {note}")


def _redact(value, key: str = ""):
    if isinstance(value, dict):
        return {k: _redact(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v) for v in value]
    if key == "url" and isinstance(value, str) and value:
        from sqlalchemy.engine import make_url

        return make_url(value).render_as_string(hide_password=True)
    return REDACTED if is_secret_name(key) and value else value


@config_group.command("show")
@click.pass_context
def show(ctx: click.Context) -> None:
    """Print the resolved config as JSON; secrets are only ever env-var names, and redacted.

    Example:

        reconcile --config jobs/sandbox.toml config show
    """
    cfg = get_config(ctx)
    click.echo(json.dumps(_redact(cfg.as_dict()), indent=2))


COMMANDS = [config_group]
