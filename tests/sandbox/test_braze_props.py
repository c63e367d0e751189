"""Properties of the Braze simulator over random request sequences."""

from __future__ import annotations

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis_profiles import examples

from reconcile.sandbox.braze import BrazeSim

ADDRESSES = ["a@example.com", "A@Example.com", "b@example.com", "c@example.com"]
AUTH = {"Authorization": "Bearer sandbox-rest-key"}

writes = st.one_of(
    st.builds(lambda e, s: ("/subscription/status/set", {"subscription_group_id": "g", "subscription_state": s,
                                                          "email": [e]}),
              st.sampled_from(ADDRESSES), st.sampled_from(["subscribed", "unsubscribed"])),
    st.builds(lambda e, s: ("/users/track", {"attributes": [{"email": e, "email_subscribe": s}]}),
              st.sampled_from(ADDRESSES), st.sampled_from(["subscribed", "opted_in", "unsubscribed"])),
    st.builds(lambda x, e, g: ("/users/track", {"attributes": [{"external_id": x, "email": e, "subscription_groups": [
        {"subscription_group_id": "g", "subscription_state": g}]}]}),
              st.sampled_from(["u1", "u2", "u3"]), st.sampled_from(ADDRESSES),
              st.sampled_from(["subscribed", "unsubscribed"])),
    st.builds(lambda e: ("/email/blocklist", {"email": e}), st.sampled_from(ADDRESSES)),
    st.builds(lambda e, s: ("/email/status", {"email": e, "subscription_state": s}),
              st.sampled_from(ADDRESSES), st.sampled_from(["subscribed", "unsubscribed"])),
)


@settings(max_examples=examples(150), deadline=None)
@given(st.lists(writes, max_size=12))
def test_shared_email_state_and_persistence(ops: list[tuple[str, dict]]) -> None:
    clock = iter(range(1_714_560_000, 1_714_570_000, 7))
    sim = BrazeSim(clock=lambda: float(next(clock)))
    sim.add_group("g")
    with httpx.Client(transport=sim.transport(), base_url="http://braze.test", headers=AUTH) as c:
        for path, body in ops:
            assert c.post(path, json=body).status_code == 201
    for address in {a.lower() for a in ADDRESSES}:
        profiles = sim.db.by_email(address)
        # group writes by email reach every profile holding the address
        assert len({p.groups.get("g") for p in profiles}) <= 1
        # an address with an unsubscribed profile is on the unsubscribe list
        if any(p.email_subscribe == "unsubscribed" for p in profiles):
            assert address in sim.db.unsubscribes
    assert BrazeSim.from_dict(sim.to_dict()).to_dict() == sim.to_dict()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.sampled_from(["", "g", "u1", "a@example.com", "subscribed",
                                                                      "unsubscribed", "identified", "x"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(
        ["external_id", "external_ids", "email", "emails", "subscription_group_id", "subscription_state",
         "subscription_groups", "attributes", "events", "user_alias", "alias_name", "alias_label", "prioritization",
         "email_addresses", "fields_to_export", "email_address", "name", "time", "_update_existing_only"]),
        inner, max_size=4),
    max_leaves=12)
POST_ROUTES = ["/users/export/ids", "/subscription/status/set", "/v2/subscription/status/set", "/users/track",
               "/users/delete", "/users/alias/new", "/email/status", "/email/blocklist"]


@settings(max_examples=examples(200), deadline=None)
@given(st.sampled_from(POST_ROUTES), json_values)
def test_any_json_body_gets_a_braze_answer_never_a_crash(path: str, body: object) -> None:
    sim = BrazeSim(clock=lambda: 1_714_560_000.0)
    sim.add_group("g")
    sim.add_profile(external_id="u1", email="a@example.com")
    with httpx.Client(transport=sim.transport(), base_url="http://braze.test", headers=AUTH) as c:
        r = c.post(path, json=body)
    assert r.status_code in (200, 201, 400)
    assert "message" in r.json() or "success" in r.json()
