"""The deployed shape for the operations suite: both simulators and the Ketch webhook ledger
on loopback HTTP, a notification receiver on loopback, and one simulated clock shared by
the runs, the simulators and the ledger (fire times come from it; nothing sleeps)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import pytest

from reconcile.sandbox.braze import BrazeSim
from reconcile.sandbox.ketch import KetchSim
from reconcile.sandbox.server import serve

KEY = "test-braze-key-4711"
TOKEN = "ops-ledger-token-5c2e"


@dataclass
class SimClock:
    """Simulated time: set to each fire time; while a run works, it advances with real time
    (so rate-limit windows and verify delays behave), never by sleeping."""

    at: datetime
    _set_at: float = 0.0

    def set(self, when: datetime) -> None:
        self.at, self._set_at = when, time.monotonic()

    def __call__(self) -> datetime:
        return self.at + timedelta(seconds=time.monotonic() - self._set_at)

    def epoch(self) -> float:
        return self().timestamp()


@dataclass
class Sandbox:
    clock: SimClock
    braze: BrazeSim
    ketch: KetchSim
    braze_url: str
    ketch_url: str
    tmp: Path


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    start = datetime(2026, 3, 2, 0, 5, tzinfo=timezone.utc)  # a Monday
    clock = SimClock(start)
    clock.set(start)
    braze = BrazeSim(api_key=KEY, clock=clock.epoch)
    ketch = KetchSim(organization="acme", clock=clock.epoch)
    with serve(braze) as b, serve(ketch) as k:
        yield Sandbox(clock, braze, ketch, b.url, k.url, tmp_path)
