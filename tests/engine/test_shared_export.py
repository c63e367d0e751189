"""SharedExport on a real state store: readers of one scope share one start; a missing
permission is known to every reader; a holder that went quiet is given up after the wait."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

from reconcile.clients.braze import BrazeClient
from reconcile.config import BrazeConfig
from reconcile.engine.shared_export import SharedExport
from reconcile.errors import PermissionDenied
from reconcile.sandbox.braze import PARTNER_PERMISSIONS, BrazeSim
from reconcile.store.store import Store

KEY = "sandbox-rest-key"
FIELDS = ["external_id", "braze_id", "email", "email_subscribe"]
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


def client(sim: BrazeSim) -> BrazeClient:
    return BrazeClient(BrazeConfig(rest_endpoint="https://rest.example.braze.com", max_retries=1), KEY,
                       transport=sim.transport(), sleep=lambda s: None, rng=random.Random(0))


def reader(store: Store, sim: BrazeSim, clock, slept: list[float]) -> SharedExport:
    return SharedExport(store, client(sim), "run:r1", "all-users", FIELDS, clock=clock, sleep=slept.append,
                        wait_seconds=60, poll_seconds=5)


def starts(sim: BrazeSim) -> int:
    return sum(1 for c in sim.calls if c["path"] == "/users/export/segment")


def test_readers_of_one_scope_share_one_export(tmp_path):
    sim = BrazeSim(api_key=KEY)
    for i in range(5):
        sim.add_profile(external_id=f"u{i}", email=f"U{i}@x.com")
    with Store.open(f"sqlite:///{tmp_path / 's.db'}") as store:
        first, second = reader(store, sim, lambda: T0, []), reader(store, sim, lambda: T0, [])
        a = first.rows_for(["u1@x.com", "u2@x.com"])
        b = second.rows_for(["u3@x.com"])
        assert sorted(a["external_id"]) == ["u1", "u2"] and list(b["email"]) == ["U3@x.com"]
        assert starts(sim) == 1 and first.started and not second.started


def test_a_missing_permission_is_known_to_every_reader_from_one_request(tmp_path):
    sim = BrazeSim(api_key=KEY, permissions=PARTNER_PERMISSIONS)
    with Store.open(f"sqlite:///{tmp_path / 's.db'}") as store:
        for _ in range(2):
            with pytest.raises(PermissionDenied):
                reader(store, sim, lambda: T0, []).rows_for(["a@x.com"])
    assert starts(sim) == 1


def test_a_holder_that_went_quiet_is_given_up_after_the_wait(tmp_path):
    sim = BrazeSim(api_key=KEY)
    now = [T0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += timedelta(seconds=seconds)

    with Store.open(f"sqlite:///{tmp_path / 's.db'}") as store:
        store.claim_segment_export("run:r1", "all-users", "a-process-that-died", T0)
        late = SharedExport(store, client(sim), "run:r1", "all-users", FIELDS, clock=lambda: now[0], sleep=sleep,
                            wait_seconds=60, poll_seconds=5)
        assert late.rows_for(["a@x.com"]) is None
        assert store.segment_export("run:r1")["status"] == "unavailable"
    assert starts(sim) == 0 and sum(slept) == pytest.approx(120, abs=5)
