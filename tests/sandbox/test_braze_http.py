"""The Braze simulator over real loopback HTTP (uvicorn in a thread)."""

from __future__ import annotations

import httpx

from reconcile.sandbox.braze import BrazeSim
from reconcile.sandbox.server import serve

AUTH = {"Authorization": "Bearer loop-key"}


class FakeClock:
    def __init__(self, t: float):
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_write_then_read_over_http() -> None:
    sim = BrazeSim(api_key="loop-key")
    sim.add_group("g-news")
    sim.add_profile(external_id="u1", email="a@example.com", groups={"g-news": "subscribed"})
    sim.add_profile(email="A@example.com", groups={"g-news": "subscribed"})
    with serve(sim) as server, httpx.Client(base_url=server.url, headers=AUTH, timeout=10) as c:
        denied = httpx.get(f"{server.url}/subscription/status/get", params={"subscription_group_id": "g-news"})
        written = c.post("/subscription/status/set", json={"subscription_group_id": "g-news",
                                                           "subscription_state": "unsubscribed",
                                                           "email": "a@example.com"})
        read = c.get("/subscription/user/status", params={"email[]": "a@example.com"})
    assert denied.status_code == 401 and denied.json() == {"message": "Unauthorized"}
    assert written.status_code == 201 and written.json() == {"message": "success"}
    assert [(u["external_id"], u["subscription_groups"][0]["status"]) for u in read.json()["users"]] == [
        ("u1", "Unsubscribed"), (None, "Unsubscribed")]
    assert written.headers["content-type"] == "application/json"


def test_rate_limit_over_http_with_lowercase_headers() -> None:
    sim = BrazeSim(api_key="loop-key", clock=FakeClock(1_714_560_000.0), rate_limits={"shared": (1, 3600.0)})
    sim.lowercase_headers = True
    params = {"start_date": "2024-01-01", "end_date": "2024-05-01"}
    with serve(sim) as server, httpx.Client(base_url=server.url, headers=AUTH, timeout=10) as c:
        ok = c.get("/email/unsubscribes", params=params)
        limited = c.get("/email/hard_bounces", params=params)
    assert ok.status_code == 200 and ok.json() == {"emails": [], "message": "success"}
    assert limited.status_code == 429
    raw_names = [k for k, _ in limited.headers.raw]
    assert b"x-ratelimit-reset" in raw_names and limited.headers["x-ratelimit-remaining"] == "0"
    assert limited.headers["x-ratelimit-reset"] == "1714561200"
    assert "Rate Limited" in limited.json()["message"]
