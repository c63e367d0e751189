"""The fault matrix (docs/reliability.md): each fault against the sandbox served on
loopback, then runs until in sync. Every run converges or stops with a clear error, and
the final Braze state equals a fault-free run's: no wrong write, nothing lost."""

from __future__ import annotations

import contextlib
import functools
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from reconcile.errors import ExitCode, ReconcileError
from reconcile.pipeline.job import run_job
from reconcile.sandbox.braze import BrazeSim
from reconcile.sandbox.ketch import KetchSim
from reconcile.sandbox.server import serve

from tests.pipeline.conftest import World
from wire import ResetProxy

WRITES = r"^/(users/(track|delete|alias/new)|(v2/)?subscription/status/set|email/(blocklist|status))$"
READS = r"^/(users/export/ids|subscription/(status/get|user/status)|email/(unsubscribes|hard_bounces))$"
SUBJECTS, DRIFT, SEED = 40, 0.3, 11
MAX_RUNS = 4


@contextlib.contextmanager
def make_world(tmp: Path, proxy: dict | None = None) -> Iterator[tuple[World, ResetProxy | None]]:
    braze, ketch = BrazeSim(api_key=World.key), KetchSim(organization="acme")
    with serve(braze, timeout_hold_seconds=2) as b, serve(ketch, timeout_hold_seconds=2) as k:
        with (ResetProxy(b.url, **proxy) if proxy else contextlib.nullcontext()) as p:
            yield World(braze, ketch, p.url if p else b.url, k.url, tmp, f"sqlite:///{tmp / 'state.db'}"), p


def config(w: World):
    return w.config(braze={"timeout_seconds": 0.5, "backoff_cap_seconds": 0.05, "max_retries": 4},
                    ketch={"timeout_seconds": 0.5, "max_retries": 4})


def projection(w: World) -> dict[str, Any]:
    """What the reconciliation is about: each profile's subscription state, and the lists."""
    state = w.braze.to_dict()
    profiles = sorted((p["email"] or "", p["external_id"] or "", p["email_subscribe"], sorted(p["groups"].items()))
                      for p in state["profiles"])
    lists = {name: sorted(str(e.get("email") if isinstance(e, dict) else e).casefold() for e in state[name])
             for name in ("blocklist", "hard_bounces")}
    return {"profiles": profiles, **lists}


def converge(w: World, cfg) -> list[dict[str, Any]]:
    """Runs until one plans nothing; each run's outcome (status, exit, error)."""
    outcomes = []
    for _ in range(MAX_RUNS):
        with w.runtime(cfg) as rt:
            try:
                r = run_job(rt)
                outcomes.append({"status": str(r.status), "exit": r.exit_code, "planned": r.actions_planned,
                                 "error": "; ".join(r.messages)})
            except ReconcileError as exc:
                outcomes.append({"status": "stopped", "exit": exc.exit_code, "planned": None, "error": str(exc)})
        w.braze.faults.__init__()  # faults hit the first run; later runs see a healthy service
        w.ketch.faults.__init__()
        last = outcomes[-1]
        if last["status"] == "in_sync" or (last["planned"] == 0 and last["exit"] == ExitCode.OK):
            return outcomes
    return outcomes


@functools.lru_cache(maxsize=1)
def reference() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, make_world(Path(tmp)) as (w, _):
        cfg = config(w)
        w.seed(cfg, subjects=SUBJECTS, drift=DRIFT, seed=SEED)
        outcomes = converge(w, cfg)
        assert outcomes[-1]["status"] == "in_sync", outcomes
        return projection(w)


def _ketch_too(w: World, rate: float) -> None:
    w.ketch.faults.error_rate = rate


FAULTS: dict[str, tuple[Callable[[World], int], dict | None]] = {
    # name: (inject into the first run -> how many write answers it may spoil, reset proxy settings)
    "5% 5xx": (lambda w: (setattr(w.braze.faults, "error_rate", 0.05), _ketch_too(w, 0.05), 0)[-1], None),
    "429 storm": (lambda w: (w.braze.faults.fail_next(WRITES, 429, times=4), 0)[-1], None),
    "hang past the timeout": (lambda w: (w.braze.faults.fail_next(WRITES, 599, times=2),
                                         w.braze.faults.fail_next(READS, 599, times=1), 0)[-1], None),
    "connection reset after handling": (lambda w: 3, {"path_regex": WRITES[1:-1], "resets": 3}),
    "truncated JSON": (lambda w: (w.braze.faults.answer_next(WRITES, "truncated_json", 3), 3)[-1], None),
    "wrong content type": (lambda w: (w.braze.faults.answer_next(WRITES, "text_plain", 3),
                                      w.braze.faults.answer_next(READS, "text_plain", 2), 0)[-1], None),
    "HTML error pages": (lambda w: (w.braze.faults.html_next(WRITES, 200, 2), w.braze.faults.html_next(WRITES, 502, 2),
                                    2)[-1], None),
    "schema drift: unknown fields": (lambda w: (w.braze.faults.answer_next(".", "unknown_fields", 40), 0)[-1], None),
    "schema drift: missing fields": (lambda w: (w.braze.faults.answer_next(WRITES, "missing_fields", 2), 2)[-1], None),
    "empty answers": (lambda w: (w.braze.faults.answer_next(WRITES, "empty", 2), 2)[-1], None),
    "truncated JSON on a read": (lambda w: (w.braze.faults.answer_next(READS, "truncated_json", 1), 0)[-1], None),
    "HTML page on a read": (lambda w: (w.braze.faults.html_next(READS, 200, 1), 0)[-1], None),
    "missing fields on a read": (lambda w: (w.braze.faults.answer_next("/users/export/ids", "missing_fields", 1), 0)[-1],
                                 None),
    "empty answer on a read": (lambda w: (w.braze.faults.answer_next("/subscription/", "empty", 1), 0)[-1], None),
}


@pytest.mark.slow
@pytest.mark.parametrize("fault", list(FAULTS))
def test_each_fault_converges_or_stops_clearly_with_no_wrong_write(fault: str, tmp_path: Path) -> None:
    inject, proxy = FAULTS[fault]
    with make_world(tmp_path, proxy) as (w, p):
        cfg = config(w)
        w.seed(cfg, subjects=SUBJECTS, drift=DRIFT, seed=SEED)
        spoiled_writes = inject(w)
        outcomes = converge(w, cfg)
        final = projection(w)
        with w.runtime(cfg) as rt:
            journal = [a for run in rt.store.list_runs(20) if run.get("plan_id")
                       for a in rt.store.actions(plan_id=run["plan_id"])]
        handled = [c for c in w.braze.calls if c["status"] < 300 and c["path"] in {a["endpoint"] for a in journal}]
    print(f"\n{fault}: " + " -> ".join(f"{o['status']}({o['exit']}){': ' + o['error'][:240] if o['error'] else ''}"
                                      for o in outcomes))
    assert outcomes[-1]["status"] == "in_sync", outcomes
    for o in outcomes[:-1]:
        assert o["exit"] in (ExitCode.OK, ExitCode.PARTIAL, ExitCode.ERROR), o
        if o["exit"] != ExitCode.OK:
            assert o["error"] and "Traceback" not in o["error"], o
    assert final == reference()
    confirmed = [a for a in journal if a["status"] == "confirmed"]
    assert len(handled) <= len(confirmed) + spoiled_writes + (p.resets if p else 0) + len(p.reset_paths if p else [])
    if p is not None:
        assert len(p.reset_paths) == 3
