"""The report index after a run, with a long history: time and memory of rebuilding
`index.html` over N drift items and R runs in SQLite.

    python benchmarks/report_index.py --items 1000000 --runs 1000

Items and runs are synthetic (bulk-inserted), spread over a year; a third closed by
verification, a third resolved (in a later run), the rest open. As in real runs, the items
a run records share its timestamps. Prints the wall time of `write_index` and
the Python heap peak during it (tracemalloc).
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
import tracemalloc
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import insert

from reconcile.engine.classes import DRIFT_CLASSES
from reconcile.reports.index import write_index
from reconcile.store.schema import drift_items, runs
from reconcile.store.store import Store

START = datetime(2026, 1, 1, tzinfo=timezone.utc)


def seed(store: Store, items: int, n_runs: int) -> None:
    rnd = random.Random(7)
    step = timedelta(days=365) / n_runs
    ids = [f"20260101T000000-{i:06x}" for i in range(n_runs)]
    with store._write("bench runs") as conn:
        conn.execute(insert(runs), [{"run_id": rid, "mode": "full", "config_hash": "c", "status": "applied",
                                     "started_at": START + step * i, "finished_at": START + step * i
                                     + timedelta(minutes=5), "drift_counts": {"missed_optout": 3}, "exit_code": 0}
                                    for i, rid in enumerate(ids)])
    batch = []
    for n in range(items):
        r = rnd.randrange(n_runs)
        first = START + step * r + timedelta(minutes=3)
        fate = n % 3
        closed = START + step * min(n_runs - 1, r + rnd.randrange(0, 5)) + timedelta(minutes=4)
        batch.append({"subject_key": f"user{n}@example.com", "drift_class": DRIFT_CLASSES[n % len(DRIFT_CLASSES)],
                      "field": "email_subscribe", "status": ("verified", "resolved", "open")[fate],
                      "first_seen_run": ids[r], "first_seen_at": first, "last_seen_run": ids[r],
                      "last_seen_at": first, "verified_at": closed if fate == 0 else None,
                      "resolved_at": closed if fate == 1 else None})
        if len(batch) == 50_000:
            with store._write("bench items") as conn:
                conn.execute(insert(drift_items), batch)
            batch = []
    if batch:
        with store._write("bench items") as conn:
            conn.execute(insert(drift_items), batch)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'state.db'}"
        with Store.open(url) as store:
            t = time.perf_counter()
            seed(store, args.items, args.runs)
            print(f"seeded {args.items:,} items, {args.runs:,} runs in {time.perf_counter() - t:.1f} s")
            tracemalloc.start()
            t = time.perf_counter()
            path = write_index(store, Path(tmp) / "reports", datetime.now(timezone.utc))
            wall = time.perf_counter() - t
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
        print(f"write_index: {wall:.2f} s wall, Python heap peak {peak / 2**20:.1f} MiB, "
              f"index.html {path.stat().st_size / 1024:.0f} KiB; load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
