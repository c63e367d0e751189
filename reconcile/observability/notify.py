"""Notifications when compliance is at risk: a generic JSON webhook and Slack.

After a run has closed, `events_for(run, sla)` says which of these happened:

    critical_drift    the run found missed opt-outs, missed deletions or resurrected profiles
    guard_refused     a safety guard refused to apply (nothing was written to Braze)
    run_failed        the run failed, or applied only in part
    run_interrupted   the run was stopped by a signal
    sla_breach        open critical drift older than `notify.sla_business_days` business days
    fire_missed       a scheduled fire could not start within its misfire_grace_time
    fire_skipped      a scheduled fire did not run (the job's previous run still going, or
                      another process holding its run lock), or failed before its run started
    stalled           a scheduled job has not run successfully within two of its fire intervals

and `send_all` sends one message per run to every configured target that lists any of
them. Payloads carry counts, the run id, guard names, the report's path (or link) and
masked subject ids only, never an address or a secret. Each target gets a timeout and a
few retries; a receiver that fails is logged (by its kind and variable name, never its
URL) and never fails the run.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import httpx

from reconcile.clients.tls import verified_context
from reconcile.engine.classes import DRIFT_CLASSES, SEVERITY
from reconcile.models.run import RunStatus
from reconcile.config.notify import NotifyConfig, NotifyTarget

log = logging.getLogger(__name__)

CRITICAL = tuple(c for c in DRIFT_CLASSES if SEVERITY[c] == "critical")
TITLES = {
    "critical_drift": "critical drift found",
    "guard_refused": "a guard refused apply",
    "run_failed": "the run failed",
    "run_interrupted": "the run was interrupted",
    "sla_breach": "critical drift past its SLA",
    "fire_missed": "a scheduled fire was missed",
    "fire_skipped": "a scheduled fire did not run",
    "stalled": "the job has stalled",
}


@dataclass(frozen=True)
class Notice:
    """What a message says about one closed run, or about a fire without a run (`run_id`
    None: missed, skipped, failed before its run, stalled); already free of identities."""

    run_id: str | None
    job: str
    status: str
    exit_code: int | None
    events: tuple[str, ...]
    critical_counts: dict[str, int] = field(default_factory=dict)
    open_critical: int = 0
    oldest_critical_business_days: int = 0
    sla_business_days: int = 10
    guards: tuple[str, ...] = ()
    examples: tuple[str, ...] = ()
    report: str | None = None
    error: str | None = None
    fire_time: str | None = None  # the scheduled fire this is about
    detail: str | None = None  # what happened, for a notice without a run

    def summary(self) -> str:
        what = ", ".join(TITLES[e] for e in self.events)
        if self.run_id is None:
            head = f"reconcile {self.job}: {what}" + (f" (fire at {self.fire_time})" if self.fire_time else "")
            return "\n".join([head, *([self.detail] if self.detail else []),
                              *([f"error: {self.error}"] if self.error else [])])
        crit = ", ".join(f"{c} {n}" for c, n in self.critical_counts.items() if n) or "none"
        parts = [f"reconcile {self.job}: {what} (run {self.run_id}, status {self.status}, exit {self.exit_code})",
                 f"critical drift this run: {crit}; open critical items {self.open_critical}, oldest "
                 f"{self.oldest_critical_business_days} business day(s) (SLA {self.sla_business_days})"]
        if self.guards:
            parts.append(f"refused by: {', '.join(self.guards)}; nothing was written to Braze")
        if self.examples:
            parts.append(f"examples: {', '.join(self.examples)}")
        if self.error:
            parts.append(f"error: {self.error}")
        if self.report:
            parts.append(f"report: {self.report}")
        return "\n".join(parts)

    def webhook(self) -> dict[str, Any]:
        return {"source": "reconcile", "job": self.job, "run_id": self.run_id, "status": self.status,
                "exit_code": self.exit_code, "events": list(self.events),
                "critical_drift": self.critical_counts, "open_critical_drift": self.open_critical,
                "oldest_open_critical_business_days": self.oldest_critical_business_days,
                "sla_business_days": self.sla_business_days, "guards": list(self.guards),
                "examples": list(self.examples), "report": self.report, "error": self.error,
                "fire_time": self.fire_time, "detail": self.detail, "text": self.summary()}

    def slack(self) -> dict[str, Any]:
        lines = self.summary().splitlines()
        return {"text": lines[0], "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": lines[0][:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines[1:]) or lines[0]}},
        ]}


def events_for(run: Mapping[str, Any], open_critical_days: int, sla_days: int) -> list[str]:
    status = run.get("status")
    counts = run.get("drift_counts") or {}
    out = []
    if any(int(counts.get(c, 0)) for c in CRITICAL):
        out.append("critical_drift")
    if status == RunStatus.REFUSED:
        out.append("guard_refused")
    if status in (RunStatus.FAILED, RunStatus.PARTIAL):
        out.append("run_failed")
    if status == RunStatus.INTERRUPTED:
        out.append("run_interrupted")
    if open_critical_days > sla_days:
        out.append("sla_breach")
    return out


@dataclass
class Delivery:
    target: NotifyTarget
    ok: bool
    tries: int
    detail: str = ""


@dataclass
class Sender:
    """Posts JSON with a timeout and retries; `transport` and `sleep` are injectable."""

    timeout: float = 5.0
    retries: int = 2
    sleep: Callable[[float], None] = time.sleep
    transport: httpx.BaseTransport | None = None
    backoff: float = 0.5
    sent: list[Delivery] = field(default_factory=list)

    def post(self, target: NotifyTarget, url: str, body: dict[str, Any]) -> Delivery:
        detail = ""
        tries = 0
        with httpx.Client(timeout=self.timeout, transport=self.transport, follow_redirects=False,
                          verify=verified_context()) as client:
            for attempt in range(self.retries + 1):
                tries += 1
                try:
                    answer = client.post(url, json=body)
                except httpx.HTTPError as exc:
                    detail = type(exc).__name__
                else:
                    if 200 <= answer.status_code < 300:
                        return Delivery(target, True, tries)
                    detail = f"HTTP {answer.status_code}"
                    if answer.status_code < 500 and answer.status_code not in (408, 429):
                        break
                if attempt < self.retries:
                    self.sleep(min(5.0, self.backoff * 2 ** attempt))
        return Delivery(target, False, tries, detail)


def send_all(cfg: NotifyConfig, notice: Notice, environ: Mapping[str, str],
             sender: Sender | None = None) -> list[Delivery]:
    """Send `notice` to every target; never raises for a receiver's failure."""
    wanted = tuple(e for e in notice.events if e in cfg.events)
    if not wanted or not cfg.targets:
        return []
    notice = Notice(**{**notice.__dict__, "events": wanted})
    sender = sender or Sender(timeout=cfg.timeout_seconds, retries=cfg.retries)
    out = []
    for target in cfg.targets:
        url = environ.get(target.url_env)
        if not url:
            log.warning("notify: %s target skipped: environment variable %s is not set", target.kind, target.url_env)
            out.append(Delivery(target, False, 0, f"{target.url_env} is not set"))
            continue
        body = notice.slack() if target.kind == "slack" else notice.webhook()
        try:
            delivery = sender.post(target, url, body)
        except Exception as exc:  # noqa: BLE001 - a receiver must never fail the run
            delivery = Delivery(target, False, 1, type(exc).__name__)
        if delivery.ok:
            log.info("notify: %s target (%s) told of %s", target.kind, target.url_env, ", ".join(wanted),
                     extra={"event": "notified"})
        else:
            log.warning("notify: %s target (%s) failed after %d tries: %s", target.kind, target.url_env,
                        delivery.tries, delivery.detail)
        out.append(delivery)
    return out
