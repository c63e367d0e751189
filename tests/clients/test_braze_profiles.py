"""user_profiles_by_email: one ProfileRef per profile sharing an address for the users[]
answer, None for the documented flat one; paging by limit (at most 100) and offset."""

from __future__ import annotations

import random
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from reconcile.clients.braze import BrazeClient
from reconcile.clients.braze_profiles import ProfileRef
from reconcile.config import BrazeConfig
from reconcile.errors import DataError, FatalApiError, PermissionDenied
from reconcile.sandbox.braze import BrazeSim, PARTNER_PERMISSIONS
from reconcile.sandbox.server import serve

from fake_time import FakeTime

KEY = "sandbox-rest-key"


def make_client(transport: httpx.BaseTransport | None = None, url: str = "https://rest.example.braze.com") -> BrazeClient:
    ft = FakeTime()
    return BrazeClient(BrazeConfig(rest_endpoint=url, max_retries=1), KEY, transport=transport, sleep=ft.sleep,
                       clock=ft.clock, rng=random.Random(0))


def status_calls(sim: BrazeSim) -> list[dict[str, Any]]:
    return [c for c in sim.calls if c["path"] == "/subscription/user/status"]


def seed_shared(sim: BrazeSim) -> None:
    sim.add_group("g1")
    sim.add_group("g2")
    sim.add_profile(external_id="u1", email="s@x.com", groups={"g1": "unsubscribed", "g2": "subscribed"})
    sim.add_profile(email="S@X.com", groups={"g1": "subscribed"})
    sim.add_profile(external_id="u3", email="other@x.com")


def test_users_shape_gives_one_ref_per_profile_sharing_the_address():
    sim = BrazeSim(api_key=KEY)
    seed_shared(sim)
    refs = make_client(sim.transport()).user_profiles_by_email(["s@x.com", "other@x.com", "nobody@x.com"])
    assert sorted(refs, key=lambda r: (r.email, r.external_id or "")) == [
        ProfileRef("other@x.com", "u3", {}),
        ProfileRef("s@x.com", None, {"g1": "subscribed"}, channels={"g1": "email"}),
        ProfileRef("s@x.com", "u1", {"g1": "unsubscribed", "g2": "subscribed"}, channels={"g1": "email", "g2": "email"}),
    ]
    query = status_calls(sim)[0]["query"]
    assert query["email[]"] == ["s@x.com", "other@x.com", "nobody@x.com"] and query["limit"] == ["100"]


def test_documented_flat_shape_returns_none_after_one_request():
    sim = BrazeSim(api_key=KEY, user_status_shape="documented")
    seed_shared(sim)
    emails = [f"e{i}@x.com" for i in range(120)]
    assert make_client(sim.transport()).user_profiles_by_email(["s@x.com", *emails]) is None
    assert len(status_calls(sim)) == 1


def test_pages_users_by_offset_and_chunks_50_addresses():
    sim = BrazeSim(api_key=KEY)
    sim.add_group("g")
    for i in range(130):
        sim.add_profile(external_id=f"u{i}", email="many@x.com", groups={"g": "subscribed"})
    extra = [f"e{i}@x.com" for i in range(60)]
    for email in extra:
        sim.add_profile(email=email)
    refs = make_client(sim.transport()).user_profiles_by_email(["many@x.com", *extra])
    assert len(refs) == 190 and len({r.external_id for r in refs if r.email == "many@x.com"}) == 130
    pages = [(len(c["query"]["email[]"]), c["query"]["offset"][0], c["query"]["limit"][0]) for c in status_calls(sim)]
    assert pages == [(50, "0", "100"), (50, "100", "100"), (11, "0", "100")]


def test_users_without_an_email_are_attributed_by_asking_again_per_address():
    asked: list[list[str]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        emails = parse_qs(request.url.query.decode())["email[]"]
        asked.append(emails)
        users = [{"external_id": f"x-{e}", "email": None, "subscription_groups": [{"id": "g", "status": "Subscribed"}]}
                 for e in emails]
        return httpx.Response(200, json={"message": "success", "users": users, "total_count": len(users)})

    refs = make_client(httpx.MockTransport(answer)).user_profiles_by_email(["a@x.com", "b@x.com", "c@x.com"])
    assert sorted((r.email, r.external_id) for r in refs) == [("a@x.com", "x-a@x.com"), ("b@x.com", "x-b@x.com"),
                                                               ("c@x.com", "x-c@x.com")]
    assert asked[0] == ["a@x.com", "b@x.com", "c@x.com"] and all([e] in asked for e in ("a@x.com", "b@x.com", "c@x.com"))


def test_user_not_found_for_one_address_does_not_hide_the_others():
    def answer(request: httpx.Request) -> httpx.Response:
        emails = parse_qs(request.url.query.decode())["email[]"]
        if "ghost@x.com" in emails:
            return httpx.Response(400, json={"message": "User not found"})
        users = [{"external_id": None, "email": e, "subscription_groups": []} for e in emails]
        return httpx.Response(200, json={"message": "success", "users": users})

    refs = make_client(httpx.MockTransport(answer)).user_profiles_by_email(["a@x.com", "ghost@x.com", "b@x.com"])
    assert sorted(r.email for r in refs) == ["a@x.com", "b@x.com"]


@pytest.mark.parametrize("body", [{"message": "success"}, {"users": "none"}, {"users": ["x"]}, "<html></html>"])
def test_malformed_answer_is_fatal_and_names_the_field(body):
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=body) if isinstance(body, dict) else httpx.Response(200, content=body)

    with pytest.raises(FatalApiError, match="users"):
        make_client(httpx.MockTransport(answer)).user_profiles_by_email(["a@x.com"])


def test_partner_key_lacks_subscription_groups_get():
    sim = BrazeSim(api_key=KEY, permissions=PARTNER_PERMISSIONS)
    with pytest.raises(PermissionDenied):
        make_client(sim.transport()).user_profiles_by_email(["a@x.com"])


@pytest.mark.parametrize("shape, expected", [("users", 2), ("documented", None)])
def test_both_shapes_over_loopback(shape, expected):
    sim = BrazeSim(api_key=KEY, user_status_shape=shape)
    seed_shared(sim)
    with serve(sim) as running, make_client(url=running.url) as client:
        refs = client.user_profiles_by_email(["s@X.com"])
    assert (len(refs) if refs is not None else None) == expected
    assert refs is None or {r.email for r in refs} == {"s@X.com"}


@pytest.mark.parametrize("shape", ["users", "documented"])
def test_by_external_id_every_group_of_fifty_users_in_one_request_or_none_for_the_flat_answer(shape):
    sim = BrazeSim(api_key=KEY, user_status_shape=shape)
    seed_shared(sim)
    for i in range(60):
        sim.add_profile(external_id=f"x{i}", email=f"x{i}@x.com", groups={"g2": "unsubscribed"})
    client = make_client(sim.transport())
    refs = client.user_profiles_by_external_id(["u1", "u3", "ghost", *[f"x{i}" for i in range(60)]])
    if shape == "documented":
        assert refs is None and len(status_calls(sim)) == 1
        assert client.user_profiles_by_external_id(["u1"]) is None and len(status_calls(sim)) == 1, \
            "a flat answer is remembered: never asked again"
        assert client.user_profiles_by_email(["s@x.com"]) is None and len(status_calls(sim)) == 1
        return
    assert len(status_calls(sim)) == 2  # 63 ids: 50, then 13
    by_id = {r.external_id: r for r in refs}
    assert set(by_id) == {"u1", "u3", *[f"x{i}" for i in range(60)]}, "an id without a profile is absent"
    assert by_id["u1"] == ProfileRef("s@x.com", "u1", {"g1": "unsubscribed", "g2": "subscribed"},
                                     channels={"g1": "email", "g2": "email"})
    assert by_id["x7"].groups == {"g2": "unsubscribed"} and by_id["u3"].groups == {}


@pytest.mark.parametrize("status", ["Opted_in", "", None, 3])
def test_an_undocumented_group_status_is_malformed_never_read_as_unknown(status):
    def answer(request: httpx.Request) -> httpx.Response:
        user = {"external_id": "u1", "email": "a@x.com", "subscription_groups": [{"id": "g", "status": status}]}
        return httpx.Response(200, json={"message": "success", "users": [user]})

    with pytest.raises(DataError, match="refusing to guess"):
        make_client(httpx.MockTransport(answer)).user_profiles_by_email(["a@x.com"])
