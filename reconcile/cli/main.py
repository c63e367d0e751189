"""The `reconcile` command line. Errors become exit codes in one place (`Cli.invoke`).

Exit codes: 0 in sync / nothing to do / success, 1 error, 2 drift found (plan, dry run),
4 partial failure, 5 stale plan, 6 another run holds the lock, 10-14 a guard refused apply.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from reconcile.errors import ReconcileError


class Cli(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        from reconcile.interrupts import Interrupted

        try:
            return super().invoke(ctx)
        except ReconcileError as exc:
            click.echo(f"error: {exc}", err=True)
            _report_line(exc)
            ctx.exit(exc.exit_code)
        except Interrupted as exc:
            click.echo(f"interrupted by signal {exc.signum}: the batch in flight was journaled; "
                       "the next run resumes the rest", err=True)
            _report_line(exc)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt as exc:
            click.echo("interrupted: the next run resumes from the journal", err=True)
            _report_line(exc)
            ctx.exit(130)


def _report_line(exc: BaseException) -> None:
    path = getattr(exc, "report_path", None)
    if path:
        click.echo(f"report: {path}", err=True)


@click.group(cls=Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", envvar="RECONCILE_CONFIG", type=click.Path(dir_okay=False),
              help="Job config TOML (default: $RECONCILE_CONFIG).")
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
@click.version_option(package_name="reconcile")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, verbose: int) -> None:
    """Keep Braze honest about what people told Ketch.

    Example:

        reconcile demo
    """
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if verbose < 2:  # httpx logs full request URLs at INFO, and Braze query strings carry emails
        logging.getLogger("httpx").setLevel(logging.WARNING)
    ctx.obj = {"config_path": config_path}


def _register() -> None:
    from reconcile.cli import config_cmds, doctor_cmds, run_cmds, runs_cmds, sandbox_cmds, schedule_cmds

    for module in (config_cmds, doctor_cmds, run_cmds, runs_cmds, sandbox_cmds, schedule_cmds):
        for command in module.COMMANDS:
            cli.add_command(command)


_register()
