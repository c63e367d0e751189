"""The Braze client's SMS group calls against the simulator: by phone (E.164), 50 a
request, and a number no profile holds read as unknown in either not-found style."""

from __future__ import annotations

import pytest

from reconcile.sandbox.braze import BrazeSim

from test_braze_writes import calls, sim_client


@pytest.mark.parametrize("style", ["unknown", "omit"])
def test_sms_group_state_by_phone_and_unknown_numbers(style: str) -> None:
    sim = BrazeSim(not_found_style=style)
    sim.add_group("g-sms", channel="sms")
    phones = [f"+1201555{1000 + i:04d}" for i in range(120)]
    for i, phone in enumerate(phones[:60]):
        sim.add_profile(external_id=f"u{i}", phone=phone, groups={"g-sms": "subscribed" if i % 2 else "unsubscribed"})
    with sim_client(sim) as client:
        state = client.subscription_status_get("g-sms", phones=phones)
    assert state[phones[1]] == "subscribed" and state[phones[0]] == "unsubscribed"
    assert {state[p] for p in phones[60:]} == {"unknown"}  # no profile holds them: not a malformed answer
    reads = calls(sim, "/subscription/status/get")
    assert len(reads) == 3 and all(len(c["query"]["phone[]"]) <= 50 for c in reads)


def test_sms_group_writes_by_phone_go_50_a_request() -> None:
    sim = BrazeSim()
    sim.add_group("g-sms", channel="sms")
    phones = [f"+1201555{1000 + i:04d}" for i in range(75)]
    for i, phone in enumerate(phones):
        sim.add_profile(external_id=f"u{i}", phone=phone, groups={"g-sms": "subscribed"})
    with sim_client(sim) as client:
        result = client.unsubscribe_groups("g-sms", "phone", phones)
    assert sorted(result.ok) == sorted(phones) and not result.rejected
    sets = calls(sim, "/subscription/status/set")
    assert [len(c["body"]["phone"]) for c in sets] == [50, 25] and all("email" not in c["body"] for c in sets)
    assert {p.groups["g-sms"] for p in sim.db.profiles.values()} == {"unsubscribed"}
