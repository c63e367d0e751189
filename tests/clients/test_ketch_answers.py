"""The Ketch client against every answer shape the simulator can give, and write-back."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timezone
from typing import Any

import httpx
import pytest

from reconcile.clients.ketch import ErrorAnswer, KetchClient
from reconcile.clients.ketch_parse import ConsentState, SubscriptionState
from reconcile.config import KetchConfig
from reconcile.errors import ApiError, FatalApiError
from reconcile.sandbox.ketch import KetchSim
from reconcile.sandbox.server import serve

T0 = 1_700_000_000
AT0 = datetime.fromtimestamp(T0, timezone.utc)


def cfg(**kw: Any) -> KetchConfig:
    base = dict(base_url="https://global.ketchcdn.com/web/v3", organization="acme", property="web",
                environment="production", jurisdiction="caccpa", concurrency=8, requests_per_second=0,
                timeout_seconds=5.0, max_retries=2)
    return KetchConfig(**{**base, **kw})


async def _no_sleep(seconds: float) -> None:
    await asyncio.sleep(0)


def client(sim: KetchSim | None = None, transport: httpx.AsyncBaseTransport | None = None, **kw: Any) -> KetchClient:
    return KetchClient(cfg(**kw), transport=transport or sim.transport(), sleep=_no_sleep)


def answering(status: int, body: Any) -> httpx.MockTransport:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.MockTransport(lambda request: httpx.Response(status, content=content))


# == an error in a 2xx body is a failed lookup =================================================
@pytest.mark.parametrize("body", [
    {"message": "error"},
    {"error": {"code": "internal", "message": "boom", "status": 500}},
    {"organizationCode": "acme", "errorMessage": "identity space unknown"},
    {"errors": ["upstream timeout"]},
    {"error": "unavailable", "purposes": {"p": {"allowed": "true"}}},
])
@pytest.mark.parametrize("op", ["consent", "subscriptions"])
def test_a_2xx_error_body_raises_error_answer(body: dict, op: str) -> None:
    with client(transport=answering(200, body)) as c, pytest.raises(ErrorAnswer) as info:
        c.run(c.get_consent({"email": "a@x.com"}) if op == "consent" else c.get_subscriptions({"email": "a@x.com"}))
    assert isinstance(info.value, ApiError) and not isinstance(info.value, FatalApiError)
    assert info.value.status_code == 200 and "error in the body" in str(info.value)


@pytest.mark.parametrize("body", [b"", b"{}", b"null", b'{"organizationCode":"acme","identities":{"email":"a@x.com"}}'])
def test_empty_answers_stay_no_record(body: bytes) -> None:
    with client(transport=answering(200, body)) as c:
        assert c.run(c.get_consent({"email": "a@x.com"})) is None
        assert c.run(c.get_subscriptions({"email": "a@x.com"})) is None


def test_the_error_text_never_carries_an_identity() -> None:
    body = {"error": {"code": "bad", "message": "no record for Jane.Doe@example.com", "status": 404}}
    with client(transport=answering(200, body)) as c, pytest.raises(ErrorAnswer) as info:
        c.run(c.get_consent({"email": "Jane.Doe@example.com"}))
    assert "Jane.Doe" not in str(info.value) and "example.com" not in str(info.value)
    assert "bad" in str(info.value)


@pytest.mark.parametrize("style", ["message", "ios"])
def test_error_identities_are_skipped_and_reported_not_read_as_no_record(style: str) -> None:
    sim = KetchSim(error_identities=["bad@x.com"], error_style=style)
    for who in ("good@x.com", "bad@x.com"):
        sim.set_consent("email", who, {"p": True}, T0)
    errors: list[tuple[str, Exception]] = []
    with client(sim) as c:
        records = c.fetch_many("email", ["good@x.com", "bad@x.com", "none@x.com"], {"p": "consent_optin"},
                               on_error=lambda value, exc: errors.append((value, exc)))
    assert list(records) == ["good@x.com", "none@x.com"]
    assert records["good@x.com"].consent == ConsentState({"p": True}, AT0)
    assert not records["none@x.com"].has_record
    assert [v for v, _ in errors] == ["bad@x.com"] and isinstance(errors[0][1], ErrorAnswer)


def test_an_error_share_skips_exactly_those_subjects() -> None:
    sim = KetchSim(error_share=0.2)
    values = [f"u{i}@x.com" for i in range(200)]
    for v in values:
        sim.set_subscriptions("email", v, {"news": {"email": "granted"}}, {}, T0)
    failed: list[str] = []
    with client(sim) as c:
        records = c.fetch_many("email", values, on_error=lambda value, exc: failed.append(value))
    assert 20 <= len(failed) <= 60
    assert sorted(failed + list(records)) == sorted(values)
    assert all(r.subscriptions.topics == {("news", "email"): "granted"} for r in records.values())


def test_without_on_error_an_error_body_is_raised() -> None:
    sim = KetchSim(error_identities=["bad@x.com"])
    with client(sim) as c, pytest.raises(ErrorAnswer):
        c.fetch_many("email", ["a@x.com", "bad@x.com"])


# == every empty and partial shape =============================================================
@pytest.mark.parametrize("consent_empty", ["204", "empty_object"])
@pytest.mark.parametrize("subs_empty", ["204", "empty_object"])
def test_unknown_identities_are_no_record_in_every_empty_style(consent_empty: str, subs_empty: str) -> None:
    sim = KetchSim(consent_empty=consent_empty, subscriptions_empty=subs_empty)
    with client(sim) as c:
        record = c.fetch_many("email", ["x@y.z"], {"p": "consent_optin"})["x@y.z"]
    assert record.consent is None and record.subscriptions is None


def test_a_body_without_some_topic_reads_the_others() -> None:
    sim = KetchSim(hide_topics=["promo"])
    sim.set_subscriptions("email", "a@x.com", {"news": {"email": "denied"}, "promo": {"email": "granted"}},
                          {"global_unsubscribe": "denied"}, T0)
    with client(sim) as c:
        subs = c.run(c.get_subscriptions({"email": "a@x.com"}))
    assert subs == SubscriptionState({("news", "email"): "denied"}, {"global_unsubscribe": "denied"}, AT0)


def test_the_flat_topic_shape_is_read_without_a_channel() -> None:
    sim = KetchSim(topic_shape="flat")
    sim.set_subscriptions("email", "a@x.com", {"news": {"email": "granted", "sms": "denied"}}, {}, T0)
    with client(sim) as c:
        assert c.run(c.get_subscriptions({"email": "a@x.com"})).topics == {("news", None): "denied"}


def test_consent_get_always_sends_purposes() -> None:
    sim = KetchSim()
    with client(sim) as c:
        c.fetch_many("email", ["a@x.com"])  # a config that maps only topics asks for no purpose
        c.run(c.get_consent({"email": "a@x.com"}, {"email_mktg": "consent_optin"}))
    consent_calls = [call["body"] for call in sim.calls if "/consent/" in call["path"]]
    assert consent_calls[0]["purposes"] == {}
    assert consent_calls[1]["purposes"] == {"email_mktg": {"legalBasisCode": "consent_optin"}}


class Overlap(httpx.AsyncBaseTransport):
    """Records the most requests in flight at once."""

    def __init__(self, inner: httpx.MockTransport):
        self.inner, self.now, self.peak = inner, 0, 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.now += 1
        self.peak = max(self.peak, self.now)
        try:
            for _ in range(3):
                await asyncio.sleep(0)
            return await self.inner.handle_async_request(request)
        finally:
            self.now -= 1


def test_both_requests_of_one_subject_are_in_flight_together() -> None:
    transport = Overlap(KetchSim().transport())
    with client(transport=transport, concurrency=4) as c:
        c.fetch_many("email", ["a@x.com"])
    assert transport.peak == 2


def test_a_failed_request_cancels_its_sibling() -> None:
    calls: list[str] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if "/consent/" in request.url.path:
            return httpx.Response(404, json={"error": {"code": "not_found", "message": "org", "status": 404}})
        await asyncio.sleep(30)
        return httpx.Response(204)

    class Slow(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            return await handler(request)

    with client(transport=Slow()) as c, pytest.raises(FatalApiError):
        c.fetch_many("email", ["a@x.com"])
    assert len(calls) == 2


# == write-back ================================================================================
def seeded(**kw: Any) -> KetchSim:
    sim = KetchSim(**kw)
    sim.set_subscriptions("email", "a@x.com", {"news": {"email": "granted", "sms": "granted"},
                                               "promo": {"email": "granted"}, "core": {None: "granted"}},
                          {"global_unsubscribe": "denied"}, T0)
    sim.set_consent("email", "a@x.com", {"email_mktg": True, "analytics": True}, T0,
                    legal_basis={"email_mktg": "consent_optin", "analytics": "disclosure"})
    return sim


def update_bodies(sim: KetchSim, kind: str) -> list[dict]:
    return [c["body"] for c in sim.calls if c["path"].endswith(f"/{kind}/acme/update")]


@pytest.mark.parametrize("mode", ["merge", "replace"])
def test_write_back_denies_only_the_given_fields_whether_ketch_merges_or_replaces(mode: str) -> None:
    sim = seeded(update_mode=mode)
    with client(sim) as c:
        c.run(c.write_back_optout({"email": "a@x.com"}, {("news", "email"): "denied", ("promo", None): "denied"},
                                  {"email_mktg": "consent_optin"}, AT0.replace(second=5)))
    subs = sim.subscriptions_of("email", "a@x.com")
    core = {"email": "granted"} if mode == "replace" else {None: "granted", "email": "granted"}
    assert subs["topics"] == {"news": {"email": "denied", "sms": "granted"}, "promo": {"email": "denied"},
                              "core": core}
    assert subs["controls"] == {"global_unsubscribe": "denied"}
    assert sim.consent_of("email", "a@x.com")["purposes"] == {"email_mktg": False, "analytics": True}
    [consent] = update_bodies(sim, "consent")
    assert consent["purposes"] == {"email_mktg": {"allowed": "false", "legalBasisCode": "consent_optin"},
                                   "analytics": {"allowed": "true", "legalBasisCode": "disclosure"}}
    assert consent["context"] == {"source": "headless"}


def test_write_back_never_sends_the_flat_topic_shape() -> None:
    sim = seeded(topic_shape="flat")  # the read itself comes back flat
    with client(sim) as c:
        c.run(c.write_back_optout({"email": "a@x.com"}, {("news", None): "denied"}, {}, AT0))
    [body] = update_bodies(sim, "subscriptions")
    for topic, channels in body["topics"].items():
        assert "status" not in channels and all(set(v) == {"status"} for v in channels.values()), topic
    assert body["topics"]["news"] == {"email": {"status": "denied"}}


def test_a_channel_less_mapping_denies_every_channel_read_for_the_topic() -> None:
    sim = seeded()
    with client(sim) as c:
        c.run(c.write_back_optout({"email": "a@x.com"}, {("news", None): "denied", ("fresh", None): "denied"}, {},
                                  AT0))
    topics = sim.subscriptions_of("email", "a@x.com")["topics"]
    assert topics["news"] == {"email": "denied", "sms": "denied"}
    assert topics["fresh"] == {"email": "denied"}  # nothing read for it: email


def test_write_back_for_a_subject_ketch_does_not_know() -> None:
    sim = KetchSim(update_mode="replace")
    with client(sim) as c:
        c.run(c.write_back_optout({"email": "new@x.com"}, {("news", "email"): "denied"}, {"p": "consent_optin"}, AT0))
    assert sim.subscriptions_of("email", "new@x.com")["topics"] == {"news": {"email": "denied"}}
    assert sim.consent_of("email", "new@x.com")["purposes"] == {"p": False}


def test_write_back_only_purposes_reads_no_subscriptions() -> None:
    sim = seeded()
    with client(sim) as c:
        c.run(c.write_back_optout({"email": "a@x.com"}, {}, {"email_mktg": "consent_optin"}, AT0))
    paths = [call["path"].split("/", 3)[3] for call in sim.calls]
    assert paths == ["consent/acme/get", "consent/acme/update"]


def test_write_back_refuses_anything_but_an_optout() -> None:
    with client(KetchSim()) as c, pytest.raises(ValueError, match="opt-outs only"):
        c.run(c.write_back_optout({"email": "a@x.com"}, {("news", "email"): "granted"}, {}, AT0))


def test_write_back_stops_when_the_read_fails() -> None:
    sim = seeded(error_identities=["a@x.com"])
    with client(sim) as c, pytest.raises(ErrorAnswer):
        c.run(c.write_back_optout({"email": "a@x.com"}, {("news", "email"): "denied"}, {}, AT0))
    assert update_bodies(sim, "subscriptions") == []


def test_an_update_answered_with_an_error_body_fails() -> None:
    with client(transport=answering(200, {"error": {"code": "x", "message": "nope", "status": 400}})) as c, \
            pytest.raises(ErrorAnswer):
        c.run(c.update_consent({"email": "a@x.com"}, {"p": (False, "consent_optin")}, AT0))


def test_update_subscriptions_writes_a_channel_less_topic_on_email() -> None:
    sim = KetchSim()
    with client(sim) as c:
        c.run(c.update_subscriptions({"email": "a@x.com"}, {("core", None): "denied"}, {}, AT0))
    assert update_bodies(sim, "subscriptions")[0]["topics"] == {"core": {"email": {"status": "denied"}}}


def test_write_back_over_loopback_with_aiohttp() -> None:
    sim = seeded(update_mode="replace")
    with serve(sim) as server, KetchClient(cfg(base_url=server.url + "/web/v3")) as c:
        assert c.http_backend == "aiohttp"
        c.run(c.write_back_optout({"email": "a@x.com"}, {("promo", "email"): "denied"}, {}, AT0))
    topics = sim.subscriptions_of("email", "a@x.com")["topics"]
    assert topics["promo"] == {"email": "denied"} and topics["news"] == {"email": "granted", "sms": "granted"}
