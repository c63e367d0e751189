"""A simulated week of unattended operation, run the way it is deployed.

`schedules.toml` has a nightly full job, an hourly incremental job fed by the Ketch webhook
ledger, and a sliced sweep (one slice a day). Every fire of the week is run in order with
the scheduler's own job function (`run_scheduled`, what each daemon fire and `run --job`
run), its fire time taken from a simulated clock (nothing sleeps), against both simulators
and the ledger over loopback HTTP, with notifications going to a loopback receiver and
metrics to a textfile. Between fires: Ketch opt-outs and DeleteRequests arrive through the
ledger, and Braze changes under the job (resurrected profiles, opt-outs flipped back by an
import, new footer unsubscribes). One window of Braze outages, and one fire whose identity
list collapsed. SQLite lives the whole week, PostgreSQL its first two days (both bad spells
fall inside the span either way).

Asserted: no fire on the healthy workspace is refused; after each applying fire nothing it
corrected is left unverified, and after each nightly run Braze matches Ketch; the collapsed
list is refused and told exactly once; the metrics file moves with each fire; the report
history holds every fire; every injected change is corrected by the next full run at the
latest. Measured and printed: the exposure of each injected change (from the change, in
Ketch or in Braze, to Braze corrected and verified), p50/p99/max per class.
"""

from __future__ import annotations

import json
import math
import os
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from reconcile.config import load_config
from reconcile.config.schedules import load_schedules
from reconcile.errors import ReconcileError
from reconcile.ledger.app import create_app
from reconcile.ledger.serve import start_in_thread
from reconcile.pipeline.job import run_job
from reconcile.pipeline.session import open_session
from reconcile.sandbox.population import seed_population
from reconcile.scheduling.jobs import run_scheduled
from reconcile.store.store import Store
from tests.cli.test_notify import receiver
from tests.operations.conftest import KEY, TOKEN
from tests.pipeline.conftest import job_toml

SUBJECTS = 90
DAYS = float(os.environ.get("OPS_DAYS", "7"))  # a shorter week only to debug the suite locally
# PostgreSQL lives the week's first two days: what differs by backend (runs, locks, the ledger,
# the history, shared reads) is exercised every day, and the whole week runs on SQLite.
PG_DAYS = float(os.environ.get("OPS_PG_DAYS", "2"))


@dataclass(frozen=True)
class Calendar:
    """The simulated span and the hours (from its start) of its two bad spells."""

    days: float

    @property
    def hours(self) -> int:
        return int(24 * self.days)

    @property
    def faults(self) -> tuple[int, int]:  # every Braze request answers 5xx (Wednesday 10:00-12:59 in a week)
        return int(self.hours * 0.4) + 1, int(self.hours * 0.4) + 4

    @property
    def collapse(self) -> int:  # the hourly fire whose identity list arrived empty (Friday 14:00 in a
        # week; never the nightly's hour)
        at = int(self.hours * 0.65)
        return at + (1 if at % 24 == 2 else 0)


NEWSLETTER = [{"topic": "newsletter", "channel": "email", "subscription_group_id": "sg-news"}]
OBSERVED = """
[ledger]
enabled = true
bearer_token_env = "KETCH_WEBHOOK_TOKEN"
callback_backoff_seconds = 0.0
callback_retry_seconds = 0.0

[metrics]
textfile = "metrics/reconcile.prom"

[notify]
timeout_seconds = 2
retries = 1
"""


def week_job_toml(sb: Any, state_url: str) -> str:
    return job_toml(sb.braze_url, sb.ketch_url, topics=NEWSLETTER, state_url=state_url, max_retries=1,
                    concurrency=8, extra=OBSERVED)


SCHEDULES = """timezone = "UTC"
[[job]]
name = "nightly"
config = "job.toml"
cron = "0 2 * * *"
scope = "full"
misfire_grace_time = 3600
notify = [{ kind = "webhook", url_env = "HOOK_URL" }]

[[job]]
name = "hourly"
config = "job.toml"
cron = "@hourly"
scope = "incremental"
misfire_grace_time = 900
notify = [{ kind = "webhook", url_env = "HOOK_URL" }]

[[job]]
name = "sweep"
config = "job.toml"
cron = "30 4 * * *"
scope = "sliced"
slices = 3
misfire_grace_time = 1800
notify = [{ kind = "webhook", url_env = "HOOK_URL" }]
"""


@dataclass
class Change:
    kind: str  # ledger_optout, ledger_erasure, braze_resurrection, braze_flip
    email: str
    at: datetime
    fixed_at: datetime | None = None

    def exposure_hours(self) -> float:
        assert self.fixed_at is not None
        return (self.fixed_at - self.at).total_seconds() / 3600


@dataclass
class Week:
    sb: Any
    cfg: Any
    env: dict[str, str]
    ledger_url: str
    rng: random.Random
    changes: list[Change] = field(default_factory=list)
    erased: list[str] = field(default_factory=list)
    footer: list[str] = field(default_factory=list)
    busy: set[str] = field(default_factory=set)

    # -- the world ----------------------------------------------------------------------
    def emails(self) -> list[str]:
        return sorted({line.strip() for line in (self.sb.tmp / "universe.csv.healthy").read_text().splitlines()[1:]
                       if line.strip()})

    def subscribed(self, email: str) -> bool:
        profiles = self.sb.braze.profiles_by_email(email)
        return bool(profiles) and any(p.email_subscribe != "unsubscribed" for p in profiles)

    def pick(self, want) -> str | None:
        pool = [e for e in self.emails() if e not in self.busy and want(e)]
        return self.rng.choice(pool) if pool else None

    def post(self, doc: dict) -> None:
        answer = httpx.post(self.ledger_url, json=doc, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
        assert answer.status_code in (200, 202, 204), answer.text

    # -- changes between fires ------------------------------------------------------------
    def ledger_optout(self, at: datetime) -> None:
        email = self.pick(lambda e: self.subscribed(e) and e not in self.footer)
        if email is None:
            return
        ts = int(at.timestamp())
        self.sb.ketch.set_consent("email", email, {"email_marketing": False}, ts)
        self.post(_message("ConsentRequest", {
            "property": "web", "environment": "production", "regulation": "gdpr", "jurisdiction": "default",
            "identities": _ids(email), "purposes": {"email_marketing": "denied"},
            "legalBasis": {"email_marketing": "consent_optin"}, "collectedAt": ts}))
        self.busy.add(email)
        self.changes.append(Change("ledger_optout", email, at))

    def ledger_erasure(self, at: datetime) -> None:
        email = self.pick(lambda e: bool(self.sb.braze.profiles_by_email(e)))
        if email is None:
            return
        ts = int(at.timestamp())
        self.post(_message("DeleteRequest", {
            "property": "web", "environment": "production", "regulation": "gdpr", "jurisdiction": "eugdpr",
            "identities": _ids(email), "callbacks": [], "subject": {"email": email, "firstName": "T"},
            "submittedTimestamp": ts, "dueTimestamp": ts + 30 * 86400}))
        self.busy.add(email)
        self.changes.append(Change("ledger_erasure", email, at))

    def braze_resurrection(self, at: datetime) -> None:
        gone = [e for e in self.erased if e not in self.busy and not self.sb.braze.profiles_by_email(e)
                and not any(c.email == e and c.fixed_at is None for c in self.changes)]
        if not gone:
            return
        email = self.rng.choice(gone)
        self.sb.braze.add_profile(email=email, email_subscribe="subscribed", created_at=at.timestamp())
        self.busy.add(email)
        self.changes.append(Change("braze_resurrection", email, at))

    def braze_flip(self, at: datetime) -> None:
        done = [c.email for c in self.changes if c.kind == "ledger_optout" and c.fixed_at is not None
                and not any(d.email == c.email and d.fixed_at is None for d in self.changes)]
        if not done:
            return
        done = [e for e in done if e not in self.busy and self.sb.braze.profiles_by_email(e)]  # not erased since
        if not done:
            return
        email = self.rng.choice(done)
        with self.sb.braze.lock:
            for p in self.sb.braze.db.by_email(email):
                p.email_subscribe = "subscribed"  # an import overwrote the opt-out
        self.busy.add(email)  # no other change picks it until it is corrected
        self.changes.append(Change("braze_flip", email, at))

    def footer_unsubscribe(self, at: datetime) -> None:
        email = self.pick(lambda e: self.subscribed(e))
        if email is None:
            return
        with self.sb.braze.lock:
            for p in self.sb.braze.db.by_email(email):
                p.email_subscribe = "unsubscribed"
        self.sb.braze.add_unsubscribe(email, at.timestamp())
        self.busy.add(email)
        self.footer.append(email)

    def settle(self, now: datetime) -> None:
        """Mark each change Braze now shows corrected (after a fire's verify)."""
        for c in self.changes:
            if c.fixed_at is not None:
                continue
            profiles = self.sb.braze.profiles_by_email(c.email)
            fixed = (not profiles) if c.kind in ("ledger_erasure", "braze_resurrection") else \
                bool(profiles) and all(p.email_subscribe == "unsubscribed" for p in profiles)
            if fixed:
                c.fixed_at = now
                if c.kind == "ledger_erasure":
                    self.erased.append(c.email)
                self.busy.discard(c.email)


def _ids(email: str) -> list[dict[str, str]]:
    return [{"identitySpace": "email", "identityFormat": "raw", "identityValue": email}]


def _message(kind: str, request: dict) -> dict:
    version = "consent/v1" if kind == "ConsentRequest" else "dsr/v1"
    uid = f"{kind}-{request['identities'][0]['identityValue']}-{request.get('collectedAt') or request.get('submittedTimestamp')}"
    return {"apiVersion": version, "kind": kind, "metadata": {"uid": uid, "tenant": "acme"}, "request": request}


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def _run_info(path: Path) -> dict[str, str]:
    out = {}
    for family in text_string_to_metric_families(path.read_text()):
        for s in family.samples:
            if s.name == "reconcile_run_info":
                out[s.labels["reconcile_job"]] = s.labels["run_id"]
    return out


def _fire(job: Any, at: datetime, env: dict[str, str], clock: Any) -> tuple[str | None, str, int]:
    """One fire, as the daemon runs it: (run id, status, exit code)."""
    opener = lambda cfg, environ, progress=None: open_session(  # noqa: E731
        cfg, environ, clock=clock, sleep=lambda s: None, progress=progress)
    from reconcile.observability.events import RunIds

    runs = RunIds()  # the ids of the runs the fire started (the daemon names the one an error ended)
    try:
        outcome = run_scheduled(job, fire_time=at, environ=env, open_session=opener, progress=runs)
    except ReconcileError as exc:
        return runs.last, "failed", int(exc.exit_code)
    except Exception:  # noqa: BLE001 - the daemon logs it and goes on; so does the week
        return runs.last, "failed", 1
    return outcome.run_id, str(outcome.status), int(outcome.exit_code)


@pytest.mark.slow
@pytest.mark.timeout(3600)  # 182 fires; on an idle 2-core machine a fire of this population takes about a second
def test_a_simulated_week_of_unattended_operation(sandbox, store_url, record_property):
    sb = sandbox
    cal = Calendar(min(DAYS, PG_DAYS) if store_url.startswith("postgresql") else DAYS)
    (sb.tmp / "job.toml").write_text(week_job_toml(sb, store_url))
    for name in ("universe.csv", "deletions.csv"):
        (sb.tmp / name).write_text("identity\n")
    (sb.tmp / "schedules.toml").write_text(SCHEDULES)
    cfg = load_config(sb.tmp / "job.toml")
    start = sb.clock()
    seed_population(cfg, sb.braze, sb.ketch, subjects=SUBJECTS, drift=0.05, seed=11, now=start - timedelta(days=1))
    (sb.tmp / "universe.csv.healthy").write_text((sb.tmp / "universe.csv").read_text())
    jobs = {j.name: j for j in load_schedules(sb.tmp / "schedules.toml")}
    end = start + timedelta(days=cal.days)
    fires = sorted((t, name) for name, j in jobs.items() for t in j.next_runs(start, cal.hours + 1) if t < end)
    store = Store.open(cfg.state.url)
    ledger = start_in_thread(create_app(cfg, store, environ={"KETCH_WEBHOOK_TOKEN": TOKEN}, clock=sb.clock))
    rng = random.Random(5)
    outcomes: list[dict] = []
    try:
        with receiver() as (hook_url, got):
            env = {"BRAZE_API_KEY": KEY, "KETCH_WEBHOOK_TOKEN": TOKEN, "HOOK_URL": hook_url}
            week = Week(sb, cfg, env, ledger.url + cfg.ledger.path, rng)
            previous = start
            metrics = sb.tmp / "metrics" / "reconcile.prom"
            for at, name in fires:
                # what happened in the world since the last fire, at its own time
                for hour in range(int((at - previous).total_seconds() // 3600) + 1):
                    when = previous + timedelta(hours=hour, minutes=rng.randint(1, 50))
                    if not previous < when < at:
                        continue
                    sb.clock.set(when)
                    if rng.random() < 0.5:
                        week.ledger_optout(when)
                    if rng.random() < 0.12:
                        week.ledger_erasure(when)
                    if rng.random() < 0.06:
                        week.braze_resurrection(when)
                    if rng.random() < 0.06:
                        week.braze_flip(when)
                    if rng.random() < 0.04:
                        week.footer_unsubscribe(when)
                previous = at
                hours = int((at - start.replace(minute=0)).total_seconds() // 3600)
                faulty = cal.faults[0] <= hours < cal.faults[1]
                collapsed = hours == cal.collapse and name == "hourly"
                sb.braze.faults.error_rate = 1.0 if faulty else 0.0
                if collapsed:
                    (sb.tmp / "universe.csv").write_text("identity\n")
                before = metrics.read_text() if metrics.exists() else ""
                sb.clock.set(at)
                run_id, status, code = _fire(jobs[name], at, env, sb.clock)
                sb.braze.faults.error_rate = 0.0
                if collapsed:
                    (sb.tmp / "universe.csv").write_text((sb.tmp / "universe.csv.healthy").read_text())
                done = sb.clock()
                week.settle(done)
                outcomes.append({"at": at, "job": name, "run_id": run_id, "status": status, "exit": code,
                                 "faulty": faulty, "collapsed": collapsed})
                assert run_id, (at, name, status)
                assert metrics.read_text() != before and _run_info(metrics)[name] == run_id, (at, name)
                assert (sb.tmp / "reports" / f"{run_id}.json").exists(), (at, name, "no report")
                run = store.get_run(run_id)
                if collapsed:
                    assert status == "refused" and code in (10, 11), (at, status, run["error"])
                    continue
                if faulty:
                    continue
                assert status in ("applied", "in_sync"), (at, name, status, code, run and run["error"])
                assert not run["unverified_count"] and not run["actions_failed"], (at, name, run)
                if name == "nightly":  # Braze matches Ketch: a full plan right after finds nothing to correct
                    sb.clock.set(done)
                    with open_session(cfg, env, clock=sb.clock, sleep=lambda s: None) as rt:
                        check = run_job(rt, mode="full", dry_run=True, job="check")
                    assert check.actions_planned == 0, (at, check.counts)
        messages = [m["json"] for m in got]
    finally:
        ledger.stop()
        store.close()
    # the healthy workspace never refused; the collapsed list was refused and told once
    refused = [o for o in outcomes if o["status"] == "refused"]
    assert [o["collapsed"] for o in refused] == [True], refused
    told = [m for m in messages if "guard_refused" in m["events"]]
    assert len(told) == 1 and told[0]["run_id"] == refused[0]["run_id"] and told[0]["job"] == "hourly"
    failed = [o for o in outcomes if o["faulty"]]
    assert failed and all(o["status"] == "failed" for o in failed), failed
    assert {m["run_id"] for m in messages if "run_failed" in m["events"]} >= {o["run_id"] for o in failed}
    # the report history holds every fire
    with Store.open(cfg.state.url) as s:
        recorded = {r["run_id"] for r in s.runs_of(["nightly", "hourly", "sweep"], limit=10_000)}
    assert {o["run_id"] for o in outcomes} <= recorded
    # every injected change is corrected by the next full run at the latest
    nightly = [o["at"] for o in outcomes if o["job"] == "nightly" and o["status"] in ("applied", "in_sync")]
    late = []
    for c in week.changes:
        deadline = next((t for t in nightly if t > c.at), None)
        if deadline is None:
            continue  # no full run after it within the week
        if c.fixed_at is None or c.fixed_at > deadline + timedelta(hours=1):
            late.append(c)
    assert not late, [(c.kind, c.at.isoformat(), c.fixed_at) for c in late]
    for email in week.footer:  # footer unsubscribes in Braze are never undone
        assert all(p.email_subscribe == "unsubscribed" for p in sb.braze.profiles_by_email(email))
    # exposure per class
    table = {}
    unhealthy = {o["at"] for o in outcomes if o["faulty"] or o["collapsed"]}

    def waited(c: Change) -> bool:  # the first hourly fire after the change was faulty or refused
        nxt = next((o["at"] for o in outcomes if o["job"] == "hourly" and o["at"] > c.at), None)
        return nxt in unhealthy
    for kind in ("ledger_optout", "ledger_erasure", "braze_resurrection", "braze_flip"):
        fixed = [c for c in week.changes if c.kind == kind and c.fixed_at is not None]
        for scope, rows in (("all", fixed), ("healthy", [c for c in fixed if not waited(c)])):
            hours = [c.exposure_hours() for c in rows]
            if hours:
                table[f"{kind} ({scope})"] = {"n": len(hours), "p50_h": round(_percentile(hours, 0.5), 2),
                                              "p99_h": round(_percentile(hours, 0.99), 2),
                                              "max_h": round(max(hours), 2)}
    print("\nexposure (hours from the change to Braze corrected and verified; 'healthy': changes not "
          "waiting on a faulty or refused fire):")
    for kind, row in table.items():
        print(f"  {kind:<30} n={row['n']:<4} p50 {row['p50_h']:>6} p99 {row['p99_h']:>6} max {row['max_h']:>6}")
    print(f"fires {len(outcomes)}: " + ", ".join(f"{s} {sum(1 for o in outcomes if o['status'] == s)}"
                                              for s in sorted({o['status'] for o in outcomes})))
    record_property("exposure", json.dumps(table))
    assert table.get("ledger_optout (all)") and table.get("ledger_erasure (all)"), table
