"""Benchmark: Braze reads bound by one rate class, against the in-process sandbox.

Run: python benchmarks/rate_bound.py [--case NAME ...] [--out FILE.json]

Each case sets one class low in both the simulator and the client (the simulator
answers 429 past its limit, in fixed windows aligned to the clock, as Braze does), starts
at a window boundary and makes one read that needs several windows' worth of requests:

  shared        subscription/status/get by email, shared class 300 / 2 s, budget_share 1
  shared_half   the same with budget_share 0.5: 150 / 2 s allowed to the job
  export_fast   users/export/ids one address a request, export_fast_mode "auto" on the
                default limit, users_export_ids_fast scaled to 20 / 1 s
  export_slow   users/export/ids one address a request, export_fast_mode false, a raised
                users_export_ids limit scaled to 50 / 5 s

Measured from the simulator's call log (its clock is the wall clock): requests per full
window ÷ the requests allowed per window (every window but the last, which is partial by
design), answers of 429 (requests sent while a budget was spent), and wall time ÷ the
rate-limit bound, where the bound is (windows needed - 1) × window + the last window's
requests at the unthrottled pace measured in the same run with the limits lifted.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from reconcile.clients.braze import BrazeClient
from reconcile.config import DEFAULT_RATE_LIMITS, BrazeConfig, RateLimit
from reconcile.sandbox.braze import BrazeSim

KEY = "sandbox-rest-key"
FIELDS = ("external_id", "braze_id", "email", "email_subscribe")
GOAL_USE, GOAL_WALL = 0.9, 1.1


@dataclass(frozen=True)
class Case:
    name: str
    klass: str
    limit: int
    window: float
    requests: int
    share: float = 1.0
    fast_mode: bool | str = "auto"

    @property
    def allowed(self) -> int:
        return max(1, math.floor(self.limit * self.share + 1e-9)) if self.klass == "shared" else self.limit


CASES = {
    "shared": Case("shared", "shared", 300, 2.0, 3000),
    "shared_half": Case("shared_half", "shared", 300, 2.0, 1500, share=0.5),
    "export_fast": Case("export_fast", "users_export_ids_fast", 20, 1.0, 200),
    "export_slow": Case("export_slow", "users_export_ids", 50, 5.0, 500, fast_mode=False),
}


def workspace(case: Case, limited: bool) -> BrazeSim:
    lifted = {name: (10**9, 1.0) for name in DEFAULT_RATE_LIMITS}
    if limited:
        lifted[case.klass] = (case.limit, case.window)
        if case.klass == "users_export_ids_fast":
            lifted["users_export_ids"] = (250, 60.0)  # the default tier, where the 40/s option applies
    sim = BrazeSim(api_key=KEY, rate_limits=lifted)
    sim.add_group("g")
    subjects = case.requests * (50 if case.klass == "shared" else 1)
    for n in range(subjects):
        sim.add_profile(external_id=f"u{n}", email=f"u{n}@x.com", groups={"g": "subscribed"})
    return sim


def client(case: Case, sim: BrazeSim, limited: bool) -> BrazeClient:
    limits = {name: RateLimit(10**9, 1) for name in DEFAULT_RATE_LIMITS}
    if limited:
        limits[case.klass] = RateLimit(case.limit, case.window)
        if case.klass == "users_export_ids_fast":
            limits["users_export_ids"] = RateLimit(250, 60)
    cfg = BrazeConfig(rest_endpoint="http://braze.test", rate_limits=limits, budget_share=case.share,
                      export_fast_mode=case.fast_mode, read_concurrency=4)
    return BrazeClient(cfg, KEY, transport=sim.transport())


def read(case: Case, c: BrazeClient, count: int) -> Callable[[], Any]:
    if case.klass == "shared":
        emails = [f"u{n}@x.com" for n in range(count * 50)]
        return lambda: c.subscription_status_get("g", emails=emails)
    emails = [f"u{n}@x.com" for n in range(count)]
    return lambda: c.export_emails(emails, FIELDS)


def unthrottled_seconds_per_request(case: Case) -> float:
    sample = min(case.requests, 300)
    sim = workspace(Case(case.name, case.klass, case.limit, case.window, sample, case.share, case.fast_mode), False)
    with client(case, sim, False) as c:
        work = read(case, c, sample)
        started = time.perf_counter()
        work()
        return (time.perf_counter() - started) / len(sim.calls)


def run(case: Case) -> dict[str, Any]:
    per_request = unthrottled_seconds_per_request(case)
    sim = workspace(case, True)
    with client(case, sim, True) as c:
        work = read(case, c, case.requests)
        time.sleep(case.window - time.time() % case.window)  # start at a window boundary
        started = time.time()
        work()
        wall = time.time() - started
        usage = c.usage()
    windows: dict[int, int] = {}
    for call in sim.calls:
        slot = int((call["at"] - started) // case.window)
        windows[slot] = windows.get(slot, 0) + 1
    needed = math.ceil(len(sim.calls) / case.allowed)
    last = len(sim.calls) - (needed - 1) * case.allowed
    bound = (needed - 1) * case.window + last * per_request
    full = [windows.get(i, 0) / case.allowed for i in range(needed - 1)]
    limited_429 = sum(call["status"] == 429 for call in sim.calls)
    return {"case": case.name, "class": case.klass, "allowed_per_window": case.allowed, "window_seconds": case.window,
            "requests": len(sim.calls), "windows": needed, "use_min": round(min(full), 3) if full else None,
            "use_mean": round(sum(full) / len(full), 3) if full else None, "answered_429": limited_429,
            "wall_seconds": round(wall, 2), "bound_seconds": round(bound, 2), "wall_over_bound": round(wall / bound, 3),
            "unthrottled_ms_per_request": round(per_request * 1000, 3),
            "export_class": usage["export_class"], "usage": usage["classes"].get(case.klass)}


def row(r: dict[str, Any]) -> str:
    met = (r["use_min"] or 0) >= GOAL_USE and r["wall_over_bound"] <= GOAL_WALL and r["answered_429"] == 0
    return (f"| {r['case']} | {r['class']} | {r['allowed_per_window']} / {r['window_seconds']:g} s | {r['requests']:,} | "
            f"{r['use_min']:.3f} / {r['use_mean']:.3f} | {r['answered_429']} | {r['wall_seconds']:.2f} | "
            f"{r['bound_seconds']:.2f} | {r['wall_over_bound']:.3f} | {r['usage']['cap_wait_seconds']:.1f} | "
            f"{'met' if met else 'not met'} |")


def main(args: argparse.Namespace) -> None:
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"load {os.getloadavg()[0]:.2f}")
    print("| case | class | allowed | requests | used ÷ allowed per full window (min / mean) | 429 | wall s | "
          "bound s | wall ÷ bound | cap wait s | goal |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    results = []
    for name in args.case or list(CASES):
        result = run(CASES[name])
        results.append(result)
        print(row(result), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", action="append", choices=sorted(CASES))
    parser.add_argument("--out", help="write the numbers as JSON")
    main(parser.parse_args())
