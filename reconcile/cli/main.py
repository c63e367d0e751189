"""The `reconcile` command line. Errors become exit codes in one place (`Cli.invoke`);
the table of them (`EXIT_CODES`) closes every command's `--help`."""

from __future__ import annotations

import re
from typing import Any

import click

from reconcile.errors import ExitCode, ReconcileError

USAGE = 64  # EX_USAGE: a bad option or argument (never 2, which means drift found)

_PAIRS = [f"{code} {name}" for name, code in sorted(ExitCode.GUARDS.items(), key=lambda kv: kv[1])]
_GUARDS = ",\n         ".join(", ".join(_PAIRS[i:i + 3]) for i in range(0, len(_PAIRS), 3))
_LO, _HI = min(ExitCode.GUARDS.values()), max(ExitCode.GUARDS.values())
EXIT_CODES = f"""\b
Exit codes:
  0      in sync, nothing to do, or applied successfully
  1      error (bad config, API failure, bad input)
  2      drift found (plan, run --dry-run): corrections are pending
  4      partial failure: some batches failed or items were rejected
  5      stale plan: the planned subjects changed; nothing was sent
  6      another run holds the run lock
  {_LO}-{_HI}  a guard refused apply; nothing was written to Braze:
         {_GUARDS}
  64     usage error (unknown option, bad argument)
  130    interrupted by SIGINT (Ctrl-C)
  143    stopped by SIGTERM"""


GLOBAL_VALUED = ("--config", "--log-format")
GLOBAL_FLAGS = ("-q", "--quiet", "--verbose")
_SHORT_GLOBALS = re.compile(r"^-[qv]+$")


def hoist_global_options(args: list[str]) -> list[str]:
    """`args` with the global options found after the subcommand moved before it, so
    `reconcile run --config X -q` means `reconcile --config X -q run`. Everything after `--`
    is left alone."""
    i = 0
    while i < len(args) and args[i].startswith("-") and args[i] != "--":
        i += 2 if args[i] in GLOBAL_VALUED else 1
    if i >= len(args) or args[i] == "--":
        return list(args)
    head, rest, moved = list(args[:i]), list(args[i:]), []
    kept: list[str] = []
    j = 0
    while j < len(rest):
        token = rest[j]
        if token == "--":
            kept.extend(rest[j:])
            break
        if token in GLOBAL_VALUED and j + 1 < len(rest):
            moved.extend(rest[j:j + 2])
            j += 2
            continue
        if token.startswith(tuple(f"{name}=" for name in GLOBAL_VALUED)) or token in GLOBAL_FLAGS \
                or _SHORT_GLOBALS.match(token):
            moved.append(token)
        else:
            kept.append(token)
        j += 1
    return head + moved + kept


class Cli(click.Group):
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if ctx.parent is None:
            args = hoist_global_options(args)
        return super().parse_args(ctx, args)

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            exc.exit_code = USAGE  # type: ignore[misc]  # click declares a ClassVar; main() reads exc.exit_code
            raise

    def invoke(self, ctx: click.Context) -> Any:
        from reconcile.pipeline.interrupts import Interrupted

        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            exc.exit_code = USAGE  # type: ignore[misc]  # click declares a ClassVar; main() reads exc.exit_code
            raise
        except ReconcileError as exc:
            _say(ctx, f"error: {exc}", "error", exc)
            _report_line(ctx)
            ctx.exit(exc.exit_code)
        except Interrupted as exc:
            _say(ctx, f"interrupted by signal {exc.signum}: the batch in flight was journaled; "
                 "the next run resumes the rest", "interrupted", exc)
            _report_line(ctx)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            _say(ctx, "interrupted: the next run resumes from the journal", "interrupted")
            _report_line(ctx)
            ctx.exit(130)


def _say(ctx: click.Context, text: str, event: str, exc: BaseException | None = None) -> None:
    """A line for the person at stderr: plain, or with --log-format json an NDJSON event
    (with the id and report of the last run the command started, when there is one)."""
    if (ctx.obj or {}).get("log_format") != "json":
        click.echo(text, err=True)
        return
    import logging

    from reconcile.cli.common import failed_run_report

    extra: dict[str, Any] = {"event": event}
    runs = (ctx.find_root().obj or {}).get("runs")
    if runs is not None and runs.last:
        extra["run_id"] = runs.last
    path = failed_run_report(ctx)
    if path is not None:
        extra["report"] = str(path)
    if exc is not None and getattr(exc, "exit_code", None) is not None:
        extra["counts"] = {"exit_code": int(exc.exit_code)}  # type: ignore[attr-defined]
    logging.getLogger("reconcile.cli").error(text, extra=extra)


def _report_line(ctx: click.Context) -> None:
    from reconcile.cli.common import failed_run_report

    path = failed_run_report(ctx)
    if path is not None and (ctx.obj or {}).get("log_format") != "json":  # the JSON error event carries it
        click.echo(f"report: {path}", err=True)


@click.group(cls=Cli, context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXIT_CODES)
@click.option("--config", "config_path", envvar="RECONCILE_CONFIG", type=click.Path(dir_okay=False),
              help="Job config TOML (default: $RECONCILE_CONFIG).")
@click.option("-v", "--verbose", count=True,
              help="More logging: -v the pipeline's messages (stages, waits), -vv debug, HTTP libraries included.")
@click.option("-q", "--quiet", is_flag=True, help="No progress display on stderr (warnings and errors still show).")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              envvar="RECONCILE_LOG_FORMAT",
              help="json: one object a line (time, level, run_id, job, stage, event, counts).")
@click.version_option(package_name="ketch-braze-reconcile", prog_name="reconcile")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, verbose: int, quiet: bool, log_format: str) -> None:
    """Keep Braze honest about what people told Ketch.

    The options above may also follow the command: `reconcile run --config job.toml -q`.

    Example:

        reconcile demo
    """
    from reconcile.observability.logs import configure_logging

    ctx.call_on_close(configure_logging(verbose, log_format))
    ctx.obj = {"config_path": config_path, "verbose": verbose, "quiet": quiet, "log_format": log_format}


def _with_epilog(command: click.Command) -> None:
    if not command.epilog:
        command.epilog = EXIT_CODES
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            _with_epilog(sub)


def _register() -> None:
    from reconcile.cli import (config_cmds, doctor_cmds, init_cmds, ledger_cmds, run_cmds, runs_cmds, sandbox_cmds,
                               schedule_cmds)

    for module in (init_cmds, config_cmds, doctor_cmds, run_cmds, runs_cmds, sandbox_cmds, schedule_cmds, ledger_cmds):
        for command in module.COMMANDS:
            cli.add_command(command)
            _with_epilog(command)
    from reconcile.cli import report_cmds

    for command in report_cmds.COMMANDS:
        cli.add_command(command)
        _with_epilog(command)
    from reconcile.cli import lock_cmds, scheduler_cmds, subject_cmds

    for command in lock_cmds.COMMANDS + scheduler_cmds.COMMANDS + subject_cmds.COMMANDS:
        cli.add_command(command)
        _with_epilog(command)


_register()
