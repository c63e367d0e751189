"""`reconcile doctor`: check the configuration against Braze, Ketch and the state database."""

from __future__ import annotations

import json

import click

from reconcile.cli.common import get_config


@click.command("doctor")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="text: tables for people; json: a list of checks.")
@click.pass_context
def doctor_cmd(ctx: click.Context, fmt: str) -> None:
    """Check, before any run, that the job's configuration can work.

    Probes every Braze endpoint the job may call with a request Braze refuses as invalid
    (or a read of an identity that does not exist) and reports which permissions the REST
    API key has; reads one synthetic identity from Ketch with the configured codes; opens
    and migrates the state database. With `subscription.groups.get`, checks each mapped
    group's channel against Braze's, from the groups up to 50 profiles of the identity list
    have a state in. Prints what one full sweep costs in Braze read requests with and
    without the optional permissions, per subject and for the last full run's universe.
    Nothing about a real person is changed.

    Exit 0 when every required permission is granted and everything is reachable (missing
    optional permissions are warnings), 1 otherwise, including a mapped subscription group
    Braze refuses as unknown (asked of `/subscription/status/get` for each mapped group).

    Example:

        reconcile --config jobs/production.toml doctor --format json
    """
    from reconcile.pipeline.doctor import run_doctor
    from reconcile.pipeline.session import install_secret_filter

    cfg = get_config(ctx)
    install_secret_filter(cfg)
    report = run_doctor(cfg)
    if fmt == "json":
        click.echo(json.dumps(report.checks(), indent=2))
    else:
        _print_text(report)
    ctx.exit(report.exit_code())


def _print_text(report) -> None:
    if report.key.ok:
        click.echo(f"Braze ({report.braze_endpoint}): key {report.key.status}")
        _print_permissions(report.permissions)
    else:
        click.echo(f"Braze ({report.braze_endpoint}): permissions not checked, the key is not usable (see below)")
    k, s = report.ketch, report.store
    click.echo(f"Ketch: {k.status}: {k.detail}")
    click.echo(f"State database: {s.status}: {s.detail}")
    if report.groups is not None:
        click.echo(f"Subscription groups: {report.groups.status}: {report.groups.detail}")
    if report.channels is not None:
        click.echo(f"Subscription group channels: {report.channels.status}: {report.channels.detail}")
    if report.costs is not None:
        n = report.costs[0].subjects
        size = f"{n:,} subjects, the last full run" if n is not None else "no full run yet to size it"
        click.echo(f"Braze read requests of one full sweep ({size}):")
        for line in report.cost_lines():
            click.echo(f"  {line}")
    for line in report.warnings():
        click.echo(f"warning: {line}", err=True)
    problems = report.problems()
    for line in problems:
        click.echo(f"error: {line}", err=True)
    click.echo(f"doctor: {len(problems)} problem(s), the job cannot run as configured" if problems
               else "doctor: ready to run")


def _print_permissions(results) -> None:
    rows = [("endpoint", "permission", "need", "status", "without it")]
    rows += [(f"{r.spec.method} {r.spec.endpoint}", r.spec.permission, "required" if r.spec.required else "optional",
              r.status, r.spec.lost_without) for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        click.echo("  " + "  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths)) + "  " + row[4])
    for r in results:
        if r.status != "granted":
            click.echo(f"  {r.spec.endpoint}: {r.detail}")


COMMANDS = [doctor_cmd]
