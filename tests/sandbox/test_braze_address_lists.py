"""Address-level lists versus per-profile state in the simulator (semantics §1)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from reconcile.sandbox.braze import BrazeSim

NOW = 1_714_560_000.0  # 2024-05-01T10:40:00Z
AUTH = {"Authorization": "Bearer sandbox-rest-key"}
WINDOW = {"start_date": "2024-04-01", "end_date": "2024-05-02"}
FIELDS = ["braze_id", "external_id", "email", "email_subscribe"]


@pytest.fixture
def sim() -> BrazeSim:
    return BrazeSim(clock=lambda: NOW)


@pytest.fixture
def client(sim: BrazeSim) -> Iterator[httpx.Client]:
    with httpx.Client(transport=sim.transport(), base_url="http://braze.test", headers=AUTH) as c:
        yield c


def listed(client: httpx.Client) -> list[str]:
    return [row["email"] for row in client.get("/email/unsubscribes", params=WINDOW).json()["emails"]]


def test_address_stays_listed_while_any_profile_holding_it_is_unsubscribed(sim: BrazeSim, client: httpx.Client):
    first = sim.add_profile(external_id="u1", email="s@example.com")
    second = sim.add_profile(external_id="u2", email="S@example.com")
    out = client.post("/users/track", json={"attributes": [
        {"external_id": "u1", "email_subscribe": "unsubscribed"},
        {"external_id": "u2", "email_subscribe": "unsubscribed"}]})
    assert out.status_code == 201 and listed(client) == ["s@example.com"]
    back = client.post("/users/track", json={"attributes": [{"braze_id": second, "email_subscribe": "subscribed"}]})
    assert back.status_code == 201 and listed(client) == ["s@example.com"]
    users = client.post("/users/export/ids", json={"email_address": "s@example.com", "fields_to_export": FIELDS})
    states = {u["braze_id"]: u["email_subscribe"] for u in users.json()["users"]}
    assert states == {first: "unsubscribed", second: "subscribed"}
    client.post("/users/track", json={"attributes": [{"external_id": "u1", "email_subscribe": "subscribed"}]})
    assert listed(client) == []


def test_export_by_email_returns_every_profile_with_its_identity_and_state(sim: BrazeSim, client: httpx.Client):
    a = sim.add_profile(external_id="u1", email="s@example.com", email_subscribe="opted_in")
    b = sim.add_profile(external_id="u2", email="S@Example.com", email_subscribe="unsubscribed")
    sim.add_profile(external_id="u3", email="other@example.com")
    body = client.post("/users/export/ids", json={"email_address": "s@example.com", "fields_to_export": FIELDS}).json()
    assert body["message"] == "success" and "invalid_user_ids" not in body
    assert sorted(body["users"], key=lambda u: u["external_id"]) == [
        {"braze_id": a, "external_id": "u1", "email": "s@example.com", "email_subscribe": "opted_in"},
        {"braze_id": b, "external_id": "u2", "email": "S@Example.com", "email_subscribe": "unsubscribed"}]


def test_export_by_external_ids_lists_unknown_ones_as_invalid(sim: BrazeSim, client: httpx.Client):
    a = sim.add_profile(external_id="u1", email="a@example.com")
    body = client.post("/users/export/ids", json={"external_ids": ["u1", "ghost", "u9"],
                                                  "fields_to_export": FIELDS}).json()
    assert body["users"] == [{"braze_id": a, "external_id": "u1", "email": "a@example.com",
                              "email_subscribe": "subscribed"}]
    assert body["invalid_user_ids"] == ["ghost", "u9"]


def test_export_by_unknown_email_is_empty_and_invalid(client: httpx.Client):
    body = client.post("/users/export/ids", json={"email_address": "none@example.com", "fields_to_export": FIELDS}).json()
    assert body["users"] == [] and body["invalid_user_ids"] == ["none@example.com"]
