"""Benchmark: an incremental run fed by the webhook ledger, against the full run before it.

Run: python benchmarks/ledger_incremental.py [--sizes 10000 100000] [--fraction 0.001]
                                             [--drift 0 0.03] [--in-process] [--profile]

Per size and seeded drift, a fresh folder, as benchmarks/full_run.py sets it up: one
server process seeds the simulators (email keys) and serves them on 127.0.0.1, and the
job runs as `python -m reconcile --config job.toml run` in its own process (limits
lifted, SQLite state). A full run first; then FRACTION of the subjects withdraw email
consent in Ketch and Ketch's ConsentRequests reach the ledger (served from this
process over HTTP, each answered 204); then `reconcile run --mode incremental`.

Printed per row: Braze and Ketch requests of both runs (counted by the server, per path,
and by the job in `runs.summary.api_usage`), the ratios incremental ÷ full, both wall
times and their ratio, the incremental universe, and the job's peak RSS.

`--profile`: a second incremental run right after, under cProfile, split into where the
fixed cost goes (interpreter and imports, config, state store open and migrations, the
Braze list reads of the window, the Ketch reads, diff and plan, apply and verify, the
report, the run's bookkeeping). `--in-process`: the old set-up as well (the simulators in
the job's process through httpx's mock transport, loaded from and saved to JSON at each
run's start and end), to show what that adds to a run.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import pstats
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx  # noqa: E402

from full_run import Servers, run_job, run_summary, write_job  # noqa: E402

TOKEN = "benchmark-token"
ENV = {"KETCH_WEBHOOK_TOKEN": TOKEN}


def consent_request(email: str, at: int) -> dict:
    return {"apiVersion": "consent/v1", "kind": "ConsentRequest", "metadata": {"uid": str(uuid.uuid4()), "tenant": "acme"},
            "request": {"property": "website", "environment": "production", "regulation": "gdpr",
                        "jurisdiction": "default",
                        "identities": [{"identitySpace": "email", "identityFormat": "raw", "identityValue": email}],
                        "purposes": {"email_marketing": "denied"}, "legalBasis": {"email_marketing": "consent_optin"},
                        "collectedAt": at}}


def changed_subjects(folder: Path, n: int, fraction: float) -> list[str]:
    with open(folder / "universe.csv", newline="") as f:
        emails = [row["identity"] for row in csv.DictReader(f)]
    return [e for e in emails if "@" in e and e == e.strip().lower()][: max(1, round(n * fraction))]


def post_to_ledger(job: Path, changed: list[str], at: int) -> dict[int, int]:
    from reconcile.config import load_config
    from reconcile.ledger.app import create_app
    from reconcile.ledger.serve import start_in_thread
    from reconcile.store.store import Store

    cfg = load_config(job)
    with Store.open(cfg.state.url) as store, start_in_thread(create_app(cfg, store, environ=ENV)) as server:
        with httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}) as client:
            return dict(Counter(client.post(server.url + cfg.ledger.path, json=consent_request(e, at)).status_code
                                for e in changed))


def job_counts(summary: dict[str, Any]) -> tuple[int, int]:
    usage = summary.get("api_usage") or {}
    braze = sum(int(c.get("requests", 0)) for c in (usage.get("braze", {}).get("classes") or {}).values())
    return braze, int((usage.get("ketch") or {}).get("requests", 0))


def by_path(counts: dict[str, int]) -> dict[str, int]:
    out: Counter = Counter()
    for key, v in counts.items():
        out[key.split(" ")[1]] += v
    return dict(out)


# -- the profile of an incremental run -------------------------------------------------------
PARTS = [  # (label, "folder/file.py:function"); cumulative seconds under cProfile (they nest)
    ("the whole command (cli invoke)", "cli/main.py:invoke"),
    ("imports (importlib _find_and_load, any depth)", "<frozen importlib._bootstrap>:_find_and_load"),
    ("open the runtime (state store, clients)", "reconcile/pipeline/session.py:open_session"),
    ("  state store migrations", "store/store.py:_migrate"),
    ("run lock", "reconcile/pipeline/lock.py:run_lock"),
    ("pipeline.run_job", "reconcile/pipeline/job.py:run_job"),
    ("  plan (observe + diff + plan)", "reconcile/pipeline/run.py:make_plan"),
    ("    universe: read_universe", "reconcile/pipeline/read.py:read_universe"),
    ("      build_universe", "engine/universe.py:build_universe"),
    ("      load_listed (universe file)", "engine/universe.py:load_listed"),
    ("      identity.normalize", "engine/identity.py:normalize"),
    ("    Braze + Ketch state: read_state", "reconcile/pipeline/read.py:read_state"),
    ("      Braze lists of the window", "engine/extract.py:braze_lists"),
    ("      Braze profiles and groups", "engine/extract.py:extract_braze"),
    ("      Ketch reads", "engine/extract.py:extract_ketch"),
    ("    diff", "engine/diff.py:diff"),
    ("  apply", "reconcile/pipeline/run.py:apply_planned"),
    ("  verify", "reconcile/pipeline/run.py:verify"),
    ("  report (usage + write_report)", "reconcile/pipeline/run.py:_report"),
    ("    reports.build.write_report", "reconcile/reports/build.py:write_report"),
    ("      holiday calendar (reports/calendar._country_days)", "reports/calendar.py:_country_days"),
    ("      history (reports/history.collect)", "reports/history.py:collect"),
    ("post-run (observability.after_run)", "observability/postrun.py:after_run"),
]


def profile_breakdown(path: Path) -> list[tuple[str, float]]:
    """Cumulative seconds of the run's parts, from the cProfile file of one run."""
    st = pstats.Stats(str(path))
    cumulative: dict[str, float] = {}
    for (file, _line, func), (_cc, _nc, _tt, ct, _callers) in st.stats.items():  # type: ignore[attr-defined]
        key = f"{file}:{func}"
        cumulative[key] = max(cumulative.get(key, 0.0), ct)
    return [(label, max((ct for key, ct in cumulative.items() if key.endswith(pattern)), default=0.0))
            for label, pattern in PARTS]


def imports_seconds() -> float:
    """Wall time of `python -c "import reconcile.cli.main"` (best of three)."""
    import subprocess

    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import reconcile.cli.main, reconcile.pipeline"], check=True)
        best = min(best, time.perf_counter() - t)
    return best


# -- the scenarios ---------------------------------------------------------------------------
def scenario(root: Path, n: int, fraction: float, drift: float, profile: bool) -> dict[str, Any]:
    folder = root / f"n{n}-drift{drift}"
    folder.mkdir(parents=True)
    servers = Servers(folder, n, "email", "lifted", drift=drift)
    try:
        job = write_job(folder, servers, "email", "lifted", ledger=True)
        full = run_job(job, "full", ENV)
        full_run = run_summary(folder)
        full_braze, full_ketch = servers.counts("braze", reset=True), servers.counts("ketch", reset=True)
        changed = changed_subjects(folder, n, fraction)
        at = int(time.time())
        servers.set_consent("email", changed, {"email_marketing": False}, at)
        answers = post_to_ledger(job, changed, at)
        inc = run_job(job, "incremental", ENV)
        inc_run = run_summary(folder)
        inc_braze, inc_ketch = servers.counts("braze", reset=True), servers.counts("ketch", reset=True)
        prof = None
        if profile:
            prof_path = folder / "incremental.prof"
            again = run_job(job, "incremental", ENV, profile=prof_path)
            again_run = run_summary(folder)
            prof = {"wall": again["wall"], "universe": again_run["universe"],
                    "braze": sum(servers.counts("braze", reset=True).values()),
                    "ketch": sum(servers.counts("ketch", reset=True).values()),
                    "parts": profile_breakdown(prof_path), "path": str(prof_path)}
    finally:
        servers.stop()
    row = {"subjects": n, "drift": drift, "changed": len(changed), "ledger_answers": answers,
           "full": {"exit": full["exit"], "status": full_run["status"], "wall": full["wall"], "cpu": full["cpu"],
                    "rss_mib": full["rss_mib"], "load1": full["load1"], "universe": full_run["universe"],
                    "braze": sum(full_braze.values()), "ketch": sum(full_ketch.values()),
                    "job_counts": job_counts(full_run["summary"]), "braze_by_path": by_path(full_braze),
                    "stages": full["stages"]},
           "incremental": {"exit": inc["exit"], "status": inc_run["status"], "wall": inc["wall"], "cpu": inc["cpu"],
                           "rss_mib": inc["rss_mib"], "load1": inc["load1"], "universe": inc_run["universe"],
                           "braze": sum(inc_braze.values()), "ketch": sum(inc_ketch.values()),
                           "job_counts": job_counts(inc_run["summary"]), "braze_by_path": by_path(inc_braze),
                           "counts": (inc["answer"] or {}).get("counts"), "stages": inc["stages"]},
           "profile": prof}
    f, i = row["full"], row["incremental"]
    print(f"n={n} changed={len(changed)} ({fraction:.1%}) drift={drift:.0%} ledger={answers} | "
          f"full {f['status']} universe={f['universe']} braze={f['braze']} ketch={f['ketch']} wall={f['wall']:.1f}s "
          f"rss={f['rss_mib']:.0f}MiB | incremental {i['status']} universe={i['universe']} braze={i['braze']} "
          f"({i['braze'] / max(1, f['braze']):.2%}) ketch={i['ketch']} ({i['ketch'] / max(1, f['ketch']):.2%}) "
          f"wall={i['wall']:.2f}s ({i['wall'] / f['wall']:.1%}) rss={i['rss_mib']:.0f}MiB | "
          f"incremental braze by path {i['braze_by_path']} | load {f['load1']:.2f}/{i['load1']:.2f}", flush=True)
    for name, run in (("full", f), ("incremental", i)):
        print(f"  {name} stages (s): " + ", ".join(f"{k} {v:.2f}" for k, v in run["stages"].items()))
    if prof:
        print(f"  profiled 2nd incremental: wall={prof['wall']:.2f}s universe={prof['universe']} "
              f"braze={prof['braze']} ketch={prof['ketch']}")
        for name, ct in prof["parts"]:
            print(f"    {ct:7.3f}s  {name}")
    return row


def scenario_in_process(n: int, fraction: float, drift: float) -> dict[str, Any]:
    """The old set-up: the simulators inside the job's process, loaded from JSON at each open."""
    from reconcile.config import parse_config
    from reconcile.pipeline.job import run_job as pipeline_run
    from reconcile.pipeline.session import SandboxPair, load_sandbox, open_session, utc_now
    from reconcile.sandbox.braze import BrazeSim
    from reconcile.sandbox.ketch import KetchSim
    from reconcile.sandbox.population import seed_population
    import tomllib

    from full_run import JOB

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        data = tomllib.loads(JOB.read_text())
        data["sandbox"]["state_file"] = str(folder / "sandbox.json")
        data["universe"].update(csv=str(folder / "universe.csv"), deletions_csv=str(folder / "deletions.csv"))
        data["state"]["url"] = f"sqlite:///{folder / 'state.db'}"
        data["report"]["dir"] = str(folder / "reports")
        data["guards"].update(max_unsubscribe_fraction=1.0, max_deletions=10**7, max_deletion_fraction=1.0)
        data["ledger"] = {"enabled": True, "bearer_token_env": "KETCH_WEBHOOK_TOKEN"}
        for name in ("universe.csv", "deletions.csv"):
            (folder / name).touch()
        cfg = parse_config(data, folder)
        braze, ketch = BrazeSim(), KetchSim(organization=cfg.ketch.organization)
        seed_population(cfg, braze, ketch, subjects=n, drift=drift, seed=1, now=utc_now())
        SandboxPair(braze, ketch, cfg.sandbox.state_file).save()
        del braze, ketch
        t0 = time.perf_counter()
        with open_session(cfg, ENV) as rt:
            t_open = time.perf_counter() - t0
            pipeline_run(rt, mode="full")
            full_b, full_k = len(rt.sandbox.braze.calls), len(rt.sandbox.ketch.calls)
        t1 = time.perf_counter()
        changed = changed_subjects(folder, n, fraction)
        pair = load_sandbox(cfg)
        at = int(time.time())
        for email in changed:
            pair.ketch.set_consent("email", email, {"email_marketing": False}, at)
        pair.save()
        job = folder / "job.json"
        from reconcile.ledger.app import create_app
        from reconcile.ledger.serve import start_in_thread
        from reconcile.store.store import Store

        with Store.open(cfg.state.url) as store, start_in_thread(create_app(cfg, store, environ=ENV)) as server:
            with httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}) as client:
                for e in changed:
                    client.post(server.url + cfg.ledger.path, json=consent_request(e, at))
        del job
        t2 = time.perf_counter()
        with open_session(cfg, ENV) as rt:
            t_open_inc = time.perf_counter() - t2
            pipeline_run(rt, mode="incremental")
            inc_b, inc_k = len(rt.sandbox.braze.calls), len(rt.sandbox.ketch.calls)
            t_work = time.perf_counter()
        t3 = time.perf_counter()
    row = {"subjects": n, "drift": drift, "full_wall": t1 - t0, "inc_wall": t3 - t2, "inc_open": t_open_inc,
           "inc_close": t3 - t_work, "full_open": t_open, "full_braze": full_b, "full_ketch": full_k,
           "inc_braze": inc_b, "inc_ketch": inc_k}
    print(f"in-process n={n} drift={drift:.0%}: full wall={row['full_wall']:.1f}s (sandbox load {t_open:.2f}s) "
          f"braze={full_b} ketch={full_k} | incremental wall={row['inc_wall']:.2f}s ({row['inc_wall'] / row['full_wall']:.1%}; "
          f"sandbox load {t_open_inc:.2f}s, save {row['inc_close']:.2f}s) braze={inc_b} ({inc_b / full_b:.2%}) "
          f"ketch={inc_k} ({inc_k / full_k:.2%})", flush=True)
    return row


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", type=int, nargs="*", default=[10000, 100000])
    p.add_argument("--fraction", type=float, default=0.001)
    p.add_argument("--drift", type=float, nargs="*", default=[0.0, 0.03])
    p.add_argument("--profile", action="store_true")
    p.add_argument("--in-process", action="store_true")
    p.add_argument("--out", type=Path)
    p.add_argument("--root", type=Path)
    args = p.parse_args(argv)
    root = args.root or Path(tempfile.mkdtemp(prefix="ledger-inc-"))
    print(f"python {sys.version.split()[0]} nproc {os.cpu_count()} {time.strftime('%Y-%m-%d %H:%M:%S')} "
          f"imports (reconcile.cli.main + pipeline) {imports_seconds():.2f}s", flush=True)
    rows: list[dict[str, Any]] = []
    try:
        for n in args.sizes:
            for drift in args.drift:
                rows.append(scenario(root, n, args.fraction, drift, args.profile))
                if args.in_process:
                    rows.append({"in_process": scenario_in_process(n, args.fraction, drift)})
                if args.out:
                    args.out.write_text(json.dumps(rows, indent=1, default=str))
    finally:
        if args.root is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])
