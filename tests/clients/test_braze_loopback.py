"""BrazeClient against BrazeSim over real loopback HTTP (uvicorn via `serve()`)."""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta, timezone
from typing import Any, Iterator

import httpx
import pytest

from reconcile.clients.braze import BrazeClient
from reconcile.config import BrazeConfig
from reconcile.errors import AuthError, PermissionDenied, TransientApiError, UnconfirmedWrite
from reconcile.sandbox.braze import BrazeSim
from reconcile.sandbox.server import serve

from fake_time import T0, FakeTime

KEY = "sandbox-rest-key"



@pytest.fixture
def ft() -> FakeTime:
    return FakeTime()


@pytest.fixture
def sim(ft: FakeTime) -> BrazeSim:
    return BrazeSim(api_key=KEY, clock=ft.clock)


@pytest.fixture
def url(sim: BrazeSim) -> Iterator[str]:
    with serve(sim, timeout_hold_seconds=1.0) as running:
        yield running.url


def make_client(url: str, ft: FakeTime, key: str = KEY, **cfg: Any) -> BrazeClient:
    config = BrazeConfig(rest_endpoint=url, max_retries=2, backoff_cap_seconds=1.0, **cfg)
    return BrazeClient(config, key, sleep=ft.sleep, clock=ft.clock, rng=random.Random(0))


def calls(sim: BrazeSim, path: str) -> list[dict[str, Any]]:
    return [c for c in sim.calls if c["path"] == path]


def test_export_chunks_101_ids_into_3_requests(sim, url, ft):
    for i in range(101):
        sim.add_profile(external_id=f"u{i}", email=f"u{i}@x.com")
    with make_client(url, ft) as c:
        result = c.export_ids([f"u{i}" for i in range(100)] + ["ghost"], ["external_id", "email_subscribe"])
    sent = calls(sim, "/users/export/ids")
    assert len(sent) == 3 and all(len(x["body"]["external_ids"]) <= 50 for x in sent)
    assert len(result.users) == 100 and result.invalid_user_ids == ["ghost"]


def test_429_is_waited_out_until_reset_then_succeeds(sim, url, ft):
    sim.limiter.set_limit("shared", 1, 60)
    sim.add_unsubscribe("a@x.com", datetime(2023, 11, 1, tzinfo=timezone.utc))
    headers = {"Authorization": f"Bearer {KEY}"}
    params = {"start_date": "2023-10-01", "end_date": "2023-12-01"}
    assert httpx.get(f"{url}/email/unsubscribes", params=params, headers=headers).status_code == 200
    with make_client(url, ft) as c:
        rows = list(c.email_unsubscribes(date(2023, 10, 1), date(2023, 12, 1)))
    assert [r["email"] for r in rows] == ["a@x.com"]
    assert [x["status"] for x in calls(sim, "/email/unsubscribes")] == [200, 429, 200]
    assert ft.sleeps == [1_700_000_040 - T0]


@pytest.mark.parametrize("lowercase", [False, True])
def test_spent_budget_waits_for_reset_without_a_429(sim, url, ft, lowercase):
    sim.lowercase_headers = lowercase
    sim.limiter.set_limit("shared", 1, 60)
    with make_client(url, ft) as c:
        c.email_blocklist(["a@x.com"])
        c.email_blocklist(["b@x.com"])
    assert [x["status"] for x in calls(sim, "/email/blocklist")] == [201, 201]
    assert ft.sleeps == [1_700_000_040 - T0]


def test_5xx_is_retried_then_succeeds(sim, url, ft):
    sim.add_profile(external_id="u1")
    sim.faults.fail_next("/users/track", 503, times=2)
    with make_client(url, ft) as c:
        result = c.users_track([{"external_id": "u1", "email_subscribe": "unsubscribed"}])
    assert [x["status"] for x in calls(sim, "/users/track")] == [503, 503, 201]
    assert result.ok and sim.profile_by_external_id("u1").email_subscribe == "unsubscribed"
    assert len(ft.sleeps) == 2 and all(0 <= s <= 1.0 for s in ft.sleeps)


def test_retries_exhausted_raise_transient_error(sim, url, ft):
    sim.faults.fail_next("/email/blocklist", 500, times=3)
    with make_client(url, ft) as c, pytest.raises(TransientApiError) as info:
        c.email_blocklist(["a@x.com"])
    assert info.value.status_code == 500 and len(calls(sim, "/email/blocklist")) == 3
    assert "/email/blocklist" in str(info.value)


def test_timeout_is_retried_then_raises(sim, url, ft):
    sim.faults.fail_next("/email/status", 599, times=3)
    with make_client(url, ft, timeout_seconds=0.2) as c, pytest.raises(TransientApiError, match="Timeout"):
        c.email_status(["a@x.com"], "unsubscribed")
    with make_client(url, ft, timeout_seconds=0.2) as c:
        assert c.email_status(["a@x.com"], "unsubscribed").ok == ["a@x.com"]


def test_track_error_is_surfaced_for_that_item_only(sim, url, ft):
    for i in range(5):
        sim.add_profile(external_id=f"u{i}", email=f"u{i}@x.com")
    objs = [{"external_id": f"u{i}", "email_subscribe": "bogus" if i == 2 else "unsubscribed"} for i in range(5)]
    with make_client(url, ft) as c:
        result = c.users_track(objs)
    assert result.rejected == [(objs[2], "BAD_EMAIL_SUBSCRIPTION_STATE")]
    assert result.ok == [o for i, o in enumerate(objs) if i != 2] and result.requests_sent == 1
    assert sim.profile_by_external_id("u1").email_subscribe == "unsubscribed"
    assert sim.profile_by_external_id("u2").email_subscribe == "subscribed"


def test_401_is_auth_error(url, ft):
    with make_client(url, ft, key="wrong-key-123") as c, pytest.raises(AuthError) as info:
        c.users_alias_new([{"alias_name": "a", "alias_label": "b"}])
    assert info.value.status_code == 401 and "wrong-key-123" not in str(info.value)


def test_403_is_permission_denied(sim, url, ft):
    sim.permissions = {"users.export.ids"}
    with make_client(url, ft) as c, pytest.raises(PermissionDenied) as info:
        c.users_track([{"external_id": "u1"}])
    assert info.value.status_code == 403 and "/users/track" in str(info.value)


def test_unsubscribes_paginate_across_3_pages(sim, url, ft):
    start = datetime(2024, 1, 1, tzinfo=timezone.utc)
    for i in range(1100):
        sim.add_unsubscribe(f"e{i}@x.com", start + timedelta(minutes=i))
    with make_client(url, ft) as c:
        rows = list(c.email_unsubscribes(date(2024, 1, 1), date(2024, 2, 1)))
    sent = calls(sim, "/email/unsubscribes")
    assert [x["query"]["offset"] for x in sent] == [["0"], ["500"], ["1000"]]
    assert len(rows) == 1100 and len({r["email"] for r in rows}) == 1100
    assert all(r["unsubscribed_at"].tzinfo is not None for r in rows)


def test_hard_bounces_by_email(sim, url, ft):
    sim.add_hard_bounce("A@x.com", datetime(2024, 1, 5, tzinfo=timezone.utc))
    with make_client(url, ft) as c:
        rows = list(c.email_hard_bounces(date(2024, 1, 1), date(2024, 2, 1), email="a@x.com"))
    assert rows == [{"email": "A@x.com", "hard_bounced_at": datetime(2024, 1, 5, tzinfo=timezone.utc)}]


@pytest.mark.parametrize("style", ["unknown", "omit"])
def test_status_get_against_sim(ft, style):
    sim = BrazeSim(api_key=KEY, clock=ft.clock, not_found_style=style)
    sim.add_profile(external_id="u1", email="A@x.com", groups={"g": "unsubscribed"})
    sim.add_profile(external_id="u2", email="b@x.com", groups={"g": "subscribed"})
    with serve(sim) as running, make_client(running.url, ft) as c:
        by_id = c.subscription_status_get("g", external_ids=["u1", "u2", "ghost"])
        by_email = c.subscription_status_get("g", emails=["a@X.com"])
    assert by_id == {"u1": "unsubscribed", "u2": "subscribed", "ghost": "unknown"}
    assert by_email == {"a@X.com": "unsubscribed"}


@pytest.mark.parametrize("shape", ["documented", "users"])
def test_user_status_against_sim_in_both_shapes(ft, shape):
    sim = BrazeSim(api_key=KEY, clock=ft.clock, user_status_shape=shape)
    sim.add_profile(external_id="u1", groups={"g1": "unsubscribed", "g2": "subscribed"})
    sim.add_profile(external_id="u2", groups={"g1": "subscribed"})
    with serve(sim) as running, make_client(running.url, ft) as c:
        records = c.subscription_user_status(external_ids=["u1", "u2"])
    assert sorted(map(lambda r: tuple(r.values()), records)) == [
        ("u1", "g1", "unsubscribed"), ("u1", "g2", "subscribed"), ("u2", "g1", "subscribed")]


def test_writes_against_sim(sim, url, ft):
    sim.add_group("g")
    sim.add_profile(external_id="u1", email="a@x.com")
    sim.add_profile(external_id="u2", email="b@x.com")
    emails = [f"e{i}@x.com" for i in range(49)] + ["not-an-email"]
    with make_client(url, ft) as c:
        assert c.subscription_status_set("g", "unsubscribed", external_ids=["u1"]).ok == ["u1"]
        v2 = c.subscription_status_set_v2([{"subscription_group_id": "g", "subscription_state": "unsubscribed",
                                             "emails": ["b@x.com"]}])
        blocked = c.email_blocklist(emails)
        deleted = c.users_delete(external_ids=["u1"], emails=["b@x.com"], prioritization=["most_recently_updated"])
        aliases = c.users_alias_new([{"alias_name": "k1", "alias_label": "ketch"}])
    assert v2.ok and blocked.rejected[0][0] == "not-an-email" and len(blocked.ok) == 49
    assert deleted.deleted == 2 and aliases.ok and sim.profile_by_external_id("u1") is None


def test_fast_export_class_is_used_in_fast_mode(sim, url, ft):
    sim.add_profile(external_id="u1")
    with make_client(url, ft, export_fast_mode=True) as c:
        c.export_ids(["u1"], ["external_id"])
        assert c._pacer.budget("users_export_ids_fast").sent == 1


def test_a_200_html_page_is_unconfirmed_and_the_next_send_confirms(sim, url, ft):
    sim.add_profile(external_id="u1", email="a@x.com")
    sim.faults.html_next("^/users/track$")
    with make_client(url, ft) as c:
        with pytest.raises(UnconfirmedWrite) as info:
            c.set_global_state("unsubscribed", "external_id", ["u1"])
        assert info.value.status_code == 200 and sim.profile_by_external_id("u1").email_subscribe == "subscribed"
        assert c.set_global_state("unsubscribed", "external_id", ["u1"]).ok == ["u1"]
    assert sim.profile_by_external_id("u1").email_subscribe == "unsubscribed"


def test_track_cap_of_50_over_loopback(ft):
    sim = BrazeSim(api_key=KEY, clock=ft.clock, track_object_limit=50)
    for i in range(120):
        sim.add_profile(external_id=f"u{i}")
    with serve(sim) as running, make_client(running.url, ft) as c:
        result = c.set_global_state("unsubscribed", "external_id", [f"u{i}" for i in range(120)])
    assert [len(x["body"]["attributes"]) for x in calls(sim, "/users/track")] == [75, 50, 25, 45]
    assert len(result.ok) == 120 and result.rejected == []

