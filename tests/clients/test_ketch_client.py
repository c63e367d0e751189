"""The Ketch client: response parsing, request shape, retries, fetch_many, loopback HTTP."""

from __future__ import annotations

import base64
import asyncio
import json
import random
from pathlib import Path
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_profiles import examples

from reconcile.clients.ketch import KetchClient, normalize_base_url
from reconcile.clients.resilience import retry_after_seconds
from reconcile.clients.ketch_parse import (ConsentState, KetchRecord, SubscriptionState, load_body,
                                           parse_collected_at, parse_consent, parse_subscriptions)
from reconcile.config import KetchConfig
from reconcile.errors import (ApiError, AuthError, DataError, FatalApiError, NotFound, PermissionDenied,
                              RateLimited, TransientApiError)
from reconcile.sandbox.ketch import KetchSim
from reconcile.sandbox.server import serve

T0 = 1_700_000_000
UTC = timezone.utc
AT0 = datetime.fromtimestamp(T0, UTC)


class FakeTime:
    """A clock for client and simulator whose sleep records the wait and advances time."""

    def __init__(self, now: float = T0):
        self.now = now
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        await asyncio.sleep(0)  # let other tasks run while this one "waits"
        self.now += seconds


def cfg(**kw: Any) -> KetchConfig:
    base = dict(base_url="https://global.ketchcdn.com/web/v3", organization="acme", property="web",
                environment="production", jurisdiction="caccpa", concurrency=8, requests_per_second=0,
                timeout_seconds=5.0, max_retries=3)
    return KetchConfig(**{**base, **kw})


def client_for(sim: KetchSim | None = None, *, transport: httpx.AsyncBaseTransport | None = None,
               time_: FakeTime | None = None, **kw: Any) -> KetchClient:
    time_ = time_ or FakeTime()
    return KetchClient(cfg(**kw), transport=transport or sim.transport(), sleep=time_.sleep, clock=time_)


def answering(status: int, body: Any = None, headers: dict[str, str] | None = None,
              seen: list[httpx.Request] | None = None) -> httpx.MockTransport:
    """A transport answering every request the same way."""

    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        content = body if isinstance(body, bytes) else (b"" if body is None else json.dumps(body).encode())
        return httpx.Response(status, content=content, headers=headers or {})

    return httpx.MockTransport(handler)


def scripted(*responses: httpx.Response | Exception) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    """A transport answering with the given responses in order (exceptions are raised)."""
    seen: list[httpx.Request] = []
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        item = queue.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    return httpx.MockTransport(handler), seen


def consent_body(purposes: Any, **extra: Any) -> bytes:
    return json.dumps({"organizationCode": "acme", "purposes": purposes, **extra}).encode()


# == parsing: consent ==========================================================================
@pytest.mark.parametrize("purposes,expected", [
    ({"a": {"allowed": "true"}, "b": {"allowed": "false"}}, {"a": True, "b": False}),
    ({"a": {"allowed": "true", "legalBasisCode": "consent_optin"}}, {"a": True}),
    ({"a": "true", "b": "false"}, {"a": True, "b": False}),
    ({"a": {"allowed": True}, "b": {"allowed": False}}, {"a": True, "b": False}),
    ({"a": True, "b": False}, {"a": True, "b": False}),
    ({"a": " TRUE ", "b": "False"}, {"a": True, "b": False}),
    ({"a": {"allowed": "true"}, "b": "false"}, {"a": True, "b": False}),
    ({"a": {"legalBasisCode": "disclosure"}, "b": {"allowed": "true"}}, {"b": True}),
    ({"a": None, "b": "true"}, {"b": True}),
])
def test_consent_purpose_shapes(purposes: Any, expected: dict[str, bool]) -> None:
    state = parse_consent(load_body(consent_body(purposes, collectedAt=T0), "consent/get"))
    assert state == ConsentState(expected, AT0)


@pytest.mark.parametrize("content", [
    b"", b"   ", b"null", b"{}", b'{"organizationCode":"acme"}', b'{"purposes":null}', b'{"purposes":{}}',
    b'{"organizationCode":"acme","vendors":["1"],"collectedAt":1700000000}',
])
def test_consent_without_values_is_no_record(content: bytes) -> None:
    assert parse_consent(load_body(content, "consent/get")) is None


def test_echoed_get_request_is_no_record() -> None:
    request = {"organizationCode": "acme", "propertyCode": "web", "identities": {"email": "a@x.com"},
               "purposes": {"email_mktg": {"legalBasisCode": "consent_optin"}}}
    assert parse_consent(request) is None


@pytest.mark.parametrize("content,field", [
    (consent_body({"a": {"allowed": "maybe"}}), "purposes.a.allowed"),
    (consent_body({"a": "yes please"}), "purposes.a"),
    (consent_body({"a": 7}), "purposes.a"),
    (consent_body({"a": [1]}), "purposes.a"),
    (consent_body(["a"]), "purposes"),
    (consent_body("a"), "purposes"),
    (consent_body({"a": "true"}, collectedAt="last tuesday"), "collectedAt"),
    (consent_body({"a": "true"}, collectedAt=True), "collectedAt"),
    (b"[1, 2]", "body"),
    (b"<html>oops</html>", "body"),
])
def test_malformed_consent_raises_data_error_naming_the_field(content: bytes, field: str) -> None:
    with pytest.raises(DataError, match=rf"consent/get: {field}\b"):
        parse_consent(load_body(content, "consent/get"))


# == parsing: collectedAt =======================================================================
@pytest.mark.parametrize("value,expected", [
    (T0, AT0),
    (T0 + 0.5, AT0 + timedelta(seconds=0.5)),
    (str(T0), AT0),
    (" 1700000000.25 ", AT0 + timedelta(seconds=0.25)),
    (T0 * 1000, AT0),
    ("2023-11-14T22:13:20Z", AT0),
    ("2023-11-14T23:13:20+01:00", AT0),
    ("2023-11-14T22:13:20", AT0),
    ("2023-11-14T22:13:20.000Z", AT0),
    (None, None),
    ("", None),
])
def test_collected_at_forms(value: Any, expected: datetime | None) -> None:
    got = parse_collected_at(value)
    assert got == expected
    assert got is None or got.tzinfo is not None and got.utcoffset() == timedelta(0)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 10 ** 30, {"s": 1}, "2023-13-45"])
def test_collected_at_rejects_nonsense(value: Any) -> None:
    with pytest.raises(DataError, match="collectedAt"):
        parse_collected_at(value)


# == parsing: subscriptions ====================================================================
@pytest.mark.parametrize("topics,expected", [
    ({"news": {"email": {"status": "granted"}, "sms": {"status": "denied"}}},
     {("news", "email"): "granted", ("news", "sms"): "denied"}),
    ({"coreprodserv": {"status": "granted"}}, {("coreprodserv", None): "granted"}),
    ({"a": {"status": "denied"}, "b": {"email": {"status": "granted"}}},
     {("a", None): "denied", ("b", "email"): "granted"}),
    ({"a": "granted", "b": {"sms": "denied"}}, {("a", None): "granted", ("b", "sms"): "denied"}),
    ({"a": {"status": "GRANTED"}}, {("a", None): "granted"}),
    ({"a": {"email": {"status": "true"}}, "b": {"status": False}}, {("a", "email"): "granted", ("b", None): "denied"}),
    ({"a": {"status": "denied", "email": {"status": "granted"}}}, {("a", None): "denied", ("a", "email"): "granted"}),
    ({"a": {"status": {"status": "granted"}}}, {("a", "status"): "granted"}),
    ({"a": {"email": {"status": None}}, "b": None}, {}),
])
def test_topic_shapes(topics: Any, expected: dict) -> None:
    body = {"topics": topics, "controls": {"global_unsubscribe": {"status": "denied", "impact": 1}},
            "collectedAt": T0}
    state = parse_subscriptions(body)
    assert state == SubscriptionState(expected, {"global_unsubscribe": "denied"}, AT0)


def test_controls_alone_are_a_record_and_bare_statuses_are_read() -> None:
    state = parse_subscriptions({"controls": {"global_unsubscribe": "granted"}})
    assert state == SubscriptionState({}, {"global_unsubscribe": "granted"}, None)


@pytest.mark.parametrize("body", [None, {}, {"topics": {}}, {"topics": None, "controls": {}},
                                  {"organizationCode": "acme", "identities": {"email": "a@x.com"}}])
def test_subscriptions_without_values_are_no_record(body: Any) -> None:
    assert parse_subscriptions(body) is None


@pytest.mark.parametrize("body,field", [
    ({"topics": {"news": {"email": {"status": "maybe"}}}}, "topics.news.email.status"),
    ({"topics": {"news": {"status": "on"}}}, "topics.news.status"),
    ({"topics": {"news": {"email": 5}}}, "topics.news.email"),
    ({"topics": {"news": 5}}, "topics.news"),
    ({"topics": ["news"]}, "topics"),
    ({"controls": {"gu": {"status": "engaged"}}}, "controls.gu.status"),
    ({"controls": "gu"}, "controls"),
    ({"topics": {"n": "granted"}, "collectedAt": "soon"}, "collectedAt"),
])
def test_malformed_subscriptions_raise_data_error_naming_the_field(body: Any, field: str) -> None:
    with pytest.raises(DataError, match=rf"subscriptions/get: {field}\b"):
        parse_subscriptions(body)


def test_record_has_record() -> None:
    assert not KetchRecord("a", None, None).has_record
    assert KetchRecord("a", ConsentState({"p": True}, None), None).has_record
    assert KetchRecord("a", None, SubscriptionState({}, {"c": "denied"}, None)).has_record


@pytest.mark.parametrize("raw,expected", [("3", 3.0), ("0.5", 0.5), ("-2", 0.0), ("99999", 300.0), ("soon", None)])
def test_retry_after_seconds(raw: str, expected: float | None) -> None:
    assert retry_after_seconds(httpx.Response(429, headers={"Retry-After": raw}).headers, cap=300) == expected


def test_retry_after_http_date() -> None:
    when = datetime.now(UTC) + timedelta(seconds=30)
    got = retry_after_seconds({"Retry-After": when.strftime("%a, %d %b %Y %H:%M:%S GMT")}, cap=300)
    assert got is not None and 25 <= got <= 31


@pytest.mark.parametrize("url,expected", [
    ("https://global.ketchcdn.com/web/v3", "https://global.ketchcdn.com/web/v3"),
    ("https://global.ketchcdn.com/web/v2/", "https://global.ketchcdn.com/web/v2"),
    ("http://127.0.0.1:8080", "http://127.0.0.1:8080/web/v2"),
])
def test_base_url_is_normalized_like_the_tag(url: str, expected: str) -> None:
    assert normalize_base_url(url) == expected


# == requests against the simulator ============================================================
@pytest.fixture
def sim() -> KetchSim:
    s = KetchSim(clock=FakeTime())
    s.set_consent("email", "jane@example.com", {"email_mktg": True, "analytics": False}, T0 - 100)
    s.set_subscriptions("email", "jane@example.com", {"news": {"email": "granted", "sms": "denied"}},
                        {"global_unsubscribe": "denied"}, T0 - 50)
    return s


def test_get_consent_and_subscriptions(sim: KetchSim) -> None:
    with client_for(sim) as client:
        consent = client.run(client.get_consent({"email": "Jane@Example.com"}, {"email_mktg": "consent_optin"}))
        subs = client.run(client.get_subscriptions({"email": "jane@example.com"}))
    assert consent == ConsentState({"email_mktg": True, "analytics": False}, AT0 - timedelta(seconds=100))
    assert subs == SubscriptionState({("news", "email"): "granted", ("news", "sms"): "denied"},
                                     {"global_unsubscribe": "denied"}, AT0 - timedelta(seconds=50))


def test_request_shape(sim: KetchSim) -> None:
    seen: list[httpx.Request] = []
    inner = sim.transport()

    def spy(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return inner.handle_request(request)

    with client_for(transport=httpx.MockTransport(spy)) as client:
        client.run(client.get_consent({"email": "jane@example.com"}, {"email_mktg": "consent_optin"}))
    request = seen[0]
    assert request.method == "POST"
    assert str(request.url) == "https://global.ketchcdn.com/web/v3/consent/acme/get"
    assert request.headers["accept"] == "application/json"
    assert request.headers["content-type"] == "application/json"
    assert "authorization" not in request.headers
    assert json.loads(request.content) == {
        "organizationCode": "acme", "propertyCode": "web", "environmentCode": "production",
        "jurisdictionCode": "caccpa", "identities": {"email": "jane@example.com"},
        "purposes": {"email_mktg": {"legalBasisCode": "consent_optin"}}}


@pytest.mark.parametrize("empty_style", ["204", "empty_object"])
def test_unknown_identity_is_no_record(empty_style: str) -> None:
    sim = KetchSim(empty_style=empty_style)
    with client_for(sim) as client:
        assert client.run(client.get_consent({"email": "x@y.z"}, {"email_mktg": "consent_optin"})) is None
        assert client.run(client.get_subscriptions({"email": "x@y.z"})) is None


def test_a_server_that_echoes_the_request_yields_no_record() -> None:
    def echo(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=request.content)

    with client_for(transport=httpx.MockTransport(echo)) as client:
        assert client.run(client.get_consent({"email": "a@x.com"}, {"email_mktg": "consent_optin"})) is None
        assert client.run(client.get_subscriptions({"email": "a@x.com"})) is None


def test_bare_purposes_and_flat_topics_from_the_simulator() -> None:
    sim = KetchSim(purpose_shape="bare", topic_shape="flat")
    sim.set_consent("email", "a@x.com", {"p": False}, T0)
    sim.set_subscriptions("email", "a@x.com", {"news": {"email": "granted"}}, {}, T0)
    with client_for(sim) as client:
        record = client.fetch_many("email", ["a@x.com"])["a@x.com"]
    assert record.consent == ConsentState({"p": False}, AT0)
    assert record.subscriptions == SubscriptionState({("news", None): "granted"}, {}, AT0)


def test_updates_round_trip_through_the_simulator() -> None:
    sim = KetchSim()
    ids = {"email": "a@x.com"}
    with client_for(sim) as client:
        client.run(client.update_consent(ids, {"email_mktg": (False, "consent_optin")}, AT0))
        client.run(client.update_subscriptions(ids, {("news", "email"): "denied", ("core", None): "granted"},
                                               {"global_unsubscribe": "granted"}, AT0 + timedelta(seconds=1)))
        client.run(client.invoke_right(ids, "erasure", {"email": "a@x.com", "firstName": "A"}, AT0))
        again = client.fetch_many("email", ["a@x.com"])["a@x.com"]
    assert sim.consent_of("email", "a@x.com") == {"purposes": {"email_mktg": False}, "collected_at": T0}
    assert sim.subscriptions_of("email", "a@x.com") == {
        "topics": {"news": {"email": "denied"}, "core": {"email": "granted"}},
        "controls": {"global_unsubscribe": "granted"}, "collected_at": T0 + 1}
    assert sim.calls[0]["body"]["purposes"] == {"email_mktg": {"allowed": "false", "legalBasisCode": "consent_optin"}}
    assert sim.rights[0]["rightCode"] == "erasure" and sim.rights[0]["invokedAt"] == T0
    assert again.consent == ConsentState({"email_mktg": False}, AT0)


def test_update_accepts_any_success_answer() -> None:
    for transport in (answering(204), answering(200, {}), answering(200, b"ok"), answering(202, [1])):
        with client_for(transport=transport) as client:
            client.run(client.update_consent({"email": "a@x.com"}, {"p": (True, "consent_optin")}, AT0))


def test_mixing_flat_and_channel_statuses_for_one_topic_is_refused() -> None:
    with client_for(transport=answering(204)) as client, pytest.raises(ValueError, match="news"):
        client.run(client.update_subscriptions({"email": "a@x.com"}, {("news", None): "denied",
                                                                      ("news", "email"): "granted"}, {}, AT0))


# == retries ===================================================================================
def test_429_then_success_honours_retry_after() -> None:
    time_ = FakeTime(T0 + 3)  # the simulator's 10 s window started at T0
    sim = KetchSim(clock=time_, rate_limit=(1, 10.0))
    sim.set_consent("email", "a@x.com", {"p": True}, T0)
    with client_for(sim, time_=time_) as client:
        record = client.fetch_many("email", ["a@x.com"])["a@x.com"]
    assert time_.waits == [7.0]
    assert record.consent == ConsentState({"p": True}, AT0)
    assert [c["status"] for c in sim.calls] == [200, 429, 204]


def test_retry_after_pauses_the_other_requests_too() -> None:
    time_ = FakeTime()
    transport, _ = scripted(httpx.Response(429, headers={"Retry-After": "4"}), *[httpx.Response(204)] * 10)
    with client_for(transport=transport, time_=time_, concurrency=4) as client:
        client.fetch_many("email", [f"u{i}@x.com" for i in range(5)])
    assert time_.waits.count(4.0) >= 2  # the limited request and at least one other waited it out


def test_5xx_is_retried_with_capped_jittered_backoff() -> None:
    time_ = FakeTime()
    sim = KetchSim(clock=time_)
    sim.set_consent("email", "a@x.com", {"p": True}, T0)
    sim.faults.fail_next(r"/consent/", 500, times=1)
    sim.faults.fail_next(r"/consent/", 503, times=2)
    with client_for(sim, time_=time_, max_retries=3) as client:
        consent = client.run(client.get_consent({"email": "a@x.com"}))
    assert consent == ConsentState({"p": True}, AT0)
    assert len(time_.waits) == 3
    for attempt, wait in enumerate(time_.waits):  # full jitter under the cap
        assert 0 <= wait <= min(10.0, 0.25 * 2 ** attempt)


def test_timeouts_and_connection_errors_are_retried() -> None:
    time_ = FakeTime()
    request = httpx.Request("POST", "https://x")
    transport, seen = scripted(httpx.ReadTimeout("slow", request=request), httpx.ConnectError("refused"),
                               httpx.Response(200, content=consent_body({"p": "true"})))
    with client_for(transport=transport, time_=time_) as client:
        assert client.run(client.get_consent({"email": "a@x.com"})) == ConsentState({"p": True}, None)
    assert len(seen) == 3 and len(time_.waits) == 2


def test_simulated_timeout_is_retried() -> None:
    sim = KetchSim()
    sim.faults.fail_next("/subscriptions/", 599)
    with client_for(sim) as client:
        assert client.run(client.get_subscriptions({"email": "a@x.com"})) is None
    assert len(sim.calls) == 1  # the timed-out request never reached the log


def test_5xx_exhaustion_raises_transient_error() -> None:
    sim = KetchSim()
    sim.faults.error_rate = 1.0
    with client_for(sim, max_retries=2) as client, pytest.raises(TransientApiError) as info:
        client.run(client.get_consent({"email": "a@x.com"}))
    assert not isinstance(info.value, RateLimited)
    assert info.value.status_code in (500, 502, 503) and "3 attempt" in str(info.value)
    assert len(sim.calls) == 3


def test_429_exhaustion_raises_rate_limited_with_reset_time() -> None:
    transport = answering(429, {"error": {"code": "too_many_requests", "message": "slow down", "status": 429}},
                          {"Retry-After": "2"})
    time_ = FakeTime()
    with client_for(transport=transport, time_=time_, max_retries=2) as client, pytest.raises(RateLimited) as info:
        client.run(client.get_subscriptions({"email": "a@x.com"}))
    assert time_.waits == [2.0, 2.0]
    assert info.value.reset_at is not None and info.value.status_code == 429
    assert "too_many_requests: slow down" in str(info.value)


def test_timeout_exhaustion_raises_transient_error() -> None:
    sim = KetchSim()
    sim.faults.timeout_rate = 1.0
    with client_for(sim, max_retries=1) as client, pytest.raises(TransientApiError, match="ReadTimeout"):
        client.run(client.get_consent({"email": "a@x.com"}))


def test_unknown_org_raises_not_found_without_retrying() -> None:
    sim = KetchSim(organization="acme")
    time_ = FakeTime()
    with client_for(sim, time_=time_, organization="nope") as client, pytest.raises(NotFound) as info:
        client.run(client.get_consent({"email": "a@x.com"}))
    assert info.value.status_code == 404 and time_.waits == [] and len(sim.calls) == 1
    assert "https://global.ketchcdn.com/web/v3/consent/nope/get" in str(info.value)
    assert "not_found" in str(info.value)


@pytest.mark.parametrize("status,error", [(401, AuthError), (403, PermissionDenied), (400, FatalApiError),
                                          (422, FatalApiError)])
def test_other_4xx_are_fatal_and_typed(status: int, error: type[FatalApiError]) -> None:
    seen: list[httpx.Request] = []
    with client_for(transport=answering(status, {"error": {"code": "x", "message": "no", "status": status}},
                                        seen=seen)) as client, pytest.raises(error) as info:
        client.run(client.get_consent({"email": "a@x.com"}))
    assert type(info.value) is error and len(seen) == 1


def test_error_messages_carry_a_sanitized_url() -> None:
    forbidden = {"error": {"code": "forbidden", "message": "no", "status": 403}}  # Ketch's own shape: not the edge
    with client_for(transport=answering(403, forbidden), base_url="https://user:hunter2@ketch.test/web/v3") as client, \
            pytest.raises(PermissionDenied) as info:
        client.run(client.get_consent({"email": "a@x.com"}))
    assert "hunter2" not in str(info.value) and "https://ketch.test/web/v3/consent/acme/get" in str(info.value)


def test_malformed_success_body_raises_data_error() -> None:
    with client_for(transport=answering(200, {"purposes": {"p": {"allowed": "perhaps"}}})) as client, \
            pytest.raises(DataError, match="purposes.p.allowed"):
        client.run(client.get_consent({"email": "a@x.com"}))


# == fetch_many ================================================================================
class InFlight(httpx.AsyncBaseTransport):
    """Wraps a transport, yielding to the loop mid-request and recording the peak in flight."""

    def __init__(self, inner: httpx.MockTransport, seed: int = 1):
        self.inner, self.now, self.peak, self.total = inner, 0, 0, 0
        self.rng = random.Random(seed)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.now += 1
        self.total += 1
        self.peak = max(self.peak, self.now)
        try:
            for _ in range(self.rng.randint(1, 4)):
                await asyncio.sleep(0)
            return await self.inner.handle_async_request(request)
        finally:
            self.now -= 1


def seeded_sim(n: int) -> KetchSim:
    sim = KetchSim()
    for i in range(0, n, 3):
        sim.set_consent("email", f"u{i}@x.com", {"email_mktg": i % 2 == 0}, T0 + i)
    for i in range(0, n, 5):
        sim.set_subscriptions("email", f"u{i}@x.com", {"news": {"email": "denied" if i % 2 else "granted"}},
                              {"global_unsubscribe": "denied"}, T0 + i)
    return sim


def check_records(records: dict[str, KetchRecord], n: int) -> None:
    assert list(records) == [f"u{i}@x.com" for i in range(n)]
    for i in range(n):
        rec = records[f"u{i}@x.com"]
        assert rec.identity == f"u{i}@x.com"
        expect_consent = ConsentState({"email_mktg": i % 2 == 0}, AT0 + timedelta(seconds=i)) if i % 3 == 0 else None
        assert rec.consent == expect_consent
        if i % 5 == 0:
            assert rec.subscriptions.topics == {("news", "email"): "denied" if i % 2 else "granted"}
        else:
            assert rec.subscriptions is None
        assert rec.has_record == (i % 3 == 0 or i % 5 == 0)


@pytest.mark.parametrize("concurrency", [1, 7, 32])
def test_fetch_many_returns_correct_records_within_the_concurrency_limit(concurrency: int) -> None:
    sim = seeded_sim(500)
    transport = InFlight(sim.transport())
    progress: list[tuple[int, int]] = []
    with client_for(transport=transport, concurrency=concurrency) as client:
        records = client.fetch_many("email", [f"u{i}@x.com" for i in range(500)], {"email_mktg": "consent_optin"},
                                    progress=lambda done, total: progress.append((done, total)))
    check_records(records, 500)
    assert transport.total == 1000
    assert transport.peak <= concurrency
    assert transport.peak == concurrency  # the limit is actually used
    assert progress == [(k, 500) for k in range(1, 501)]


def test_concurrent_direct_calls_share_the_in_flight_limit() -> None:
    sim = seeded_sim(60)
    transport = InFlight(sim.transport())

    async def main() -> list[Any]:
        async with client_for(transport=transport, concurrency=5) as client:
            calls = [client.get_consent({"email": f"u{i}@x.com"}) for i in range(60)]
            calls += [client.get_subscriptions({"email": f"u{i}@x.com"}) for i in range(60)]
            return await asyncio.gather(*calls)

    answers = asyncio.run(main())
    assert transport.total == 120 and transport.peak == 5
    assert answers[3] == ConsentState({"email_mktg": False}, AT0 + timedelta(seconds=3))


def test_fetch_many_deduplicates_and_handles_nothing() -> None:
    sim = seeded_sim(10)
    with client_for(sim) as client:
        assert client.fetch_many("email", []) == {}
        records = client.fetch_many("email", ["u0@x.com", "u3@x.com", "u0@x.com"])
    assert list(records) == ["u0@x.com", "u3@x.com"] and len(sim.calls) == 4


def test_fetch_many_raises_the_first_failure() -> None:
    sim = KetchSim(organization="other")
    with client_for(sim) as client, pytest.raises(NotFound):
        client.fetch_many("email", [f"u{i}@x.com" for i in range(50)])


def test_fetch_many_reports_per_identity_failures_when_asked() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if b"bad@x.com" in request.content:
            return httpx.Response(200, json={"purposes": {"p": {"allowed": "??"}}})
        return httpx.Response(204)

    errors: list[tuple[str, Exception]] = []
    with client_for(transport=httpx.MockTransport(handler)) as client:
        records = client.fetch_many("email", ["a@x.com", "bad@x.com", "b@x.com"],
                                    on_error=lambda value, exc: errors.append((value, exc)))
    assert list(records) == ["a@x.com", "b@x.com"]
    assert [v for v, _ in errors] == ["bad@x.com"] and isinstance(errors[0][1], DataError)


def test_requests_per_second_caps_the_pace() -> None:
    import time

    sim = KetchSim()
    with client_for(sim, concurrency=4, requests_per_second=100) as client:
        start = time.monotonic()
        client.fetch_many("email", [f"u{i}@x.com" for i in range(30)])
        elapsed = time.monotonic() - start
    assert len(sim.calls) == 60
    assert elapsed >= (60 - 10) / 100  # a burst of 10 (a tenth of a second's worth), then 100 per second


def test_fetch_many_works_inside_a_running_event_loop() -> None:
    sim = seeded_sim(20)

    async def main() -> dict[str, KetchRecord]:
        with client_for(sim) as client:
            return client.fetch_many("email", [f"u{i}@x.com" for i in range(20)])

    check_records(asyncio.run(main()), 20)


def test_async_use_with_async_context_manager() -> None:
    sim = seeded_sim(30)

    async def main() -> dict[str, KetchRecord]:
        async with client_for(sim, concurrency=4) as client:
            return await client.afetch_many("email", [f"u{i}@x.com" for i in range(30)])

    check_records(asyncio.run(main()), 30)


# == property: the client reads back whatever the simulator holds, in every shape ===============
statuses = st.sampled_from(["granted", "denied"])
codes = st.text("abcdefgh_", min_size=1, max_size=6)


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(purposes=st.dictionaries(codes, st.booleans(), max_size=4),
       topics=st.dictionaries(codes, st.dictionaries(st.sampled_from(["email", "sms", "push"]), statuses,
                                                     min_size=1, max_size=3), max_size=3),
       controls=st.dictionaries(codes, statuses, max_size=2),
       purpose_shape=st.sampled_from(["object", "bare"]), topic_shape=st.sampled_from(["channel", "flat"]),
       empty_style=st.sampled_from(["204", "empty_object"]), at=st.integers(0, 4_000_000_000))
def test_client_reads_back_simulator_state(purposes, topics, controls, purpose_shape, topic_shape, empty_style,
                                           at) -> None:
    sim = KetchSim(purpose_shape=purpose_shape, topic_shape=topic_shape, empty_style=empty_style)
    if purposes:
        sim.set_consent("email", "a@x.com", purposes, at)
    if topics or controls:
        sim.set_subscriptions("email", "a@x.com", topics, controls, at)
    with client_for(sim) as client:
        rec = client.fetch_many("email", ["A@x.com "])["A@x.com "]
    when = datetime.fromtimestamp(at, UTC)
    assert rec.consent == (ConsentState(purposes, when) if purposes else None)
    if not (topics or controls):
        assert rec.subscriptions is None
        return
    if topic_shape == "flat":
        expected = {(t, None): "denied" if "denied" in ch.values() else "granted" for t, ch in topics.items()}
    else:
        expected = {(t, c): s for t, ch in topics.items() for c, s in ch.items()}
    assert rec.subscriptions == SubscriptionState(expected, controls, when)


# == real loopback HTTP ========================================================================
def test_fetch_many_over_loopback_http() -> None:
    sim = seeded_sim(300)
    with serve(sim) as server:
        with KetchClient(cfg(base_url=server.url + "/web/v3", concurrency=16, requests_per_second=0)) as client:
            records = client.fetch_many("email", [f"u{i}@x.com" for i in range(300)])
        with KetchClient(cfg(base_url=server.url, organization="nope")) as wrong, pytest.raises(NotFound):
            wrong.fetch_many("email", ["a@x.com"])
    check_records(records, 300)


def test_retries_over_loopback_http() -> None:
    sim = KetchSim(rate_limit=(1, 3600.0))
    sim.set_consent("email", "a@x.com", {"p": True}, T0)
    waits: list[float] = []
    time_ = FakeTime()

    async def fast_sleep(seconds: float) -> None:
        waits.append(seconds)
        time_.now += seconds
        sim.limiter.windows["web"].used = 0  # the server's window "passes" while we wait

    with serve(sim) as server:
        sim.faults.fail_next("/consent/", 502)
        with KetchClient(cfg(base_url=server.url), sleep=fast_sleep, clock=time_) as client:
            record = client.fetch_many("email", ["a@x.com"])["a@x.com"]
    assert record.consent == ConsentState({"p": True}, AT0)
    statuses = [c["status"] for c in sim.calls]
    assert 502 in statuses and 429 in statuses and statuses.count(200) == 1 and statuses.count(204) == 1
    assert any(w >= 1.0 for w in waits)  # the Retry-After of the 429 was waited out


def test_errors_are_api_errors() -> None:
    assert issubclass(RateLimited, TransientApiError) and issubclass(NotFound, ApiError)


# == the real network: aiohttp and httpx on the wire ==============================================
import gzip  # noqa: E402
import socket  # noqa: E402

from loopback_socket import SocketServer, read_request  # noqa: E402

PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy",
              "no_proxy")


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)


class CannedServer(SocketServer):
    """A loopback server giving each request the next canned answer (None: close without
    answering). Closes each connection after one answer, or with keep_alive serves the
    connection until the client closes it. Records the raw requests and counts connections;
    connections are served one at a time."""

    def __init__(self, answers: list[bytes | None], *, keep_alive: bool = False, tls: Any = None):
        self.answers, self.requests, self.connections = list(answers), [], 0
        self.keep_alive = keep_alive
        super().__init__(tls=tls)

    def _accepted(self, conn: socket.socket) -> None:
        self.connections += 1
        self._serve(conn)

    def _serve(self, conn: socket.socket) -> None:
        try:
            if self.tls:
                conn = self.tls.wrap_socket(conn, server_side=True)
            with conn:
                conn.settimeout(5)
                while not self.stopped:
                    request = read_request(conn)
                    if not request:
                        break
                    self.requests.append(request)
                    answer = self.answers.pop(0) if self.answers else None
                    if answer is None:
                        break
                    conn.sendall(answer)
                    if not self.keep_alive:
                        break
        except OSError:
            return


def http_answer(status: int, body: bytes = b"", headers: dict[str, str] | None = None, *,
                close: bool = True, length: bool = True) -> bytes:
    lines = [f"HTTP/1.1 {status} X"] + [f"{k}: {v}" for k, v in (headers or {}).items()]
    if length and "Transfer-Encoding" not in (headers or {}):
        lines.append(f"Content-Length: {len(body)}")
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def chunked(body: bytes, size: int = 7) -> bytes:
    parts = [body[i:i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


BACKENDS = ["aiohttp", "httpx"]


def net_client(url: str, backend: str, time_: FakeTime | None = None, **kw: Any) -> KetchClient:
    time_ = time_ or FakeTime()
    return KetchClient(cfg(base_url=url, **kw), sleep=time_.sleep, clock=time_, http_backend=backend)


def test_the_real_network_uses_aiohttp_and_injected_transports_use_httpx() -> None:
    assert KetchClient(cfg()).http_backend == "aiohttp"
    assert KetchClient(cfg(), http_backend="native").http_backend == "aiohttp"  # the old name
    assert KetchClient(cfg(), http_backend="httpx").http_backend == "httpx"
    assert client_for(KetchSim()).http_backend == "httpx"
    with pytest.raises(ValueError, match="injected transport"):
        KetchClient(cfg(), transport=KetchSim().transport(), http_backend="aiohttp")
    with pytest.raises(ValueError, match="http_backend"):
        KetchClient(cfg(), http_backend="curl")


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_proxy_from_the_environment_is_used(backend: str, monkeypatch: pytest.MonkeyPatch,
                                              no_proxy_env: None) -> None:
    with CannedServer([http_answer(204)]) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        with net_client("http://ketch.invalid/web/v3", backend) as client:
            assert client.run(client.get_consent({"email": "a@x.com"})) is None
    assert proxy.requests[0].startswith(b"POST http://ketch.invalid/web/v3/consent/acme/get HTTP/1.1")


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_proxy_is_honoured(backend: str, monkeypatch: pytest.MonkeyPatch, no_proxy_env: None) -> None:
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with CannedServer([http_answer(204)]) as server, net_client(server.url, backend) as client:
        assert client.run(client.get_consent({"email": "a@x.com"})) is None
    assert server.requests[0].startswith(b"POST /web/v2/consent/acme/get HTTP/1.1")


@pytest.mark.parametrize("backend", BACKENDS)
def test_both_backends_read_the_same_records_over_loopback(backend: str, no_proxy_env: None) -> None:
    sim = seeded_sim(200)
    with serve(sim) as server:
        with KetchClient(cfg(base_url=server.url + "/web/v3", concurrency=8), http_backend=backend) as client:
            assert client.http_backend == backend
            records = client.fetch_many("email", [f"u{i}@x.com" for i in range(200)])
    check_records(records, 200)


def test_aiohttp_in_a_caller_owned_event_loop(no_proxy_env: None) -> None:
    sim = seeded_sim(30)

    async def main(url: str) -> dict[str, KetchRecord]:
        async with KetchClient(cfg(base_url=url, concurrency=4), http_backend="aiohttp") as client:
            return await client.afetch_many("email", [f"u{i}@x.com" for i in range(30)])

    with serve(sim) as server:
        records = asyncio.run(main(server.url))
    check_records(records, 30)


@pytest.mark.parametrize("backend", BACKENDS)
def test_request_on_the_wire(backend: str, no_proxy_env: None) -> None:
    with CannedServer([http_answer(204)]) as server:
        with net_client(server.url + "/web/v3", backend) as client:
            assert client.run(client.get_consent({"email": "jane@example.com"}, {"email_mktg": "consent_optin"})) is None
    head, _, body = server.requests[0].partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    assert lines[0] == "POST /web/v3/consent/acme/get HTTP/1.1"
    assert headers["accept"] == "application/json" and headers["content-type"] == "application/json"
    assert "authorization" not in headers and "cookie" not in headers
    assert json.loads(body) == {
        "organizationCode": "acme", "propertyCode": "web", "environmentCode": "production",
        "jurisdictionCode": "caccpa", "identities": {"email": "jane@example.com"},
        "purposes": {"email_mktg": {"legalBasisCode": "consent_optin"}}}


@pytest.mark.parametrize("backend", BACKENDS)
def test_chunked_and_gzipped_answers_are_decoded(backend: str, no_proxy_env: None) -> None:
    body = consent_body({"p": "true"}, collectedAt=T0)
    answers = [http_answer(200, chunked(gzip.compress(body)), {"Content-Type": "application/json",
                                                               "Content-Encoding": "gzip",
                                                               "Transfer-Encoding": "chunked"})]
    with CannedServer(answers) as server, net_client(server.url, backend) as client:
        assert client.run(client.get_consent({"email": "a@x.com"})) == ConsentState({"p": True}, AT0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_dropped_connections_and_garbage_answers_are_retried(backend: str, no_proxy_env: None) -> None:
    time_ = FakeTime()
    answers = [None, b"garbage\r\n\r\n", http_answer(200, consent_body({"p": "false"}))]
    with CannedServer(answers) as server, net_client(server.url, backend, time_, max_retries=3) as client:
        assert client.run(client.get_consent({"email": "a@x.com"})) == ConsentState({"p": False}, None)
    assert len(server.requests) == 3 and len(time_.waits) == 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_connection_failures_exhaust_into_a_transient_error(backend: str, no_proxy_env: None) -> None:
    with CannedServer([None, None, None]) as server, net_client(server.url, backend, max_retries=2) as client, \
            pytest.raises(TransientApiError, match="3 attempt") as info:
        client.run(client.get_subscriptions({"email": "a@x.com"}))
    assert info.value.status_code is None and len(server.requests) == 3


@pytest.mark.parametrize("backend", BACKENDS)
def test_nothing_listening_is_retried_then_transient(backend: str, no_proxy_env: None) -> None:
    time_ = FakeTime()
    with net_client(f"http://127.0.0.1:{free_port()}", backend, time_, max_retries=1) as client, \
            pytest.raises(TransientApiError, match="2 attempt"):
        client.run(client.get_consent({"email": "a@x.com"}))
    assert len(time_.waits) == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_redirects_are_not_followed(backend: str, no_proxy_env: None) -> None:
    answers = [http_answer(302, b"", {"Location": "http://127.0.0.1:1/elsewhere"})]
    with CannedServer(answers) as server, net_client(server.url, backend) as client, \
            pytest.raises(FatalApiError) as info:
        client.run(client.get_consent({"email": "a@x.com"}))
    assert info.value.status_code == 302 and len(server.requests) == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_url_credentials_are_sent_but_never_shown(backend: str, no_proxy_env: None) -> None:
    answers = [http_answer(429, b'{"error":{"code":"too_many_requests","message":"slow"}}', {"Retry-After": "3"})] * 2
    time_ = FakeTime()
    url = "http://user:hunter2@" + "127.0.0.1:{port}/web/v3"
    with CannedServer(answers) as server:
        port = server.url.rsplit(":", 1)[1]
        with net_client(url.format(port=port), backend, time_, max_retries=1) as client, \
                pytest.raises(RateLimited) as info:
            client.run(client.get_consent({"email": "a@x.com"}))
    assert time_.waits == [3.0] and info.value.reset_at is not None
    assert "hunter2" not in str(info.value) and f"http://127.0.0.1:{port}/web/v3/consent/acme/get" in str(info.value)
    assert "too_many_requests: slow" in str(info.value)
    assert b"authorization: basic " in server.requests[0].lower()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_server_that_never_answers_times_out_and_is_retried(backend: str, no_proxy_env: None) -> None:
    sim = KetchSim()
    sim.set_consent("email", "a@x.com", {"p": True}, T0)
    sim.faults.fail_next("/consent/", 599)
    time_ = FakeTime()
    with serve(sim, timeout_hold_seconds=1.0) as server:
        with net_client(server.url, backend, time_, timeout_seconds=0.2) as client:
            assert client.run(client.get_consent({"email": "a@x.com"})) == ConsentState({"p": True}, AT0)
    assert len(time_.waits) == 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("backend", BACKENDS)
def test_keep_alive_reuses_connections(backend: str, no_proxy_env: None) -> None:
    answers = [http_answer(204, close=False)] * 40
    with CannedServer(answers, keep_alive=True) as server:
        with net_client(server.url, backend, concurrency=1) as client:
            client.fetch_many("email", [f"u{i}@x.com" for i in range(20)])
    assert len(server.requests) == 40 and server.connections == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_body_that_ends_with_the_connection(backend: str, no_proxy_env: None) -> None:
    answers = [http_answer(200, consent_body({"p": "true"}), length=False)]
    with CannedServer(answers) as server, net_client(server.url, backend) as client:
        assert client.run(client.get_consent({"email": "a@x.com"})) == ConsentState({"p": True}, None)


@pytest.mark.parametrize("backend", BACKENDS)
def test_informational_answers_are_skipped(backend: str, no_proxy_env: None) -> None:
    answers = [b"HTTP/1.1 100 Continue\r\n\r\n" + http_answer(200, consent_body({"p": "false"}))]
    with CannedServer(answers) as server, net_client(server.url, backend) as client:
        assert client.run(client.get_consent({"email": "a@x.com"})) == ConsentState({"p": False}, None)


@pytest.mark.parametrize("backend", BACKENDS)
def test_timeout_exhaustion_names_the_read_timeout(backend: str, no_proxy_env: None) -> None:
    sim = KetchSim()
    sim.faults.timeout_rate = 1.0
    with serve(sim, timeout_hold_seconds=0.5) as server:
        with net_client(server.url, backend, timeout_seconds=0.1, max_retries=1) as client, \
                pytest.raises(TransientApiError, match="2 attempt.*DeadlineExceeded"):
            client.run(client.get_consent({"email": "a@x.com"}))


@pytest.mark.parametrize("backend", ["aiohttp"])  # httpcore reads the stray answer as the next one's
def test_a_connection_that_sent_stray_bytes_is_never_reused(backend: str, no_proxy_env: None) -> None:
    first = http_answer(204, close=False) + b"HTTP/1.1 200 X\r\nContent-Length: 2\r\n\r\n{}"
    answers = [first, http_answer(200, consent_body({"p": "true"}), close=False)]
    with CannedServer(answers, keep_alive=True) as server:
        with net_client(server.url, backend, concurrency=1) as client:
            assert client.run(client.get_consent({"email": "a@x.com"})) is None
            assert client.run(client.get_consent({"email": "b@x.com"})) == ConsentState({"p": True}, None)
    assert server.connections == 2


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("encoding", ["br", "gzip"])
def test_an_undecodable_body_is_refused(backend: str, encoding: str, no_proxy_env: None) -> None:
    answers = [http_answer(200, b"not compressed", {"Content-Encoding": encoding})]
    time_ = FakeTime()
    with CannedServer(answers) as server, net_client(server.url, backend, time_) as client, \
            pytest.raises(FatalApiError, match="UndecodableBody"):
        client.run(client.get_consent({"email": "a@x.com"}))
    assert time_.waits == []


def test_first_failure_cancels_requests_in_flight_cleanly(no_proxy_env: None,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    import gc

    sim = KetchSim(organization="other")
    sim.faults.latency_seconds = 0.01
    with serve(sim) as server:
        for _ in range(3):  # several workers usually fail in the same loop turn
            with KetchClient(cfg(base_url=server.url, concurrency=8)) as client, pytest.raises(NotFound):
                client.fetch_many("email", [f"u{i}@x.com" for i in range(50)])
    gc.collect()
    assert "never retrieved" not in caplog.text


@pytest.mark.parametrize("backend", BACKENDS)
def test_tls_with_the_ca_from_ssl_cert_file(backend: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch,
                                           no_proxy_env: None) -> None:
    import shutil
    import ssl
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    answers = [http_answer(200, consent_body({"p": "true"}, collectedAt=T0), close=False)] * 2
    with CannedServer(answers, keep_alive=True, tls=tls) as server:
        with net_client(server.url, backend, concurrency=1) as client:
            for _ in range(2):
                assert client.run(client.get_consent({"email": "a@x.com"})) == ConsentState({"p": True}, AT0)
    assert server.connections == 1


def test_aiohttp_sync_facade_inside_a_running_event_loop(no_proxy_env: None) -> None:
    sim = seeded_sim(20)

    async def main(url: str) -> dict[str, KetchRecord]:
        with KetchClient(cfg(base_url=url, concurrency=4)) as client:
            assert client.http_backend == "aiohttp"
            return client.fetch_many("email", [f"u{i}@x.com" for i in range(20)])

    with serve(sim) as server:
        records = asyncio.run(main(server.url))
    check_records(records, 20)


@pytest.mark.parametrize("page", [b"<html><body>Sorry, you have been blocked</body></html>", b"", b'{"message": "x"}'])
def test_a_403_without_ketchs_error_shape_is_the_edge_and_waited_out_like_a_429(page: bytes) -> None:
    """A CDN or web firewall in front of the unauthenticated API: retried after a back-off,
    then answered; never a PermissionDenied."""
    answers = iter([httpx.Response(403, content=page, headers={"Content-Type": "text/html"}),
                    httpx.Response(200, json={"purposes": {"p": {"allowed": "true"}}})])
    transport = httpx.MockTransport(lambda request: next(answers))
    with client_for(transport=transport) as client:
        consent = client.run(client.get_consent({"email": "a@x.com"}))
        usage = client.usage()
    assert consent is not None and consent.purposes == {"p": True}
    assert usage["rate_limited"] == 1


def test_aiohttp_takes_netrc_credentials_for_the_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      no_proxy_env: None) -> None:
    netrc_file = tmp_path / "netrc"
    netrc_file.write_text("machine 127.0.0.1 login reader password s3cret\n")
    netrc_file.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc_file))
    with CannedServer([http_answer(204), http_answer(204)]) as server, net_client(server.url, "aiohttp") as client:
        assert client.run(client.get_consent({"email": "a@x.com"})) is None
        assert client.run(client.get_consent({"email": "b@x.com"})) is None
    expected = b"Authorization: Basic " + base64.b64encode(b"reader:s3cret")
    assert len(server.requests) == 2 and all(expected in r for r in server.requests)


def test_aiohttp_without_netrc_or_proxy_sends_no_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             no_proxy_env: None) -> None:
    monkeypatch.setenv("NETRC", str(tmp_path / "absent"))
    with CannedServer([http_answer(204)]) as server, net_client(server.url, "aiohttp") as client:
        assert client.run(client.get_consent({"email": "a@x.com"})) is None
    assert b"Authorization" not in server.requests[0]
