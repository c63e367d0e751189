"""The simulator's profile indexes are updated in place by creations, deletions and address
changes, number changes (no rebuild of the whole table per request) and always agree with a fresh build."""

from __future__ import annotations

import random

import httpx
import pytest

from reconcile.sandbox import braze_state
from reconcile.sandbox.braze import BrazeSim
from reconcile.sandbox.braze_state import _Index

AUTH = {"Authorization": "Bearer sandbox-rest-key"}
NOW = 1_714_560_000.0


def agrees(sim: BrazeSim, builds: list[int] | None = None) -> None:
    index = sim.db._indexes()
    fresh = _Index(sim.db.profiles.values(), sim.db.norm)
    if builds:
        builds.pop()  # the fresh build made here
    assert {k: [p.braze_id for p in v] for k, v in index.emails.items()} == \
        {k: [p.braze_id for p in v] for k, v in fresh.emails.items()}
    assert {k: [p.braze_id for p in v] for k, v in index.xids.items()} == \
        {k: [p.braze_id for p in v] for k, v in fresh.xids.items()}
    assert {k: [p.braze_id for p in v] for k, v in index.phones.items() if v} == \
        {k: [p.braze_id for p in v] for k, v in fresh.phones.items()}


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    count: list[int] = []
    real = braze_state._Index.__init__

    def counted(self, profiles, key):  # type: ignore[no-untyped-def]
        count.append(1)
        real(self, profiles, key)

    monkeypatch.setattr(braze_state._Index, "__init__", counted)
    return count


def test_deletions_update_the_index_without_a_rebuild(builds: list[int]):
    sim = BrazeSim(clock=lambda: NOW)
    for n in range(300):
        sim.add_profile(external_id=f"u{n}", email=f"shared{n % 100}@x.com")
    with httpx.Client(transport=sim.transport(), base_url="http://braze.test", headers=AUTH) as client:
        client.post("/users/export/ids", json={"external_ids": ["u1"], "fields_to_export": ["email"]})
        built = len(builds)
        for start in range(0, 150, 50):
            out = client.post("/users/delete", json={"external_ids": [f"u{n}" for n in range(start, start + 50)]})
            assert out.json()["deleted"] == 50
        users = client.post("/users/export/ids", json={"email_address": "shared7@x.com",
                                                       "fields_to_export": ["external_id"]}).json()["users"]
    assert len(builds) == built
    assert [u["external_id"] for u in users] == ["u207"]
    assert sim.profile_by_external_id("u3") is None and sim.profile_by_external_id("u203") is not None
    agrees(sim, builds)
    assert len(builds) == built


def test_created_profiles_and_changed_addresses_keep_table_order(builds: list[int]):
    sim = BrazeSim(clock=lambda: NOW)
    sim.add_group("g")
    for n in range(20):
        sim.add_profile(external_id=f"u{n}", email=f"a{n % 5}@x.com")
    with httpx.Client(transport=sim.transport(), base_url="http://braze.test", headers=AUTH) as client:
        client.post("/users/export/ids", json={"external_ids": ["u1"], "fields_to_export": ["email"]})
        built = len(builds)
        rng = random.Random(3)
        for step in range(60):
            objects = [{"external_id": f"u{rng.randrange(30)}", "email": f"a{rng.randrange(8)}@X.com"}
                       for _ in range(rng.randrange(1, 5))]
            assert client.post("/users/track", json={"attributes": objects}).status_code == 201
            if step % 7 == 0:
                victim = f"u{rng.randrange(30)}"
                client.post("/users/delete", json={"external_ids": [victim]})
            agrees(sim, builds)
    assert len(builds) == built


def test_a_change_the_index_does_not_follow_rebuilds_it():
    sim = BrazeSim(clock=lambda: NOW)
    braze_id = sim.add_profile(external_id="u1", email="a@x.com")
    assert sim.db.by_external_id("u1") is not None
    sim.db.profiles[braze_id].external_id = "u2"
    sim.db.identity_version += 1
    assert sim.db.by_external_id("u1") is None and sim.db.by_external_id("u2").braze_id == braze_id


def test_numbers_given_and_changed_keep_the_phone_index(builds: list[int]):
    sim = BrazeSim(api_key="sandbox-rest-key", clock=lambda: NOW)
    for i in range(6):
        sim.add_profile(external_id=f"u{i}", email=f"u{i}@x.io", phone=f"+1415555{i:04d}" if i % 2 else None)
    sim.db._indexes()
    builds.clear()
    client = httpx.Client(transport=sim.transport(), base_url="https://rest.test")
    objs = [{"external_id": "u0", "phone": "+14155550001"}, {"external_id": "u1", "phone": "+14155559999"},
            {"phone": "+14155558888", "first_name": "new"}]
    for obj in objs:
        assert client.post("/users/track", json={"attributes": [obj]}, headers=AUTH).status_code == 201
    assert [p.external_id for p in sim.db.by_phone("+14155550001")] == ["u0"]
    assert [p.external_id for p in sim.db.by_phone("+14155559999")] == ["u1"]
    assert len(sim.db.by_phone("+14155558888")) == 1
    assert not builds, "number changes update the index in place"
    agrees(sim)
