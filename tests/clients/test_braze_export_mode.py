"""`braze.export_fast_mode`: "auto" learns the workspace's `/users/export/ids` limit from
the first answer's `X-RateLimit-Limit`; true and false force the class."""

from __future__ import annotations

import random
from dataclasses import replace

import httpx
import pytest

from reconcile.clients.braze import BrazeClient
from reconcile.config import BrazeConfig, RateLimit
from reconcile.errors import AuthError
from reconcile.sandbox.braze import BrazeSim

from fake_time import FakeTime

KEY = "sandbox-rest-key"
FIELDS = ["external_id", "email", "email_subscribe"]


def make(transport: httpx.BaseTransport, ft: FakeTime, **cfg) -> BrazeClient:
    config = BrazeConfig(rest_endpoint="http://braze.test", **cfg)
    return BrazeClient(config, KEY, transport=transport, sleep=ft.sleep, clock=ft.clock, rng=random.Random(0))


def seeded(ft: FakeTime, **kw) -> BrazeSim:
    sim = BrazeSim(api_key=KEY, clock=ft.clock, **kw)
    for n in range(30):
        sim.add_profile(external_id=f"u{n}", email=f"u{n}@x.com")
    return sim


def classes(c: BrazeClient) -> dict[str, int]:
    return {name: u["requests"] for name, u in c.usage()["classes"].items()}


def test_auto_on_the_default_limit_uses_the_40_per_second_class_after_one_probe():
    ft = FakeTime()
    sim = seeded(ft)
    with make(sim.transport(), ft) as c:
        users = [u for e in ("u1@x.com", "u2@x.com", "u3@x.com") for u in c.export_email(e, FIELDS)]
        c.export_ids([f"u{n}" for n in range(30)], FIELDS)
        assert c.usage()["export_class"] == "users_export_ids_fast"
        assert classes(c) == {"users_export_ids": 1, "users_export_ids_fast": 3}
    assert [u["external_id"] for u in users] == ["u1", "u2", "u3"]
    assert all(call["status"] == 200 for call in sim.calls)


def test_auto_keeps_a_raised_limit_in_its_own_class():
    ft = FakeTime()
    sim = seeded(ft, rate_limits={"users_export_ids": (2500, 60.0)})
    with make(sim.transport(), ft) as c:
        for n in range(3):
            c.export_email(f"u{n}@x.com", FIELDS)
        assert c.usage()["export_class"] == "users_export_ids"
        assert classes(c) == {"users_export_ids": 3}
        assert c._pacer.budget("users_export_ids").limit == RateLimit(2500, 60.0)


def answering_with_limit(limit: str | None) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        headers = {"X-RateLimit-Limit": limit} if limit is not None else {}
        return httpx.Response(200, json={"message": "success", "users": []}, headers=headers)
    return httpx.MockTransport(handler)


@pytest.mark.parametrize("limit, expected", [("40", "users_export_ids_fast"), ("250", "users_export_ids"),
                                             (None, "users_export_ids_fast"), ("bogus", "users_export_ids_fast")])
def test_auto_reads_the_reported_limit(limit, expected):
    ft = FakeTime()
    with make(answering_with_limit(limit), ft) as c:
        c.export_email("a@x.com", FIELDS)
        c.export_email("b@x.com", FIELDS)
        assert c.usage()["export_class"] == expected
        assert c._pacer.budget("users_export_ids").limit == RateLimit(250, 60)


@pytest.mark.parametrize("mode, klass", [(True, "users_export_ids_fast"), (False, "users_export_ids")])
def test_true_and_false_force_the_class(mode, klass):
    ft = FakeTime()
    sim = seeded(ft)
    with make(sim.transport(), ft, export_fast_mode=mode) as c:
        c.export_ids(["u1"], FIELDS)
        c.export_email("u2@x.com", FIELDS)
        assert classes(c) == {klass: 2}


def test_fields_outside_the_option_always_use_the_250_per_minute_class():
    ft = FakeTime()
    sim = seeded(ft)
    with make(sim.transport(), ft) as c:
        c.export_ids(["u1"], [*FIELDS, "campaigns_received"])
        c.export_email("u2@x.com", ["canvases_received"])
        assert classes(c) == {"users_export_ids": 2} and c.usage()["export_class"] is None


def test_a_failed_probe_is_probed_again():
    ft = FakeTime()
    sim = seeded(ft)
    sim.faults.fail_next("^/users/export/ids$", 401)
    with make(sim.transport(), ft) as c:
        with pytest.raises(AuthError):
            c.export_email("u1@x.com", FIELDS)
        assert c.usage()["export_class"] is None
        c.export_email("u1@x.com", FIELDS)
        assert c.usage()["export_class"] == "users_export_ids_fast"


def test_default_config_is_auto():
    assert BrazeConfig().export_fast_mode == "auto" and replace(BrazeConfig(), export_fast_mode=True).export_fast_mode
