"""Helpers shared by the commands: loading the config, opening an observed runtime, printing."""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import click

from reconcile.config import Config, config_path, load_config
from reconcile.engine.classes import DRIFT_CLASSES, SEVERITY

DEFAULT_CONFIG = "jobs/sandbox.toml"
PACKAGED_JOB = "sandbox.toml"  # reconcile/jobs/: the sandbox job for a folder without jobs/sandbox.toml


def get_config(ctx: click.Context, default: str | None = None, read_only: bool = False) -> Config:
    """The job config: --config or $RECONCILE_CONFIG, else `default`. When `default` is the
    sandbox job and the working folder has none, the packaged copy is used, with its paths
    (state, seeded files, reports) under the working folder. A `read_only` command (runs,
    report) given no config reads the demo's state: jobs/sandbox.toml, else the packaged job
    when ./.reconcile/state.db exists (what `reconcile demo` leaves)."""
    from reconcile.config.extras import check_config

    if read_only and default is None and not ctx.find_root().obj.get("config_path"):
        default = demo_config()
    raw = ctx.find_root().obj.get("config_path") or default
    if raw == DEFAULT_CONFIG and not ctx.find_root().obj.get("config_path") and not Path(raw).exists():
        cfg = packaged_job()
    else:
        cfg = load_config(config_path(raw))
    check_config(cfg)
    return cfg


def demo_config() -> str | None:
    """The sandbox job the working folder's demo state belongs to, if any."""
    if Path(DEFAULT_CONFIG).exists() or Path(".reconcile", "state.db").exists():
        return DEFAULT_CONFIG
    return None


def packaged_job(base: Path | None = None) -> Config:
    import tomllib
    from importlib.resources import files

    from reconcile.config import parse_config

    resource = files("reconcile.jobs").joinpath(PACKAGED_JOB)
    data = tomllib.loads(resource.read_text(encoding="utf-8"))
    return parse_config(data, (base or Path.cwd()).resolve(), Path(str(resource)))


def is_packaged(cfg: Config) -> bool:
    from importlib.resources import files

    return cfg.path is not None and str(cfg.path) == str(files("reconcile.jobs").joinpath(PACKAGED_JOB))


def run_ids(ctx: click.Context, cfg: Config) -> Any:
    """A progress object keeping the ids of the runs a command starts (passing every event
    on to the command's telemetry), so an error can name the report of the run it ended."""
    from reconcile.observability.events import RunIds

    root = ctx.find_root().obj
    runs = RunIds(root.get("telemetry"))
    root["runs"], root["report_dir"] = runs, Path(cfg.report.dir)
    return runs


def failed_run_report(ctx: click.Context) -> Path | None:
    """The report of the last run the command started, once it is written."""
    root = ctx.find_root().obj or {}
    runs, folder = root.get("runs"), root.get("report_dir")
    path = folder / f"{runs.last}.md" if runs is not None and runs.last and folder is not None else None
    return path if path is not None and path.exists() else None


def runtime(ctx: click.Context, default: str | None = None, cfg: Config | None = None) -> Any:
    from reconcile.pipeline.session import open_session  # heavy (pandas, httpx, SQLAlchemy): only when a command runs

    cfg = cfg or get_config(ctx, default)
    return open_session(cfg, progress=run_ids(ctx, cfg))


@contextmanager
def observed(ctx: click.Context, cfg: Config, metrics_file: str | None = None) -> Iterator[Any]:
    """Around a command that runs the job: progress on stderr, log context, HTTP counters;
    once the run has closed (whatever its outcome), its metrics and notifications."""
    from reconcile.observability.display import display_for
    from reconcile.observability.events import Telemetry, observing
    from reconcile.observability.logs import ContextListener
    from reconcile.observability.postrun import job_name

    root = ctx.find_root().obj
    telemetry = Telemetry()
    telemetry.listeners.append(ContextListener(job_name(cfg)))
    display = display_for(telemetry, quiet=bool(root.get("quiet")), log_format=str(root.get("log_format") or "text"))
    root["telemetry"] = telemetry
    root["display"] = display
    report: Path | None = None
    try:
        with observing(telemetry):
            yield telemetry
    except BaseException:
        report = failed_run_report(ctx)  # the report of the run the error ended, named in its notification
        raise
    finally:
        telemetry.finish()
        root.pop("telemetry", None)
        stop_display(ctx)
        _after(cfg, telemetry, Path(metrics_file) if metrics_file else None, str(report) if report else None)


def stop_display(ctx: click.Context) -> None:
    """End the progress display (its last line drawn finished) so what follows prints below it."""
    display = ctx.find_root().obj.pop("display", None)
    if display is not None:
        display.stop()


def _after(cfg: Config, telemetry: Any, metrics_file: Path | None, report_path: str | None) -> None:
    import logging

    from reconcile.config import state_url
    from reconcile.observability.postrun import after_runs
    from reconcile.store.store import Store

    if not telemetry.run_ids:
        return
    try:
        with Store.open(state_url(cfg)) as store:
            after_runs(cfg, store, telemetry, report_path=report_path, metrics_file=metrics_file)
    except Exception:  # noqa: BLE001 - what is said after a run must not change its outcome
        logging.getLogger(__name__).warning("post-run metrics and notifications failed", exc_info=True)


format_option = click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
                             help="text for people; json: one JSON document on stdout "
                                  "(progress and logs stay on stderr).")

metrics_option = click.option("--metrics-file", type=click.Path(dir_okay=False), default=None,
                              help="Write the run's Prometheus metrics to this file (default: metrics.textfile).")


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str, sort_keys=True))


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
                           help="full: sweep the whole universe; "
                                "incremental: the Braze lists' recent window plus open drift.")


def population_options(fn):
    """--subjects, --drift and --seed for commands that seed the sandbox."""
    fn = click.option("--seed", type=int, default=None, help="Random seed (default: sandbox.seed).")(fn)
    fn = click.option("--drift", type=float, default=None,
                      help="Fraction of subjects given drift (default: sandbox.drift).")(fn)
    return click.option("--subjects", type=int, default=None, help="Population size (default: sandbox.subjects).")(fn)


def print_counts(counts: dict[str, int], err: bool = False) -> None:
    click.echo("drift by class:", err=err)
    for c in DRIFT_CLASSES:
        click.echo(f"  {c:<20} {SEVERITY[c]:<9} {counts.get(c, 0)}", err=err)


def print_channels(store: Any, run_id: str, cfg: Any) -> None:
    """The run's drift items per channel, when an SMS topic is mapped: found and corrected."""
    from reconcile.reports.channels import by_channel, sms_groups

    sms = sms_groups(cfg)
    if not sms:
        return
    click.echo("drift by channel (found, corrected):")
    for r in by_channel(store.drift_items(run_id=run_id), sms):
        note = "  (SMS opt-outs of unknown time: never resubscribed)" \
            if r["channel"] == "sms" and r["drift_class"] == "braze_newer_optout" else ""
        click.echo(f"  {r['channel']:<6} {r['drift_class']:<20} {r['count']:>5} {r['corrected']:>5}{note}")


def print_summary(s: Any) -> None:
    print_counts(s.counts)
    from reconcile.reports.humanize import dash

    click.echo(f"run {s.run_id}: {s.status} (exit {s.exit_code}); actions planned {dash(s.actions_planned)}, "
               f"sent {dash(s.actions_sent)}, failed {dash(s.actions_failed)}, items rejected "
               f"{dash(s.rejected_items)}; verified {dash(s.verified)}, unverified {dash(s.unverified)}")
    if s.overrides:
        click.echo(f"guards overridden: {', '.join(s.overrides)}")
    ctx = click.get_current_context(silent=True)
    if ctx is not None and (ctx.find_root().obj or {}).get("log_format") == "json":
        return  # stderr is NDJSON: the run-end event carries the outcome
    for m in s.messages[:10]:
        click.echo(f"  ! {m}", err=True)

