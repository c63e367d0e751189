"""The Braze simulator against the reference in docs/braze-api.md (in-process transport)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from reconcile.sandbox.braze import BrazeSim
from reconcile.sandbox.braze_checks import Msg

NOW = 1_714_560_000.0  # 2024-05-01T10:40:00Z
AUTH = {"Authorization": "Bearer sandbox-rest-key"}


class FakeClock:
    def __init__(self, t: float = NOW):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sim(clock: FakeClock) -> BrazeSim:
    s = BrazeSim(clock=clock)
    s.add_group("g-news")
    s.add_group("g-promo")
    return s


def connect(sim: BrazeSim, headers: dict[str, str] | None = AUTH) -> httpx.Client:
    return httpx.Client(transport=sim.transport(), base_url="http://braze.test", headers=headers or {})


@pytest.fixture
def client(sim: BrazeSim) -> Iterator[httpx.Client]:
    with connect(sim) as c:
        yield c


def emails(n: int) -> list[str]:
    return [f"user{i}@example.com" for i in range(n)]


# -- auth -----------------------------------------------------------------------------------
@pytest.mark.parametrize("header", [None, "Bearer wrong-key", 'Bearer "sandbox-rest-key"', "sandbox-rest-key"])
def test_bad_or_missing_key_is_401(sim: BrazeSim, header: str | None) -> None:
    with connect(sim, {"Authorization": header} if header else None) as c:
        r = c.get("/subscription/status/get", params={"subscription_group_id": "g-news", "external_id[]": "u1"})
    assert r.status_code == 401
    assert r.json() == {"message": "Unauthorized"}


def test_key_without_the_endpoint_permission_is_403(clock: FakeClock) -> None:
    sim = BrazeSim(clock=clock, permissions={"users.track", "email.blacklist"})
    with connect(sim) as c:
        denied = c.post("/users/export/ids", json={"external_ids": ["u1"], "fields_to_export": ["email"]})
        allowed = c.post("/users/track", json={"attributes": [{"external_id": "u1", "first_name": "A"}]})
        blocklisted = c.post("/email/blocklist", json={"email": "a@example.com"})
    assert denied.status_code == 403 and denied.json()["message"] == "Access Denied"
    assert allowed.status_code == 201
    assert blocklisted.status_code == 201


def test_unknown_route_is_404(client: httpx.Client) -> None:
    assert client.get("/users/nothing").status_code == 404


# -- documented request limits ---------------------------------------------------------------
OVER_LIMIT = [
    ("POST", "/users/export/ids", {"external_ids": [f"u{i}" for i in range(51)], "fields_to_export": ["email"]},
     None, Msg.MAX_IDS_AND_ALIASES),
    ("POST", "/subscription/status/set", {"subscription_group_id": "g-news", "subscription_state": "unsubscribed",
                                          "email": emails(51)}, None, Msg.MAX_IDS),
    ("POST", "/subscription/status/set", {"subscription_group_id": "g-news", "subscription_state": "unsubscribed",
                                          "external_id": [f"u{i}" for i in range(51)]}, None, Msg.MAX_IDS_AND_ALIASES),
    ("POST", "/v2/subscription/status/set", {"subscription_groups": [
        {"subscription_group_id": "g-news", "subscription_state": "subscribed", "emails": emails(51)}]},
     None, Msg.MAX_IDS),
    ("POST", "/users/delete", {"external_ids": [f"u{i}" for i in range(51)]}, None, Msg.MAX_IDS_AND_ALIASES),
    ("POST", "/users/track", {"attributes": [{"external_id": f"u{i}"} for i in range(40)],
                              "events": [{"external_id": f"u{i}", "name": "e", "time": "2024-05-01T00:00:00Z"}
                                         for i in range(36)]}, None, "Max Input Length Exceeded"),
    ("GET", "/email/unsubscribes", None, {"start_date": "2024-01-01", "end_date": "2024-02-01", "limit": "501"},
     Msg.BAD_INT.format(name="limit", lo=1, hi=500)),
    ("POST", "/email/blocklist", {"email": emails(51)}, None, Msg.MAX_IDS),
    ("POST", "/email/blacklist", {"email": emails(51)}, None, Msg.MAX_IDS),
    ("POST", "/email/status", {"email": emails(51), "subscription_state": "unsubscribed"}, None, Msg.MAX_IDS),
    ("POST", "/users/alias/new", {"user_aliases": [{"alias_name": f"a{i}", "alias_label": "l"} for i in range(51)]},
     None, Msg.MAX_IDS_AND_ALIASES),
    ("GET", "/subscription/status/get", None, {"subscription_group_id": "g-news", "email[]": emails(51)},
     Msg.MAX_IDS),
    ("GET", "/subscription/user/status", None, {"external_id[]": "u1", "limit": "101"},
     Msg.BAD_INT.format(name="limit", lo=1, hi=100)),
]


@pytest.mark.parametrize("method,path,body,params,message", OVER_LIMIT, ids=[f"{m} {p}" for m, p, *_ in OVER_LIMIT])
def test_over_limit_requests_get_the_documented_400(client: httpx.Client, method: str, path: str, body: Any,
                                                     params: Any, message: str) -> None:
    r = client.request(method, path, json=body, params=params)
    assert r.status_code == 400
    assert r.json()["message"] == message


def test_exactly_at_the_limits_is_accepted(client: httpx.Client) -> None:
    r1 = client.post("/subscription/status/set", json={"subscription_group_id": "g-news",
                                                       "subscription_state": "unsubscribed", "email": emails(50)})
    r2 = client.post("/users/track", json={"attributes": [{"external_id": f"u{i}"} for i in range(75)]})
    r3 = client.post("/email/blocklist", json={"email": emails(50)})
    assert (r1.status_code, r2.status_code, r3.status_code) == (201, 201, 201)
    assert r2.json()["attributes_processed"] == 75


def test_track_object_limit_is_configurable(clock: FakeClock) -> None:
    with connect(BrazeSim(clock=clock, track_object_limit=50)) as c:
        r = c.post("/users/track", json={"attributes": [{"external_id": f"u{i}"} for i in range(51)]})
    assert r.status_code == 400 and r.json()["message"] == "Max Input Length Exceeded"


# -- /subscription/status/get and /subscription/user/status -----------------------------------
def seed_three(sim: BrazeSim) -> None:
    sim.add_profile(external_id="u1", email="one@example.com", groups={"g-news": "subscribed"})
    sim.add_profile(external_id="u2", email="two@example.com", groups={"g-news": "unsubscribed"})
    sim.add_profile(external_id="u3", email="three@example.com")


def test_status_get_capitalises_and_reports_unknown(sim: BrazeSim, client: httpx.Client) -> None:
    seed_three(sim)
    r = client.get("/subscription/status/get",
                   params={"subscription_group_id": "g-news", "external_id[]": ["u1", "u2", "u3", "nobody"]})
    assert r.status_code == 200
    assert r.json() == {"status": {"u1": "Subscribed", "u2": "Unsubscribed", "u3": "Unknown", "nobody": "Unknown"},
                        "message": "success"}


def test_status_get_omit_style_leaves_out_identifiers_without_profile(clock: FakeClock) -> None:
    sim = BrazeSim(clock=clock, not_found_style="omit")
    sim.add_group("g-news")
    seed_three(sim)
    with connect(sim) as c:
        r = c.get("/subscription/status/get",
                  params={"subscription_group_id": "g-news", "email[]": ["ONE@example.com", "ghost@example.com"]})
    assert r.json()["status"] == {"ONE@example.com": "Subscribed"}


def test_status_get_external_id_wins_and_email_with_phone_is_refused(sim: BrazeSim, client: httpx.Client) -> None:
    seed_three(sim)
    both = client.get("/subscription/status/get", params={"subscription_group_id": "g-news",
                                                          "external_id[]": "u2", "email[]": "one@example.com"})
    assert both.json()["status"] == {"u2": "Unsubscribed"}
    bad = client.get("/subscription/status/get", params={"subscription_group_id": "g-news",
                                                         "email[]": "one@example.com", "phone[]": "+15550100"})
    assert bad.status_code == 400 and bad.json()["message"] == Msg.EMAIL_AND_PHONE


def test_status_get_unknown_group_is_400(sim: BrazeSim, client: httpx.Client) -> None:
    seed_three(sim)
    r = client.get("/subscription/status/get", params={"subscription_group_id": "nope", "external_id[]": "u1"})
    assert r.status_code == 400


def test_user_status_documented_shape_pages_by_offset(clock: FakeClock) -> None:
    sim = BrazeSim(clock=clock, user_status_shape="documented")
    sim.add_profile(external_id="u1", groups={"g-news": "subscribed", "g-promo": "unsubscribed"})
    with connect(sim) as client:
        first = client.get("/subscription/user/status", params={"external_id[]": "u1", "limit": "1"}).json()
        second = client.get("/subscription/user/status",
                            params={"external_id[]": "u1", "limit": "1", "offset": "1"}).json()
    assert first == {"success": True, "subscription_groups": [
        {"subscription_group_id": "g-news", "subscription_status": "subscribed"}]}
    assert second["subscription_groups"] == [{"subscription_group_id": "g-promo", "subscription_status": "unsubscribed"}]


def test_user_status_users_shape_is_the_default_and_lists_profiles_sharing_an_email(clock: FakeClock) -> None:
    sim = BrazeSim(clock=clock)
    sim.add_group("g-news", name="News")
    sim.add_profile(external_id="u1", email="s@example.com", groups={"g-news": "subscribed"})
    sim.add_profile(email="S@example.com", groups={"g-news": "unsubscribed"})
    with connect(sim) as c:
        body = c.get("/subscription/user/status", params={"email[]": "s@example.com"}).json()
    assert body["message"] == "success" and body["total_count"] == 2
    assert [u["subscription_groups"][0]["status"] for u in body["users"]] == ["Subscribed", "Unsubscribed"]
    assert body["users"][0]["subscription_groups"][0] == {"id": "g-news", "name": "News", "channel": "email",
                                                           "status": "Subscribed"}


# -- /subscription/status/set (v1, v2) -------------------------------------------------------
def test_status_set_by_email_updates_every_profile_sharing_it(sim: BrazeSim, client: httpx.Client) -> None:
    a = sim.add_profile(external_id="u1", email="shared@example.com", groups={"g-news": "subscribed"})
    b = sim.add_profile(email="SHARED@example.com", groups={"g-news": "subscribed"})
    other = sim.add_profile(email="other@example.com", groups={"g-news": "subscribed"})
    r = client.post("/subscription/status/set", json={"subscription_group_id": "g-news",
                                                      "subscription_state": "unsubscribed",
                                                      "email": ["Shared@Example.com"]})
    assert (r.status_code, r.json()) == (201, {"message": "success"})
    assert [sim.group_state(x, "g-news") for x in (a, b, other)] == ["unsubscribed", "unsubscribed", "subscribed"]


def test_status_set_email_and_phone_gets_the_documented_message(sim: BrazeSim, client: httpx.Client) -> None:
    r = client.post("/subscription/status/set", json={"subscription_group_id": "g-news",
                                                      "subscription_state": "unsubscribed",
                                                      "email": ["a@example.com"], "phone": ["+15550100"]})
    assert r.status_code == 400
    assert r.json() == {"message": "Either an email address or a phone number should be provided, but not both."}


def test_status_set_v2_checks_every_group_before_applying(sim: BrazeSim, client: httpx.Client) -> None:
    bid = sim.add_profile(external_id="u1", groups={"g-news": "subscribed", "g-promo": "subscribed"})
    bad = client.post("/v2/subscription/status/set", json={"subscription_groups": [
        {"subscription_group_id": "g-news", "subscription_state": "unsubscribed", "external_ids": ["u1"]},
        {"subscription_group_id": "g-promo", "subscription_state": "maybe", "external_ids": ["u1"]}]})
    assert bad.status_code == 400 and sim.group_state(bid, "g-news") == "subscribed"
    ok = client.post("/v2/subscription/status/set", json={"subscription_groups": [
        {"subscription_group_id": "g-news", "subscription_state": "unsubscribed", "external_ids": ["u1"]},
        {"subscription_group_id": "g-promo", "subscription_state": "unsubscribed", "external_ids": ["u1"]}]})
    assert ok.status_code == 201
    assert (sim.group_state(bid, "g-news"), sim.group_state(bid, "g-promo")) == ("unsubscribed", "unsubscribed")


# -- /users/track --------------------------------------------------------------------------------
def test_track_reports_per_object_errors_and_applies_the_rest(sim: BrazeSim, client: httpx.Client) -> None:
    r = client.post("/users/track", json={"attributes": [
        {"external_id": "u1", "email_subscribe": "unsubscribed"},
        {"external_id": "u2", "email_subscribe": "nope"},
        {"external_id": "u3", "email": "not-an-email"},
        {"external_id": "u4", "subscription_groups": [{"subscription_group_id": "zzz", "subscription_state": "subscribed"}]},
        {"external_id": "u5", "subscription_groups": [{"subscription_group_id": "g-news", "subscription_state": "on"}]},
        {"first_name": "no id"},
        {"external_id": "u6", "braze_id": "b6"},
    ]})
    body = r.json()
    assert r.status_code == 201 and body["message"] == "success" and body["attributes_processed"] == 1
    assert [(e["type"], e["input_array"], e["index"]) for e in body["errors"]] == [
        ("BAD_EMAIL_SUBSCRIPTION_STATE", "attributes", 1), ("EMAIL_BAD_FORMAT", "attributes", 2),
        ("BAD_SUBSCRIPTION_GROUP_ID", "attributes", 3), ("BAD_SUBSCRIPTION_GROUP_STATE", "attributes", 4),
        (Msg.TRACK_ID_REQUIRED, "attributes", 5), (Msg.TRACK_ONE_PRIMARY, "attributes", 6)]
    assert sim.profile_by_external_id("u1").email_subscribe == "unsubscribed"
    assert sim.profile_by_external_id("u2") is None


def test_track_with_nothing_valid_is_fatal(client: httpx.Client) -> None:
    r = client.post("/users/track", json={"attributes": [{"external_id": "u1", "email_subscribe": "maybe"}]})
    assert r.status_code == 400
    assert r.json()["message"] == Msg.NO_TRACK_DATA
    assert r.json()["errors"] == [{"type": "BAD_EMAIL_SUBSCRIPTION_STATE", "input_array": "attributes", "index": 0}]
    assert client.post("/users/track", json={}).status_code == 400


def test_track_creates_profiles_unless_update_existing_only(sim: BrazeSim, client: httpx.Client) -> None:
    client.post("/users/track", json={"attributes": [
        {"external_id": "new1", "email": "n1@example.com"},
        {"external_id": "new2", "_update_existing_only": True},
        {"email": "solo@example.com", "first_name": "Solo"},
        {"email": "skip@example.com", "_update_existing_only": True},
        {"user_alias": {"alias_name": "a1", "alias_label": "crm"}},
        {"user_alias": {"alias_name": "a2", "alias_label": "crm"}, "_update_existing_only": False},
        {"braze_id": "does-not-exist"},
    ]})
    assert sim.profile_by_external_id("new1").email == "n1@example.com"
    assert sim.profile_by_external_id("new2") is None
    solo = sim.profiles_by_email("solo@example.com")
    assert len(solo) == 1 and solo[0].external_id is None and solo[0].attributes == {"first_name": "Solo"}
    assert sim.profiles_by_email("skip@example.com") == []
    aliases = [a["alias_name"] for p in sim.db.profiles.values() for a in p.user_aliases]
    assert aliases == ["a2"]
    assert len(sim.db.profiles) == 3


def test_track_email_lookup_prefers_recent_identified_profile(sim: BrazeSim, client: httpx.Client) -> None:
    older = sim.add_profile(external_id="old", email="p@example.com", updated_at=NOW - 100)
    newer = sim.add_profile(external_id="new", email="p@example.com", updated_at=NOW - 50)
    anon = sim.add_profile(email="p@example.com", updated_at=NOW - 1)
    client.post("/users/track", json={"attributes": [{"email": "P@example.com", "email_subscribe": "opted_in"}]})
    states = {p.braze_id: p.email_subscribe for p in sim.profiles_by_email("p@example.com")}
    assert states == {older: "subscribed", newer: "opted_in", anon: "subscribed"}


def test_track_unknown_primary_id_creates_a_duplicate_even_if_email_matches(sim: BrazeSim,
                                                                            client: httpx.Client) -> None:
    sim.add_profile(external_id="u1", email="dup@example.com")
    client.post("/users/track", json={"attributes": [{"external_id": "u9", "email": "dup@example.com"}]})
    assert sorted(p.external_id for p in sim.profiles_by_email("dup@example.com")) == ["u1", "u9"]


def test_track_group_change_spreads_to_profiles_sharing_the_email(sim: BrazeSim, client: httpx.Client) -> None:
    a = sim.add_profile(external_id="u1", email="fam@example.com", groups={"g-news": "subscribed"})
    b = sim.add_profile(external_id="u2", email="fam@example.com", groups={"g-news": "subscribed"})
    client.post("/users/track", json={"attributes": [{"external_id": "u1", "subscription_groups": [
        {"subscription_group_id": "g-news", "subscription_state": "unsubscribed"}]}]})
    assert sim.group_state(a, "g-news") == sim.group_state(b, "g-news") == "unsubscribed"


def test_global_unsubscribe_via_track_is_listed_and_cleared_on_resubscribe(sim: BrazeSim, client: httpx.Client,
                                                                            clock: FakeClock) -> None:
    sim.add_profile(external_id="u1", email="Out@Example.com")
    client.post("/users/track", json={"attributes": [{"external_id": "u1", "email_subscribe": "unsubscribed"}]})
    params = {"email": "out@example.com", "end_date": "2024-05-01"}
    listed = client.get("/email/unsubscribes", params=params).json()["emails"]
    assert listed == [{"email": "Out@Example.com", "unsubscribed_at": "2024-05-01T10:40:00.000Z"}]
    clock.advance(60)
    client.post("/users/track", json={"attributes": [{"external_id": "u1", "email_subscribe": "unsubscribed"}]})
    again = client.get("/email/unsubscribes", params=params).json()["emails"]
    assert again[0]["unsubscribed_at"] == "2024-05-01T10:40:00.000Z"
    client.post("/users/track", json={"attributes": [{"external_id": "u1", "email_subscribe": "subscribed"}]})
    assert client.get("/email/unsubscribes", params=params).json()["emails"] == []


def test_track_events_and_purchases_are_counted(sim: BrazeSim, client: httpx.Client) -> None:
    r = client.post("/users/track", json={
        "events": [{"external_id": "u1", "name": "opened", "time": "2024-05-01T00:00:00Z"}, {"external_id": "u1"}],
        "purchases": [{"external_id": "u1", "product_id": "p", "currency": "USD", "price": 2.5, "quantity": 2,
                       "time": "2024-05-01T00:00:00Z"}]})
    body = r.json()
    assert (body["events_processed"], body["purchases_processed"]) == (1, 1)
    assert body["errors"] == [{"type": Msg.EVENT_FIELDS, "input_array": "events", "index": 1}]
    profile = sim.profile_by_external_id("u1")
    assert profile.custom_events["opened"]["count"] == 1 and profile.total_revenue == 5.0


def test_track_rejects_malformed_nested_values_per_object(sim: BrazeSim, client: httpx.Client) -> None:
    r = client.post("/users/track", json={
        "attributes": [{"external_id": "u1", "subscription_groups": [{"subscription_group_id": ["g-news"],
                                                                      "subscription_state": "subscribed"}]},
                       {"external_id": "u1", "subscription_groups": "g-news"},
                       {"external_id": "u1", "subscription_groups": ["g-news"]},
                       {"external_id": "u1", "push_subscribe": "sometimes"}],
        "purchases": [{"external_id": "u1", "product_id": "p", "currency": "USD", "price": 1, "quantity": "two",
                       "time": "2024-05-01"}],
        "events": [{"external_id": "u1", "name": "ok", "time": "2024-05-01"}]})
    assert r.status_code == 201
    assert [e["type"] for e in r.json()["errors"]] == [
        "BAD_SUBSCRIPTION_GROUP_ID", "BAD_SUBSCRIPTION_GROUP_ARRAY", "BAD_SUBSCRIPTION_GROUP_HASH",
        "BAD_PUSH_SUBSCRIPTION_STATE", Msg.PURCHASE_FIELDS]
    assert sim.profile_by_external_id("u1").purchases == {}


# -- /users/export/ids ----------------------------------------------------------------------------
def test_export_returns_requested_fields_and_invalid_ids(sim: BrazeSim, client: httpx.Client) -> None:
    bid = sim.add_profile(external_id="u1", email="x@example.com", email_subscribe="opted_in", created_at=NOW)
    r = client.post("/users/export/ids", json={"external_ids": ["u1", "ghost"],
                                               "fields_to_export": ["external_id", "email_subscribe", "braze_id",
                                                                    "created_at", "phone"]})
    assert r.status_code == 200
    assert r.json() == {"message": "success", "invalid_user_ids": ["ghost"], "users": [
        {"external_id": "u1", "email_subscribe": "opted_in", "braze_id": bid,
         "created_at": "2024-05-01 10:40:00.000 UTC"}]}


def test_export_by_email_can_return_several_users(sim: BrazeSim, client: httpx.Client) -> None:
    sim.add_profile(external_id="u1", email="many@example.com")
    sim.add_profile(email="Many@example.com")
    r = client.post("/users/export/ids", json={"email_address": "MANY@example.com", "fields_to_export": ["email"]})
    assert sorted(u["email"] for u in r.json()["users"]) == ["Many@example.com", "many@example.com"]


@pytest.mark.parametrize("body,message", [
    ({"external_ids": ["u1"]}, Msg.FIELDS_REQUIRED),
    ({"external_ids": ["u1"], "fields_to_export": ["email", "subscription_groups"]}, Msg.BAD_FIELDS),
    ({"email_address": "a@example.com", "phone": "+15550100", "fields_to_export": ["email"]}, Msg.ONE_EXPORT_ID),
    ({"fields_to_export": ["email"]}, Msg.NO_IDENTIFIER),
])
def test_export_validation(client: httpx.Client, body: dict[str, Any], message: str) -> None:
    r = client.post("/users/export/ids", json=body)
    assert r.status_code == 400 and r.json()["message"] == message


def test_export_without_fields_returns_everything_when_not_required(clock: FakeClock) -> None:
    sim = BrazeSim(clock=clock, require_fields_to_export=False)
    sim.add_profile(external_id="u1", email="all@example.com")
    with connect(sim) as c:
        user = c.post("/users/export/ids", json={"external_ids": ["u1"]}).json()["users"][0]
    assert {"external_id", "braze_id", "email", "email_subscribe", "created_at"} <= set(user)


def test_export_charges_the_fast_class_only_without_campaign_fields(clock: FakeClock) -> None:
    sim = BrazeSim(clock=clock)
    with connect(sim) as c:
        fast = c.post("/users/export/ids", json={"external_ids": ["u"], "fields_to_export": ["email"]})
        slow = c.post("/users/export/ids", json={"external_ids": ["u"], "fields_to_export": ["campaigns_received"]})
    assert fast.headers["X-RateLimit-Limit"] == "40"
    assert slow.headers["X-RateLimit-Limit"] == "250"


# -- /users/delete and /users/alias/new ------------------------------------------------------------
def test_delete_is_asynchronous(clock: FakeClock) -> None:
    sim = BrazeSim(clock=clock, deletion_delay_seconds=30)
    sim.add_profile(external_id="u1", email="del@example.com")
    with connect(sim) as c:
        r = c.post("/users/delete", json={"external_ids": ["u1", "ghost"]})
        assert (r.status_code, r.json()["deleted"]) == (201, 1)
        assert sim.profile_by_external_id("u1") is not None
        clock.advance(29)
        assert c.post("/users/export/ids", json={"external_ids": ["u1"], "fields_to_export": ["email"]}
                      ).json()["users"] != []
        clock.advance(1)
        gone = c.post("/users/export/ids", json={"external_ids": ["u1"], "fields_to_export": ["email"]}).json()
    assert gone["users"] == [] and gone["invalid_user_ids"] == ["u1"]
    assert sim.profile_by_external_id("u1") is None


def test_delete_by_email_needs_an_unambiguous_prioritization(sim: BrazeSim, client: httpx.Client) -> None:
    sim.add_profile(external_id="u1", email="amb@example.com", updated_at=NOW - 10)
    sim.add_profile(external_id="u2", email="amb@example.com", updated_at=NOW - 5)
    sim.add_profile(email="amb@example.com", updated_at=NOW)
    ambiguous = client.post("/users/delete", json={"email_addresses": [
        {"email": "amb@example.com", "prioritization": ["identified"]}]})
    assert ambiguous.json()["deleted"] == 0 and len(sim.profiles_by_email("amb@example.com")) == 3
    chosen = client.post("/users/delete", json={"email_addresses": [
        {"email": "AMB@example.com", "prioritization": ["identified", "most_recently_updated"]}]})
    assert chosen.json()["deleted"] == 1
    assert sorted(str(p.external_id) for p in sim.profiles_by_email("amb@example.com")) == ["None", "u1"]


def test_delete_rule_that_matches_nobody_does_not_discard_candidates(sim: BrazeSim, client: httpx.Client) -> None:
    sim.add_profile(email="anon@example.com")
    r = client.post("/users/delete", json={"email_addresses": [
        {"email": "anon@example.com", "prioritization": ["identified"]}]})
    assert r.json()["deleted"] == 1
    assert sim.profiles_by_email("anon@example.com") == []


@pytest.mark.parametrize("body,message", [
    ({"email_addresses": [{"email": "a@example.com"}]}, Msg.BAD_PRIORITIZATION),
    ({"email_addresses": [{"email": "a@example.com", "prioritization": ["identified", "unidentified"]}]},
     Msg.BAD_PRIORITIZATION),
    ({"external_ids": ["u1"], "braze_ids": ["b1"]}, Msg.DELETE_ONE_TYPE),
    ({}, Msg.DELETE_ONE_TYPE),
])
def test_delete_validation(client: httpx.Client, body: dict[str, Any], message: str) -> None:
    r = client.post("/users/delete", json=body)
    assert r.status_code == 400 and r.json()["message"] == message


def test_alias_new_adds_to_existing_user_or_creates_alias_only_user(sim: BrazeSim, client: httpx.Client) -> None:
    sim.add_profile(external_id="u1")
    r = client.post("/users/alias/new", json={"user_aliases": [
        {"external_id": "u1", "alias_name": "crm-1", "alias_label": "crm"},
        {"alias_name": "lead-7", "alias_label": "crm"},
        {"external_id": "ghost", "alias_name": "x", "alias_label": "crm"}]})
    assert r.json() == {"aliases_processed": 3, "message": "success"}
    assert sim.profile_by_external_id("u1").user_aliases == [{"alias_name": "crm-1", "alias_label": "crm"}]
    assert sim.db.by_alias("lead-7", "crm") is not None and sim.db.by_alias("x", "crm") is None


# -- /email/* --------------------------------------------------------------------------------------
def test_unsubscribes_paginate_newest_first_across_three_pages(sim: BrazeSim, client: httpx.Client) -> None:
    for day in range(1, 8):
        sim.add_unsubscribe(f"u{day}@example.com", f"2024-03-0{day}T12:00:00Z")
    sim.add_unsubscribe("outside@example.com", "2024-02-20T00:00:00Z")
    params = {"start_date": "2024-03-01", "end_date": "2024-03-07", "limit": "3"}
    pages = [client.get("/email/unsubscribes", params={**params, "offset": str(o)}).json()["emails"]
             for o in (0, 3, 6)]
    assert [len(p) for p in pages] == [3, 3, 1]
    flat = [row["email"] for page in pages for row in page]
    assert flat == [f"u{d}@example.com" for d in range(7, 0, -1)]
    asc = client.get("/email/unsubscribes", params={**params, "sort_direction": "asc"}).json()["emails"]
    assert [r["email"] for r in asc] == ["u1@example.com", "u2@example.com", "u3@example.com"]
    assert pages[0][0]["unsubscribed_at"] == "2024-03-07T12:00:00.000Z"


@pytest.mark.parametrize("params,message", [
    ({"start_date": "2024-03-01"}, Msg.END_DATE_REQUIRED),
    ({"end_date": "2024-03-01"}, Msg.EMAIL_OR_START),
    ({"start_date": "2024-03-02", "end_date": "2024-03-02"}, Msg.START_NOT_BEFORE_END),
    ({"start_date": "03/01/2024", "end_date": "2024-03-02"}, Msg.BAD_DATE.format(name="start_date")),
    ({"start_date": "2024-03-01", "end_date": "2024-03-02", "sort_direction": "up"}, Msg.BAD_SORT),
    ({"start_date": "2024-03-01", "end_date": "2024-03-02", "limit": "0"}, Msg.BAD_INT.format(name="limit", lo=1, hi=500)),
])
def test_address_list_validation(client: httpx.Client, params: dict[str, str], message: str) -> None:
    for path in ("/email/unsubscribes", "/email/hard_bounces"):
        r = client.get(path, params=params)
        assert r.status_code == 400 and r.json()["message"] == message


def test_hard_bounces_email_filter_wins_over_dates(sim: BrazeSim, client: httpx.Client) -> None:
    sim.add_hard_bounce("Bounce@example.com", "2023-01-05T00:00:00Z")
    sim.add_hard_bounce("other@example.com", "2024-03-05T00:00:00Z")
    by_email = client.get("/email/hard_bounces", params={"email": "bounce@example.com", "start_date": "2024-03-01",
                                                         "end_date": "2024-03-31"}).json()
    assert by_email == {"emails": [{"email": "Bounce@example.com", "hard_bounced_at": "2023-01-05T00:00:00.000Z"}],
                        "message": "success"}
    by_date = client.get("/email/hard_bounces", params={"start_date": "2024-03-01", "end_date": "2024-03-31"}).json()
    assert [r["email"] for r in by_date["emails"]] == ["other@example.com"]


def test_blocklist_unsubscribes_every_profile_and_marks_hard_bounce(sim: BrazeSim, client: httpx.Client) -> None:
    sim.add_profile(external_id="u1", email="blk@example.com", email_subscribe="opted_in")
    sim.add_profile(email="BLK@example.com")
    assert client.post("/email/blocklist", json={"email": "Blk@Example.com"}).status_code == 201
    assert {p.email_subscribe for p in sim.profiles_by_email("blk@example.com")} == {"unsubscribed"}
    window = {"start_date": "2024-05-01", "end_date": "2024-05-02"}
    assert [r["email"] for r in client.get("/email/unsubscribes", params=window).json()["emails"]] == ["Blk@Example.com"]
    assert [r["email"] for r in client.get("/email/hard_bounces", params=window).json()["emails"]] == ["Blk@Example.com"]
    assert "blk@example.com" in sim.db.blocklist


def test_email_status_for_an_unknown_address_applies_when_a_profile_appears(sim: BrazeSim,
                                                                             client: httpx.Client) -> None:
    r = client.post("/email/status", json={"email": "later@example.com", "subscription_state": "unsubscribed"})
    assert r.status_code == 201
    client.post("/users/track", json={"attributes": [{"external_id": "u1", "email": "Later@example.com"}]})
    assert sim.profile_by_external_id("u1").email_subscribe == "unsubscribed"
    bad = client.post("/email/status", json={"email": "x@example.com", "subscription_state": "gone"})
    assert bad.status_code == 400 and bad.json()["message"] == Msg.BAD_EMAIL_STATE


# -- rate limits, headers ------------------------------------------------------------------------
def test_rate_limit_answers_429_with_headers_until_the_window_resets(clock: FakeClock) -> None:
    sim = BrazeSim(clock=clock, rate_limits={"users_track": (2, 3.0)})
    body = {"attributes": [{"external_id": "u1"}]}
    with connect(sim) as c:
        first, second, third = (c.post("/users/track", json=body) for _ in range(3))
        assert (first.status_code, second.status_code, third.status_code) == (201, 201, 429)
        assert third.headers["X-RateLimit-Limit"] == "2" and third.headers["X-RateLimit-Remaining"] == "0"
        reset = float(third.headers["X-RateLimit-Reset"])
        assert NOW < reset <= NOW + 3
        other_class = c.get("/email/unsubscribes", params={"email": "a@example.com", "end_date": "2024-05-01"})
        assert other_class.status_code == 200
        clock.t = reset
        assert c.post("/users/track", json=body).status_code == 201


ROUTE_CLASSES = [
    ("POST", "/users/export/ids", "40"), ("GET", "/subscription/status/get", "250000"),
    ("GET", "/subscription/user/status", "250000"), ("POST", "/subscription/status/set", "5000"),
    ("POST", "/v2/subscription/status/set", "5000"), ("POST", "/users/track", "3000"),
    ("POST", "/users/delete", "20000"), ("POST", "/users/alias/new", "20000"),
    ("GET", "/email/unsubscribes", "250000"), ("GET", "/email/hard_bounces", "250000"),
    ("POST", "/email/status", "250000"), ("POST", "/email/blocklist", "250000"), ("POST", "/email/blacklist", "250000"),
]


@pytest.mark.parametrize("method,path,limit", ROUTE_CLASSES, ids=[p for _, p, _ in ROUTE_CLASSES])
def test_every_route_charges_its_documented_class(client: httpx.Client, method: str, path: str, limit: str) -> None:
    body = {"fields_to_export": ["email"]} if method == "POST" else None
    r = client.request(method, path, json=body)
    assert r.headers["X-RateLimit-Limit"] == limit
    assert int(r.headers["X-RateLimit-Remaining"]) == int(limit) - 1


def test_lowercase_header_names(sim: BrazeSim) -> None:
    sim.lowercase_headers = True
    with connect(sim) as c:
        r = c.post("/email/status", json={"email": "h@example.com", "subscription_state": "subscribed"})
    names = [k.decode() for k, _ in r.headers.raw if k.lower().startswith(b"x-ratelimit")]
    assert names == ["x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"]
    assert r.headers["x-ratelimit-limit"] == "250000"


def test_v1_and_v2_status_set_share_one_limit(clock: FakeClock) -> None:
    sim = BrazeSim(clock=clock, rate_limits={"subscription_set": (1, 60.0)})
    sim.add_group("g")
    with connect(sim) as c:
        v1 = c.post("/subscription/status/set", json={"subscription_group_id": "g", "subscription_state": "subscribed",
                                                      "external_id": ["u1"]})
        v2 = c.post("/v2/subscription/status/set", json={"subscription_groups": [
            {"subscription_group_id": "g", "subscription_state": "subscribed", "external_ids": ["u1"]}]})
    assert (v1.status_code, v2.status_code) == (201, 429)


# -- persistence -----------------------------------------------------------------------------------
def test_save_and_load_round_trip_exactly(tmp_path: Any, clock: FakeClock) -> None:
    sim = BrazeSim(clock=clock, deletion_delay_seconds=100)
    sim.add_group("g-news", name="News")
    sim.add_profile(external_id="u1", email="r@example.com", groups={"g-news": "unsubscribed"},
                    user_aliases=[{"alias_name": "a", "alias_label": "l"}])
    keep = sim.add_profile(external_id="u2", email="keep@example.com")
    sim.add_unsubscribe("r@example.com", "2024-04-01T00:00:00Z")
    with connect(sim) as c:
        c.post("/email/blocklist", json={"email": "blk@example.com"})
        c.post("/email/status", json={"email": "pending@example.com", "subscription_state": "opted_in"})
        c.post("/users/track", json={"events": [{"external_id": "u1", "name": "e", "time": "2024-05-01"}]})
        c.post("/users/delete", json={"external_ids": ["u1"]})
    path = tmp_path / "braze.json"
    sim.save(path)
    loaded = BrazeSim.load(path, clock=clock)
    assert loaded.to_dict() == sim.to_dict()
    assert loaded.db.pending_deletions and loaded.profile_by_external_id("u2").braze_id == keep
    assert loaded.add_profile(external_id="u3") == sim.add_profile(external_id="u3")
    clock.advance(100)
    assert loaded.profile_by_external_id("u1") is None


def test_admin_state_route_returns_the_persisted_dict(sim: BrazeSim, client: httpx.Client) -> None:
    sim.add_profile(external_id="u1")
    assert client.get("/_admin/state").json() == sim.to_dict()
