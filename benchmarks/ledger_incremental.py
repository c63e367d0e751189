"""Benchmark: Ketch requests of an incremental run fed by the webhook ledger, against a full run.

Run: python benchmarks/ledger_incremental.py [N] [CHANGED_FRACTION]   (default 10000 0.001)
Per scenario, a fresh folder: the in-process sandbox seeded with N subjects, SQLite state,
the ledger served on loopback. A full run first; then CHANGED_FRACTION of the subjects
withdraw email consent in Ketch, and Ketch's ConsentRequests reach the ledger over HTTP;
then an incremental run. Prints Ketch requests of both runs, their ratio, the incremental
universe by source, and wall times.

Scenarios: seeded in sync (drift 0), and with 3 % seeded drift (the full run corrects it,
so its unsubscribes are on Braze's list window when the incremental run reads it).
"""

from __future__ import annotations

import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx

from reconcile.config import Config, parse_config
from reconcile.ledger.app import create_app
from reconcile.ledger.serve import start_in_thread
from reconcile.pipeline import run_job
from reconcile.runtime import SandboxPair, load_sandbox, open_runtime, utc_now
from reconcile.sandbox.braze import BrazeSim
from reconcile.sandbox.ketch import KetchSim
from reconcile.sandbox.population import seed_population
from reconcile.store.store import Store

JOB = Path(__file__).resolve().parent.parent / "jobs" / "sandbox.toml"
TOKEN = "benchmark-token"
ENV = {"KETCH_WEBHOOK_TOKEN": TOKEN}


def config(folder: Path) -> Config:
    import tomllib

    data = tomllib.loads(JOB.read_text())
    data["sandbox"]["state_file"] = str(folder / "sandbox.json")
    data["universe"].update(csv=str(folder / "universe.csv"), deletions_csv=str(folder / "deletions.csv"))
    data["state"]["url"] = f"sqlite:///{folder / 'state.db'}"
    data["report"]["dir"] = str(folder / "reports")
    data["guards"].update(max_unsubscribe_fraction=1.0, max_deletions=100000, max_deletion_fraction=1.0)
    data["ledger"] = {"enabled": True, "bearer_token_env": "KETCH_WEBHOOK_TOKEN"}
    return parse_config(data, folder)


def consent_request(email: str, at: int) -> dict:
    return {"apiVersion": "consent/v1", "kind": "ConsentRequest", "metadata": {"uid": str(uuid.uuid4()), "tenant": "acme"},
            "request": {"property": "website", "environment": "production", "regulation": "gdpr",
                        "jurisdiction": "default",
                        "identities": [{"identitySpace": "email", "identityFormat": "raw", "identityValue": email}],
                        "purposes": {"email_marketing": "denied"}, "legalBasis": {"email_marketing": "consent_optin"},
                        "collectedAt": at}}


def ketch_requests(rt) -> int:
    return sum(1 for c in rt.sandbox.ketch.calls if c["path"].endswith("/get"))


def scenario(n: int, fraction: float, drift: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cfg = config(folder)
        braze, ketch = BrazeSim(), KetchSim(organization=cfg.ketch.organization)
        seed_population(cfg, braze, ketch, subjects=n, drift=drift, seed=1, now=utc_now())
        (folder / "deletions.csv").write_text("identity,requested_at\n")
        SandboxPair(braze, ketch, cfg.sandbox.state_file).save()
        t0 = time.perf_counter()
        with open_runtime(cfg, ENV) as rt:
            full = run_job(rt, mode="full")
            full_requests = ketch_requests(rt)
        t1 = time.perf_counter()
        emails = [line.split(",")[0] for line in (folder / "universe.csv").read_text().splitlines()[1:]]
        changed = [e for e in emails if "@" in e and e == e.strip().lower()][: max(1, round(n * fraction))]
        pair = load_sandbox(cfg)
        at = int(time.time())
        for email in changed:
            pair.ketch.set_consent("email", email, {"email_marketing": False}, at)
        pair.save()
        with Store.open(cfg.state.url) as store, start_in_thread(create_app(cfg, store, environ=ENV)) as server:
            with httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}) as client:
                answers = Counter(client.post(server.url + cfg.ledger.path, json=consent_request(e, at)).status_code
                                  for e in changed)
        t2 = time.perf_counter()
        with open_runtime(cfg, ENV) as rt:
            inc = run_job(rt, mode="incremental")
            inc_requests = ketch_requests(rt)
            run = rt.store.get_run(inc.run_id)
        t3 = time.perf_counter()
        print(f"n={n} changed={len(changed)} ({fraction:.1%}) seeded drift={drift:.0%}: ledger answers {dict(answers)}; "
              f"full run {full.status} ketch requests={full_requests} ({t1 - t0:.1f}s); incremental run {inc.status} "
              f"universe={run['universe_count']} ketch requests={inc_requests} ({t3 - t2:.1f}s) "
              f"= {inc_requests / full_requests:.2%} of the full run's; missed_optout found={inc.counts['missed_optout']}",
              flush=True)


def main(argv: list[str]) -> None:
    n = int(argv[0]) if argv else 10000
    fraction = float(argv[1]) if len(argv) > 1 else 0.001
    for drift in (0.0, 0.03):
        scenario(n, fraction, drift)


if __name__ == "__main__":
    main(sys.argv[1:])
