"""Benchmark: a full reconciliation (plan + apply + verify) against the in-process sandbox.

Run: python benchmarks/pipeline_sandbox.py [N ...]   (default 5000 20000)
Each size gets a fresh temporary folder: seeded simulators (3 % drift), SQLite state.
Prints wall time per phase, requests sent to each API, and peak RSS.
"""

from __future__ import annotations

import os
import resource
import sys
import tempfile
import time
from pathlib import Path

from reconcile.config import Config, parse_config
from reconcile.pipeline.run import apply_planned, make_plan, recorder
from reconcile.pipeline.session import SandboxPair, open_session, utc_now
from reconcile.sandbox.braze import BrazeSim
from reconcile.sandbox.ketch import KetchSim
from reconcile.sandbox.population import seed_population

JOB = Path(__file__).resolve().parent.parent / "jobs" / "sandbox.toml"


def config(folder: Path) -> Config:
    import tomllib

    data = tomllib.loads(JOB.read_text())
    data["sandbox"]["state_file"] = str(folder / "sandbox.json")
    data["universe"].update(csv=str(folder / "universe.csv"), deletions_csv=str(folder / "deletions.csv"))
    data["state"]["url"] = f"sqlite:///{folder / 'state.db'}"
    data["report"]["dir"] = str(folder / "reports")
    data["guards"].update(max_unsubscribe_fraction=1.0, max_deletions=100000, max_deletion_fraction=1.0)
    return parse_config(data, folder)


def run(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cfg = config(folder)
        braze, ketch = BrazeSim(), KetchSim(organization=cfg.ketch.organization)
        t0 = time.perf_counter()
        seed_population(cfg, braze, ketch, subjects=n, drift=0.03, seed=1, now=utc_now())
        SandboxPair(braze, ketch, cfg.sandbox.state_file).save()
        t1 = time.perf_counter()
        with open_session(cfg, {}) as rt:
            rec = recorder(rt, "full")
            rec.start()
            result = make_plan(rt, rec, "full")
            t2 = time.perf_counter()
            summary = apply_planned(rt, rec, result)
            t3 = time.perf_counter()
            b_calls, k_calls = len(rt.sandbox.braze.calls), len(rt.sandbox.ketch.calls)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"n={n:>7} seed={t1 - t0:6.1f}s plan={t2 - t1:6.1f}s apply+verify={t3 - t2:5.1f}s "
              f"drift items={sum(summary.counts.values()):>6} actions={summary.actions_planned:>4} "
              f"verified={summary.verified:>5} braze requests={b_calls:>6} ketch requests={k_calls:>6} "
              f"peak RSS={rss:6.0f} MiB load={os.getloadavg()[0]:.2f}", flush=True)


if __name__ == "__main__":
    for size in [int(a) for a in sys.argv[1:]] or [5000, 20000]:
        run(size)
