"""The intent-named writes against the Braze simulator in-process, the /users/track cap
per contract, and confirmation: a 2xx that does not say "success" is never a success."""

from __future__ import annotations

import json
import logging
import random
from typing import Any, Callable

import httpx
import pytest

from reconcile.clients.braze import BrazeClient
from reconcile.config import BrazeConfig
from reconcile.errors import FatalApiError, TransientApiError, UnconfirmedWrite
from reconcile.sandbox.braze import BrazeSim

from fake_time import FakeTime

KEY = "sandbox-rest-key"
CFG = BrazeConfig(rest_endpoint="https://rest.example.braze.com", max_retries=1, backoff_cap_seconds=0.1)


def sim_client(sim: BrazeSim, **cfg: Any) -> BrazeClient:
    ft = FakeTime()
    config = BrazeConfig(rest_endpoint="https://rest.example.braze.com", max_retries=1, **cfg)
    return BrazeClient(config, KEY, transport=sim.transport(), sleep=ft.sleep, clock=ft.clock, rng=random.Random(0))


def handler_client(handler: Callable[[httpx.Request], httpx.Response], **cfg: Any) -> BrazeClient:
    ft = FakeTime()
    config = BrazeConfig(rest_endpoint="https://rest.example.braze.com", max_retries=1, **cfg)
    return BrazeClient(config, KEY, transport=httpx.MockTransport(handler), sleep=ft.sleep, clock=ft.clock,
                       rng=random.Random(0))


def calls(sim: BrazeSim, path: str) -> list[dict[str, Any]]:
    return [c for c in sim.calls if c["path"] == path]


# -- subscription groups -------------------------------------------------------------------
def test_unsubscribe_groups_by_external_id_in_batches_of_50():
    sim = BrazeSim(api_key=KEY)
    sim.add_group("g")
    ids = [f"u{i}" for i in range(120)]
    for ident in ids:
        sim.add_profile(external_id=ident, groups={"g": "subscribed"})
    result = sim_client(sim).unsubscribe_groups("g", "external_id", ids)
    sent = calls(sim, "/subscription/status/set")
    assert [len(c["body"]["external_id"]) for c in sent] == [50, 50, 20]
    assert {c["body"]["subscription_state"] for c in sent} == {"unsubscribed"}
    assert result.ok == ids and result.rejected == [] and result.requests_sent == 3
    assert all(sim.group_state(sim.profile_by_external_id(i).braze_id, "g") == "unsubscribed" for i in ids)


def test_subscribe_groups_by_email_reaches_every_profile_sharing_it():
    sim = BrazeSim(api_key=KEY)
    sim.add_group("g")
    a = sim.add_profile(external_id="u1", email="s@x.com", groups={"g": "unsubscribed"})
    b = sim.add_profile(email="S@x.com", groups={"g": "unsubscribed"})
    result = sim_client(sim).subscribe_groups("g", "email", ["s@x.com"])
    assert result.ok == ["s@x.com"] and [sim.group_state(p, "g") for p in (a, b)] == ["subscribed"] * 2


def test_group_write_refused_batch_names_the_identifier_not_the_request():
    sim = BrazeSim(api_key=KEY)
    sim.add_group("g")
    result = sim_client(sim).unsubscribe_groups("g", "email", ["a@x.com", "not-an-email", "b@x.com"])
    assert sorted(result.ok) == ["a@x.com", "b@x.com"]
    assert [ident for ident, _ in result.rejected] == ["not-an-email"]
    assert all(isinstance(reason, str) and reason for _, reason in result.rejected)


@pytest.mark.parametrize("call", [
    lambda c: c.unsubscribe_groups("g", "braze_id", ["x"]),
    lambda c: c.unsubscribe_groups("", "email", ["a@x.com"]),
    lambda c: c.set_global_state("unsubscribed", "email", ["a@x.com"]),
    lambda c: c.set_global_state("maybe", "external_id", ["u1"]),
    lambda c: c.delete_profiles("phone", ["+1555"]),
    lambda c: c.delete_profiles("email", ["a@x.com"]),
    lambda c: c.blocklist_emails(["a@x.com", 7]),
    lambda c: c.create_alias_optouts(["a@x.com"], ""),
])
def test_bad_arguments_fail_before_any_request(call):
    sim = BrazeSim(api_key=KEY)
    with pytest.raises(ValueError):
        call(sim_client(sim))
    assert sim.calls == []


# -- global state -----------------------------------------------------------------------------
def test_set_global_state_by_braze_id_changes_exactly_one_of_the_profiles_sharing_an_address():
    sim = BrazeSim(api_key=KEY)
    first = sim.add_profile(external_id="u1", email="s@x.com")
    second = sim.add_profile(email="s@x.com")
    result = sim_client(sim).set_global_state("unsubscribed", "braze_id", [second])
    sent = calls(sim, "/users/track")[0]["body"]["attributes"]
    assert sent == [{"braze_id": second, "email_subscribe": "unsubscribed", "_update_existing_only": True}]
    states = {p.braze_id: p.email_subscribe for p in sim.profiles_by_email("s@x.com")}
    assert states == {first: "subscribed", second: "unsubscribed"} and result.ok == [second]


def test_set_global_state_by_external_id_never_creates_a_profile():
    sim = BrazeSim(api_key=KEY)
    sim.add_profile(external_id="u1", email="a@x.com")
    result = sim_client(sim).set_global_state("opted_in", "external_id", ["u1", "ghost"])
    assert sim.profile_by_external_id("u1").email_subscribe == "opted_in"
    assert sim.profile_by_external_id("ghost") is None and result.rejected == []


def test_set_global_state_rejections_are_keyed_by_identifier():
    def answer(request: httpx.Request) -> httpx.Response:
        attrs = json.loads(request.content)["attributes"]
        errors = [{"type": "EXTERNAL_USER_ID_TOO_LARGE", "input_array": "attributes", "index": i}
                  for i, a in enumerate(attrs) if a["external_id"] == "u1"]
        return httpx.Response(201, json={"message": "success", "errors": errors})

    result = handler_client(answer).set_global_state("unsubscribed", "external_id", ["u0", "u1", "u2"])
    assert result.rejected == [("u1", "EXTERNAL_USER_ID_TOO_LARGE")] and result.ok == ["u0", "u2"]


# -- deletion, blocklist ---------------------------------------------------------------------
def test_delete_profiles_by_each_id_type():
    sim = BrazeSim(api_key=KEY)
    sim.add_profile(external_id="u1")
    braze_id = sim.add_profile(email="b@x.com")
    sim.add_profile(external_id="u3", email="c@x.com")
    client = sim_client(sim)
    by_xid = client.delete_profiles("external_id", ["u1"])
    by_bid = client.delete_profiles("braze_id", [braze_id])
    by_email = client.delete_profiles("email", ["c@x.com"], prioritization=("identified",))
    assert (by_xid.deleted, by_bid.deleted, by_email.deleted) == (1, 1, 1)
    assert calls(sim, "/users/delete")[2]["body"] == {"email_addresses": [
        {"email": "c@x.com", "prioritization": ["identified"]}]}
    assert by_email.ok == ["c@x.com"] and sim.profiles_by_email("c@x.com") == []


def test_blocklist_emails_unsubscribes_and_marks_hard_bounced():
    sim = BrazeSim(api_key=KEY)
    sim.add_profile(external_id="u1", email="a@x.com")
    result = sim_client(sim).blocklist_emails(["a@x.com", "a@x.com"])
    assert result.ok == ["a@x.com"] and calls(sim, "/email/blocklist")[0]["body"] == {"email": ["a@x.com"]}
    assert sim.profile_by_external_id("u1").email_subscribe == "unsubscribed"
    assert "a@x.com" in sim.db.hard_bounces


# -- alias opt-outs --------------------------------------------------------------------------
def test_create_alias_optouts_makes_an_unsubscribed_alias_profile_per_address_in_one_track_call():
    sim = BrazeSim(api_key=KEY)
    result = sim_client(sim).create_alias_optouts(["a@x.com", "b@x.com"], "ketch_email")
    assert calls(sim, "/users/alias/new") == [], "no alias/new: users/track makes the alias profile itself"
    assert calls(sim, "/users/track")[0]["body"]["attributes"][0] == {
        "user_alias": {"alias_name": "a@x.com", "alias_label": "ketch_email"}, "email": "a@x.com",
        "email_subscribe": "unsubscribed", "_update_existing_only": False}
    assert result.ok == ["a@x.com", "b@x.com"] and result.requests_sent == 1
    assert [r.endpoint for r in result.responses] == ["/users/track"]
    profiles = sim.profiles_by_email("a@x.com")
    assert len(profiles) == 1 and profiles[0].email_subscribe == "unsubscribed" and profiles[0].external_id is None
    assert profiles[0].has_alias("a@x.com", "ketch_email")
    again = sim_client(sim).create_alias_optouts(["a@x.com"], "ketch_email")  # an existing alias profile is updated
    assert again.ok == ["a@x.com"] and len(sim.profiles_by_email("a@x.com")) == 1


def test_the_sandbox_alias_delay_makes_alias_new_then_track_a_second_profile():
    """The switch the alias-race test relies on: with the delay, the old two-call sequence
    leaves two profiles carrying the alias (one of them still subscribed)."""
    clock = [1000.0]
    sim = BrazeSim(api_key=KEY, clock=lambda: clock[0], alias_visibility_delay_seconds=300)
    c = sim_client(sim)
    c.users_alias_new([{"alias_name": "a@x.com", "alias_label": "ketch_email"}])
    c.users_track([{"user_alias": {"alias_name": "a@x.com", "alias_label": "ketch_email"}, "email": "a@x.com",
                    "email_subscribe": "unsubscribed", "_update_existing_only": False}])
    twins = [p for p in sim.db.profiles.values() if p.has_alias("a@x.com", "ketch_email")]
    assert sorted(p.email_subscribe for p in twins) == ["subscribed", "unsubscribed"]
    clock[0] += 301  # once visible, users/track finds the alias profile
    c.users_alias_new([{"alias_name": "b@x.com", "alias_label": "ketch_email"}])
    clock[0] += 301
    c.users_track([{"user_alias": {"alias_name": "b@x.com", "alias_label": "ketch_email"},
                    "email_subscribe": "unsubscribed", "_update_existing_only": False}])
    assert len([p for p in sim.db.profiles.values() if p.has_alias("b@x.com", "ketch_email")]) == 1


def test_create_alias_optouts_rejections_are_keyed_by_email():
    sim = BrazeSim(api_key=KEY)
    result = sim_client(sim).create_alias_optouts(["a@x.com", "not-an-email"], "ketch_email")
    assert result.ok == ["a@x.com"] and [e for e, _ in result.rejected] == ["not-an-email"]
    assert result.rejected[0][1] == "EMAIL_BAD_FORMAT"


# -- /users/track object cap per contract ------------------------------------------------------
def test_track_cap_of_50_splits_once_and_stays_at_50(caplog):
    sim = BrazeSim(api_key=KEY, track_object_limit=50)
    ids = [f"u{i}" for i in range(200)]
    for ident in ids:
        sim.add_profile(external_id=ident)
    client = sim_client(sim, track_batch_size=75)
    with caplog.at_level(logging.WARNING, logger="reconcile.clients.braze"):
        first = client.set_global_state("unsubscribed", "external_id", ids[:150])
        second = client.set_global_state("unsubscribed", "external_id", ids[150:])
    sizes = [(len(c["body"]["attributes"]), c["status"]) for c in calls(sim, "/users/track")]
    assert sizes == [(75, 400), (50, 201), (25, 201), (50, 201), (25, 201), (50, 201)]
    assert first.ok == ids[:150] and second.ok == ids[150:] and first.rejected == []
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "braze.track_batch_size" in warnings[0].getMessage()
    assert client.cfg.track_batch_size == 75
    assert all(sim.profile_by_external_id(i).email_subscribe == "unsubscribed" for i in ids)


def test_track_cap_leaves_75_alone_on_contracts_that_take_75():
    sim = BrazeSim(api_key=KEY)
    client = sim_client(sim)
    client.set_global_state("unsubscribed", "external_id", [f"u{i}" for i in range(150)])
    assert [len(c["body"]["attributes"]) for c in calls(sim, "/users/track")] == [75, 75]


def test_max_input_length_on_50_objects_is_fatal():
    sim = BrazeSim(api_key=KEY, track_object_limit=40)
    with pytest.raises(FatalApiError, match="Max Input Length Exceeded"):
        sim_client(sim).set_global_state("unsubscribed", "external_id", [f"u{i}" for i in range(120)])
    assert [len(c["body"]["attributes"]) for c in calls(sim, "/users/track")] == [75, 50]


# -- confirmed means confirmed -----------------------------------------------------------------
HTML = b"<html><body><h1>Service temporarily unavailable</h1>mail ops@example.com</body></html>"


def html_200(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=HTML, headers={"Content-Type": "text/html"})


@pytest.mark.parametrize("write", [
    lambda c: c.unsubscribe_groups("g", "external_id", ["u1"]),
    lambda c: c.subscribe_groups("g", "email", ["a@x.com"]),
    lambda c: c.set_global_state("unsubscribed", "braze_id", ["b1"]),
    lambda c: c.delete_profiles("external_id", ["u1"]),
    lambda c: c.blocklist_emails(["a@x.com"]),
    lambda c: c.create_alias_optouts(["a@x.com"], "ketch_email"),
    lambda c: c.email_status(["a@x.com"], "unsubscribed"),
    lambda c: c.subscription_status_set_v2([{"subscription_group_id": "g", "subscription_state": "unsubscribed",
                                             "external_ids": ["u1"]}]),
])
def test_a_200_with_html_is_an_unconfirmed_transient_error(write):
    with pytest.raises(UnconfirmedWrite) as info:
        write(handler_client(html_200))
    assert isinstance(info.value, TransientApiError) and info.value.status_code == 200
    assert "success" in str(info.value) and "ops@example.com" not in str(info.value) and KEY not in str(info.value)


@pytest.mark.parametrize("path, body", [
    ("/subscription/status/set", {"message": "queued"}),
    ("/subscription/status/set", {}),
    ("/subscription/status/set", ["success"]),
    ("/users/delete", {"deleted": "3"}),
    ("/users/delete", {"deleted": True}),
    ("/users/track", {"attributes_processed": 1}),
])
def test_json_without_a_success_marker_is_unconfirmed(path, body):
    client = handler_client(lambda request: httpx.Response(201, json=body))
    with pytest.raises(UnconfirmedWrite):
        {"/subscription/status/set": lambda: client.unsubscribe_groups("g", "external_id", ["u1"]),
         "/users/delete": lambda: client.delete_profiles("external_id", ["u1"]),
         "/users/track": lambda: client.set_global_state("unsubscribed", "external_id", ["u1"])}[path]()


@pytest.mark.parametrize("body", [{"deleted": 1}, {"deleted": 0, "message": "success"}, {"message": "success"}])
def test_delete_is_confirmed_by_a_numeric_deleted_or_success(body):
    result = handler_client(lambda request: httpx.Response(200, json=body)).delete_profiles("external_id", ["u1"])
    assert result.ok == ["u1"] and result.deleted == body.get("deleted", 0)


def test_unconfirmed_write_is_not_retried_in_place():
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return html_200(request)

    with pytest.raises(UnconfirmedWrite):
        handler_client(answer).blocklist_emails([f"e{i}@x.com" for i in range(60)])
    assert len(seen) == 1
