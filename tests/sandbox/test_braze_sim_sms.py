"""The Braze simulator's SMS subscription groups, as Braze documents them: addressed by
phone (E.164) or external id only, state kept per number, a changed number keeping its
states (or taking those of a number already in the workspace), STOP replies with no time."""

from __future__ import annotations

import httpx
import pytest

from reconcile.sandbox.braze import BrazeSim
from reconcile.sandbox.braze_checks import Msg

AUTH = {"Authorization": "Bearer sandbox-rest-key"}
A, B, C = "+12015551001", "+12015551002", "+12015551003"


@pytest.fixture
def sim() -> BrazeSim:
    s = BrazeSim(clock=lambda: 1_714_560_000.0)
    s.add_group("g-mail", channel="email")
    s.add_group("g-sms", channel="sms")
    s.add_profile(external_id="u1", email="a@example.com", phone=A, groups={"g-sms": "subscribed"})
    s.add_profile(external_id="u2", email="b@example.com", phone=B, groups={"g-sms": "unsubscribed"})
    s.add_profile(external_id="u3", email="c@example.com", phone=None)
    return s


@pytest.fixture
def client(sim: BrazeSim):
    with httpx.Client(transport=sim.transport(), base_url="http://braze.test", headers=AUTH) as c:
        yield c


def _get(client, **ids) -> httpx.Response:
    params = [("subscription_group_id", "g-sms")] + [(f"{k}[]", v) for k, vs in ids.items() for v in vs]
    return client.get("/subscription/status/get", params=params)


def test_email_identifiers_are_refused_on_an_sms_group(client) -> None:
    got = _get(client, email=["a@example.com"])
    assert got.status_code == 400 and "channel" in got.json()["message"]
    sent = client.post("/subscription/status/set", json={"subscription_group_id": "g-sms",
                                                        "subscription_state": "unsubscribed",
                                                        "email": ["a@example.com"]})
    assert sent.status_code == 400 and "channel" in sent.json()["message"]


def test_sms_groups_are_read_and_written_by_phone_or_external_id(sim, client) -> None:
    assert _get(client, phone=[A, B]).json()["status"] == {A: "Subscribed", B: "Unsubscribed"}
    assert _get(client, external_id=["u1"]).json()["status"] == {"u1": "Subscribed"}
    sent = client.post("/subscription/status/set", json={"subscription_group_id": "g-sms",
                                                        "subscription_state": "unsubscribed", "phone": [A]})
    assert sent.status_code == 201
    assert _get(client, phone=[A]).json()["status"] == {A: "Unsubscribed"}


@pytest.mark.parametrize("bad", ["2015551001", "(201) 555-1001", "+1 201 555 1001", "+0123456789"])
def test_phones_must_be_e164(client, bad: str) -> None:
    got = _get(client, phone=[bad])
    assert got.status_code == 400 and got.json()["message"] == Msg.BAD_PHONE
    sent = client.post("/subscription/status/set", json={"subscription_group_id": "g-sms",
                                                        "subscription_state": "unsubscribed", "phone": [bad]})
    assert sent.status_code == 400


def test_a_new_number_keeps_the_profiles_states_and_an_existing_number_brings_its_own(sim, client) -> None:
    track = client.post("/users/track", json={"attributes": [{"external_id": "u1", "phone": C}]})
    assert track.status_code == 201
    assert sim.profile_by_external_id("u1").groups["g-sms"] == "subscribed"  # C was new: u1's state moved with it
    assert _get(client, phone=[C]).json()["status"] == {C: "Subscribed"}
    track = client.post("/users/track", json={"attributes": [{"external_id": "u1", "phone": B}]})
    assert track.status_code == 201
    assert sim.profile_by_external_id("u1").groups["g-sms"] == "unsubscribed"  # B exists: its state is taken


def test_a_number_held_by_two_profiles_shares_its_sms_state(sim, client) -> None:
    sim.add_profile(external_id="u4", email="d@example.com", phone=A, groups={"g-sms": "subscribed"})
    client.post("/subscription/status/set", json={"subscription_group_id": "g-sms",
                                                  "subscription_state": "unsubscribed", "external_id": ["u1"]})
    assert sim.profile_by_external_id("u4").groups["g-sms"] == "unsubscribed"
    assert sim.profile_by_external_id("u1").groups["g-sms"] == "unsubscribed"


def test_a_stop_reply_unsubscribes_the_number_and_leaves_no_time(sim, client) -> None:
    before = client.get("/email/unsubscribes", params={"start_date": "2020-01-01", "end_date": "2030-01-01"}).json()
    assert sim.sms_stop(A) == 1
    assert _get(client, phone=[A]).json()["status"] == {A: "Unsubscribed"}
    profile = sim.profile_by_external_id("u1")
    assert profile.email_subscribe == "subscribed" and "g-mail" not in profile.groups  # email untouched
    after = client.get("/email/unsubscribes", params={"start_date": "2020-01-01", "end_date": "2030-01-01"}).json()
    assert after == before  # no unsubscribe event, no time anywhere
    exported = client.post("/users/export/ids", json={"external_ids": ["u1"],
                                                      "fields_to_export": ["phone", "email_subscribe"]}).json()
    assert exported["users"][0] == {"phone": A, "email_subscribe": "subscribed"}
