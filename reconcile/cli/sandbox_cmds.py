"""`reconcile sandbox seed|serve`: the local Braze and Ketch simulators."""

from __future__ import annotations

import signal
import threading
from typing import Any

import click

from reconcile.cli.common import DEFAULT_CONFIG, get_config, population_options
from reconcile.config import Config


def seed_sandbox(cfg: Config, subjects: int | None, drift: float | None, seed: int | None) -> Any:
    """Seed fresh simulators from the config's mapping and save them to sandbox.state_file."""
    from reconcile.pipeline.session import SandboxPair, utc_now
    from reconcile.sandbox.braze import BrazeSim
    from reconcile.sandbox.ketch import KetchSim
    from reconcile.sandbox.population import seed_population

    if cfg.sandbox.state_file is None:
        raise click.UsageError("the config has no sandbox.state_file")
    braze, ketch = BrazeSim(), KetchSim(organization=cfg.ketch.organization)
    truth = seed_population(cfg, braze, ketch, subjects=cfg.sandbox.subjects if subjects is None else subjects,
                            drift=cfg.sandbox.drift if drift is None else drift,
                            seed=cfg.sandbox.seed if seed is None else seed, now=utc_now())
    SandboxPair(braze, ketch, cfg.sandbox.state_file).save()
    return truth


def configure_braze(braze: Any, cfg: Config, permissions: str | None) -> None:
    """Apply the config's [sandbox] Braze options, `--permissions` overriding braze_permissions."""
    from reconcile.sandbox.braze import braze_sim_options, permission_set

    options = braze_sim_options(cfg.sandbox)
    if permissions is not None:
        options["permissions"] = set(permission_set(permissions))
    for name, value in options.items():
        setattr(braze, name, value)


def serve_banner(braze: Any, braze_url: str, ketch_url: str, permissions: str) -> str:
    """What `sandbox serve` prints: where each simulator listens and the key the Braze simulator expects."""
    return "\n".join([
        f"braze: {braze_url}",
        f"braze REST API key: {braze.api_key} (permissions: {permissions})",
        f"braze segment export downloads: {braze_url}/_downloads/",
        f"ketch: {ketch_url}/web/v3",
        f"admin: {braze_url}/_admin/state, {braze_url}/_admin/calls",
    ])


@click.group("sandbox")
def sandbox_group() -> None:
    """Seed and serve the Braze and Ketch simulators.

    Example:

        reconcile sandbox seed --subjects 1000 --drift 0.03
    """


@sandbox_group.command("seed")
@population_options
@click.pass_context
def seed_cmd(ctx: click.Context, subjects: int | None, drift: float | None, seed: int | None) -> None:
    """Generate a population with realistic drift and write the universe files.

    Example:

        reconcile sandbox seed --subjects 5000 --drift 0.03
    """
    cfg = get_config(ctx, DEFAULT_CONFIG)
    truth = seed_sandbox(cfg, subjects, drift, seed)
    click.echo(f"seeded {truth.subjects} subjects into {cfg.sandbox.state_file}; drift injected: "
               + ", ".join(f"{k} {v}" for k, v in sorted(truth.counts().items())))


@sandbox_group.command("serve")
@click.option("--braze-port", type=int, default=9101, show_default=True)
@click.option("--ketch-port", type=int, default=9102, show_default=True)
@click.option("--error-rate", type=float, default=0.0, help="Answer this fraction of API calls with a 5xx.")
@click.option("--latency", type=float, default=0.0, help="Seconds added to every answer.")
@click.option("--timeout-rate", type=float, default=0.0, help="Never answer this fraction of API calls.")
@click.option("--permissions", type=click.Choice(["all", "partner"]), default=None,
              help="The Braze key's permissions: all endpoints, or the eight of Braze's Ketch partner page "
                   "(others answer 403). Default: sandbox.braze_permissions.")
@click.pass_context
def serve_cmd(ctx: click.Context, braze_port: int, ketch_port: int, error_rate: float, latency: float,
              timeout_rate: float, permissions: str | None) -> None:
    """Serve the seeded simulators over HTTP on 127.0.0.1 until interrupted; saves state on exit.

    Point a config's braze.rest_endpoint and ketch.base_url at the printed URLs
    (with [sandbox] enabled = false and the printed key in braze.api_key_env) to run
    the job over real HTTP.

    Example:

        reconcile sandbox serve --braze-port 9101 --ketch-port 9102 --error-rate 0.05 --permissions partner
    """
    from reconcile.config.extras import require
    from reconcile.pipeline.session import load_sandbox

    require("server", "reconcile sandbox serve")
    from reconcile.sandbox.server import serve

    cfg = get_config(ctx, DEFAULT_CONFIG)
    pair = load_sandbox(cfg)
    configure_braze(pair.braze, cfg, permissions)
    for sim in (pair.braze, pair.ketch):
        sim.faults.error_rate, sim.faults.latency_seconds, sim.faults.timeout_rate = error_rate, latency, timeout_rate
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with serve(pair.braze, port=braze_port) as b, serve(pair.ketch, port=ketch_port) as k:
        click.echo(serve_banner(pair.braze, b.url, k.url, permissions or cfg.sandbox.braze_permissions))
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
    pair.save()
    click.echo("sandbox state saved")


COMMANDS = [sandbox_group]
