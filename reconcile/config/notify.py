"""The `[notify]` section of a job config (`[metrics]` is in `config/metrics.py`).

    [notify]
    events = ["critical_drift", "guard_refused", "run_failed", "run_interrupted", "sla_breach",
              "fire_missed", "fire_skipped", "stalled"]
    sla_business_days = 10          # open critical drift older than this is an SLA breach
    timeout_seconds = 5
    retries = 2
    report_url = "https://reports.example.com/reconcile/"   # optional: a link base for report files

    [[notify.targets]]
    kind = "slack"                  # or "webhook" (generic JSON)
    url_env = "RECONCILE_SLACK_WEBHOOK_URL"

    [metrics]
    textfile = "/var/lib/node_exporter/textfile/reconcile.prom"
    pushgateway_url_env = "RECONCILE_PUSHGATEWAY_URL"
    job = "reconcile"

Webhook URLs are secrets (a Slack URL is its own credential): only the names of the
variables holding them are in the file. Neither section changes what a run does, so
neither is part of the config hash.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reconcile.errors import ConfigProblem

EVENTS = ("critical_drift", "guard_refused", "run_failed", "run_interrupted", "sla_breach", "fire_missed",
          "fire_skipped", "stalled")
KINDS = ("webhook", "slack")


@dataclass(frozen=True)
class NotifyTarget:
    kind: str
    url_env: str


@dataclass(frozen=True)
class NotifyConfig:
    targets: tuple[NotifyTarget, ...] = ()
    events: tuple[str, ...] = EVENTS
    sla_business_days: int = 10
    timeout_seconds: float = 5.0
    retries: int = 2
    report_url: str | None = None

    def secret_names(self) -> list[str]:
        return [t.url_env for t in self.targets]

    def with_targets(self, extra: tuple[NotifyTarget, ...] = ()) -> "NotifyConfig":
        """These settings with `extra` targets (a schedules.toml job's `notify`) added to the
        config's, each (kind, variable) once."""
        from dataclasses import replace

        return replace(self, targets=tuple(dict.fromkeys(self.targets + tuple(extra))))


def _problem(key: str, problem: str, fix: str) -> ConfigProblem:
    return ConfigProblem(key, problem, fix)


def section(data: Any, name: str, problems: list[ConfigProblem]) -> dict[str, Any]:
    if isinstance(data, dict):
        return data
    problems.append(_problem(name, f"must be a table, got {type(data).__name__}", f"write [{name}] as a TOML table"))
    return {}


def _number(d: dict[str, Any], key: str, default: float, lo: float, hi: float, problems: list[ConfigProblem],
            integer: bool = False) -> Any:
    value = d.get(key, default)
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not lo <= value <= hi:
        problems.append(_problem(f"notify.{key}", f"must be a number between {lo} and {hi}, got {value!r}",
                                 f"set notify.{key} = {default}"))
        return default
    return value if integer else float(value)


def parse_notify(data: Any, problems: list[ConfigProblem]) -> NotifyConfig:
    d = section(data, "notify", problems)
    default = NotifyConfig()
    for key in d:
        if key not in ("targets", "events", "sla_business_days", "timeout_seconds", "retries", "report_url"):
            problems.append(_problem(f"notify.{key}", "unknown key",
                                     "remove it or check its spelling against docs/config.md"))
    targets = []
    raw_targets = d.get("targets", [])
    if not isinstance(raw_targets, list):
        problems.append(_problem("notify.targets", "must be an array of tables",
                                 'write [[notify.targets]] with kind = "webhook" and url_env = "..."'))
        raw_targets = []
    for i, t in enumerate(raw_targets):
        key = f"notify.targets[{i}]"
        if not isinstance(t, dict):
            problems.append(_problem(key, "must be a table", 'write [[notify.targets]] with kind and url_env'))
            continue
        kind, url_env = t.get("kind"), t.get("url_env")
        if kind not in KINDS:
            problems.append(_problem(f"{key}.kind", f"must be one of {', '.join(KINDS)}, got {kind!r}",
                                     'set kind = "webhook" or kind = "slack"'))
        if not isinstance(url_env, str) or not url_env:
            problems.append(_problem(f"{key}.url_env", "missing: the name of the variable holding the URL",
                                     'set url_env = "RECONCILE_WEBHOOK_URL"'))
        if "url" in t:
            problems.append(_problem(f"{key}.url", "webhook URLs are secrets and are not allowed in the file",
                                     "delete it; put the URL in the environment variable named by url_env"))
        for extra in set(t) - {"kind", "url_env", "url"}:
            problems.append(_problem(f"{key}.{extra}", "unknown key", "use kind and url_env"))
        if kind in KINDS and isinstance(url_env, str) and url_env:
            targets.append(NotifyTarget(kind, url_env))
    events = d.get("events", list(default.events))
    if not isinstance(events, list) or not all(e in EVENTS for e in events):
        problems.append(_problem("notify.events", f"must be a list drawn from {', '.join(EVENTS)}, got {events!r}",
                                 f"set notify.events = {list(EVENTS)!r}".replace("'", '"')))
        events = list(default.events)
    report_url = d.get("report_url")
    if report_url is not None and (not isinstance(report_url, str) or not report_url.startswith(("https://", "http://"))):
        problems.append(_problem("notify.report_url", f"must be an http(s) URL, got {report_url!r}",
                                 'set notify.report_url = "https://reports.example.com/reconcile/"'))
        report_url = None
    return NotifyConfig(
        targets=tuple(targets), events=tuple(events),
        sla_business_days=_number(d, "sla_business_days", default.sla_business_days, 1, 365, problems, integer=True),
        timeout_seconds=_number(d, "timeout_seconds", default.timeout_seconds, 0.1, 120, problems),
        retries=_number(d, "retries", default.retries, 0, 10, problems, integer=True),
        report_url=report_url,
    )
