"""Benchmark: full runs that take Ketch state from the ledger's mirror (`[ledger] mirror`).

Run: python benchmarks/ledger_mirror.py [--sizes 100000] [--fraction 0.001] [--silent 10] [--drift 0.03]

Per size, a fresh folder as benchmarks/full_run.py sets it up: one server process seeds
the simulators (email keys) and serves them on 127.0.0.1, and the job runs as
`python -m reconcile --config job.toml run --mode full` in its own process (limits lifted,
SQLite state, `[ledger] enabled` and `mirror = true`). The ledger is served from this
process over HTTP.

1. A full run with the mirror on: it fills the mirror (every subject read from Ketch once).
2. FRACTION of the subjects withdraw email consent in Ketch and Ketch's ConsentRequests
   reach the ledger; SILENT subjects of the day's audit slice withdraw it in Ketch with no
   webhook at all (the mirror is wrong for them).
3. A full run with the mirror on: Ketch is read only for the audit slice and open drift.
4. A full run with the mirror off (every subject read from Ketch): it must find Braze where
   run 3 left it, so it sends nothing and Braze's state is unchanged.

Printed per size: Ketch requests of each run (counted by the server) and the subjects each
read from Ketch, the share of subjects run 3 read, how many mirror entries it corrected
against the silent changes, Braze writes of run 4 and whether Braze's state is equal before
and after it, and each run's wall time, peak RSS and load average.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import shutil
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from full_run import Servers, job_data, run_job, run_summary, toml_dumps  # noqa: E402
from ledger_incremental import ENV, post_to_ledger  # noqa: E402

READS = ("/users/export/ids", "/subscription/status/get", "/subscription/user/status", "/email/unsubscribes",
         "/email/hard_bounces", "/users/export/segment")


def write_jobs(folder: Path, servers: Servers) -> tuple[Path, Path]:
    paths = []
    for name, mirror in (("job.toml", True), ("job-off.toml", False)):
        data = job_data(folder, "email", "lifted", servers.braze_url, servers.ketch_url, ledger=True)
        data["ledger"]["mirror"] = mirror
        (folder / name).write_text(toml_dumps(data))
        paths.append(folder / name)
    return paths[0], paths[1]


def braze_state(servers: Servers) -> list[Any]:
    """Braze's state as a reconciliation sees it (ids and timestamps left out)."""
    with urllib.request.urlopen(servers.braze_url + "/_admin/state") as answer:
        db = json.loads(answer.read())
    profiles = sorted((p["email"] or "", p["external_id"] or "", p["email_subscribe"], sorted(p["groups"].items()))
                      for p in db["profiles"])
    return [profiles, sorted(db["blocklist"]), sorted(db["unsubscribes"])]


def consenting(servers: Servers) -> set[str]:
    """The email identities whose Ketch consent allows email now (a change to denied matters)."""
    with urllib.request.urlopen(servers.ketch_url + "/_admin/state") as answer:
        db = json.loads(answer.read())
    out = set()
    for rec in db.get("records", []):
        purposes = (rec.get("consent") or {}).get("purposes") or {}
        if (purposes.get("email_marketing") or {}).get("allowed"):
            out |= {value for space, value in rec.get("identities", []) if space == "email"}
    return out


def ketch_reads(counts: dict[str, int]) -> tuple[int, int]:
    """(Ketch requests, consent reads: one per subject read)."""
    return sum(counts.values()), sum(v for k, v in counts.items() if k.startswith("POST consent/") and "/get" in k)


def braze_writes(counts: dict[str, int]) -> int:
    return sum(v for k, v in counts.items() if k.split(" ")[1] not in READS and not k.split(" ")[1].startswith("/_"))


def people(folder: Path) -> list[str]:
    with open(folder / "universe.csv", newline="") as f:
        return [row["identity"] for row in csv.DictReader(f) if "@" in row["identity"]
                and row["identity"] == row["identity"].strip().lower()]


def scenario(root: Path, n: int, fraction: float, silent: int, drift: float) -> dict[str, Any]:
    from reconcile.ledger.mirror import audited, subject_key

    folder = root / f"n{n}"
    folder.mkdir(parents=True)
    servers = Servers(folder, n, "email", "lifted", drift=drift)
    runs: dict[str, Any] = {}
    try:
        job, off = write_jobs(folder, servers)
        for name in ("fill", "mirror"):
            if name == "mirror":  # the changes between the runs
                everyone = people(folder)
                changed = everyone[: max(1, round(n * fraction))]
                today = datetime.now(timezone.utc).date()
                allowed = consenting(servers)
                quiet = list(itertools.islice((p for p in everyone[len(changed):] if p in allowed
                                               and audited(subject_key(p, "email") or p, today, 1 / 30)), silent))
                at = int(time.time())
                servers.set_consent("email", changed + quiet, {"email_marketing": False}, at)
                answers = post_to_ledger(job, changed, at)
            result = run_job(job, "full", ENV)
            runs[name] = {**result, "run": run_summary(folder), "ketch": servers.counts("ketch", reset=True),
                          "braze": servers.counts("braze", reset=True)}
        before = braze_state(servers)
        result = run_job(off, "full", ENV)
        runs["off"] = {**result, "run": run_summary(folder), "ketch": servers.counts("ketch", reset=True),
                       "braze": servers.counts("braze", reset=True)}
        after = braze_state(servers)
    finally:
        servers.stop()
    row: dict[str, Any] = {"subjects": n, "drift": drift, "changed": len(changed), "silent": len(quiet),
                           "ledger_answers": answers, "braze_equal": before == after}
    for name, r in runs.items():
        requests, subjects = ketch_reads(r["ketch"])
        row[name] = {"exit": r["exit"], "status": r["run"]["status"], "universe": r["run"]["universe"],
                     "ketch_requests": requests, "ketch_subjects": subjects, "braze_writes": braze_writes(r["braze"]),
                     "mirror": r["run"]["summary"].get("ketch_mirror"), "wall": r["wall"], "rss_mib": r["rss_mib"],
                     "load1": r["load1"]}
    m, full = row["mirror"], row["off"]
    share = m["ketch_subjects"] / max(1, m["universe"])
    print(f"n={n} drift={drift:.0%} changed={len(changed)} (webhooks {answers}) silent={len(quiet)} | "
          f"fill: ketch {row['fill']['ketch_requests']} req, {row['fill']['ketch_subjects']} subjects, "
          f"wall {row['fill']['wall']:.1f}s | mirror: ketch {m['ketch_requests']} req, {m['ketch_subjects']} subjects "
          f"({share:.2%} of {m['universe']}), mirror {m['mirror']}, braze writes {m['braze_writes']}, "
          f"wall {m['wall']:.1f}s rss {m['rss_mib']:.0f}MiB | off: ketch {full['ketch_requests']} req, "
          f"{full['ketch_subjects']} subjects, braze writes {full['braze_writes']}, wall {full['wall']:.1f}s | "
          f"mirror ÷ off Ketch requests {m['ketch_requests'] / max(1, full['ketch_requests']):.2%} | "
          f"Braze state equal after the off run: {row['braze_equal']} | load "
          f"{row['fill']['load1']:.2f}/{m['load1']:.2f}/{full['load1']:.2f}", flush=True)
    return row


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", type=int, nargs="*", default=[100000])
    p.add_argument("--fraction", type=float, default=0.001)
    p.add_argument("--silent", type=int, default=10)
    p.add_argument("--drift", type=float, default=0.03)
    p.add_argument("--out", type=Path)
    p.add_argument("--root", type=Path)
    args = p.parse_args(argv)
    root = args.root or Path(tempfile.mkdtemp(prefix="ledger-mirror-"))
    print(f"python {sys.version.split()[0]} nproc {os.cpu_count()} {time.strftime('%Y-%m-%d %H:%M:%S')}", flush=True)
    rows = []
    try:
        for n in args.sizes:
            rows.append(scenario(root, n, args.fraction, args.silent, args.drift))
            if args.out:
                args.out.write_text(json.dumps(rows, indent=1, default=str))
    finally:
        if args.root is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])
