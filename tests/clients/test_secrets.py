"""The Braze API key never reaches logs, exceptions or the client's repr."""

from __future__ import annotations

import logging
import random
import traceback
from typing import Any, Callable, Iterator

import httpx
import pytest

from reconcile.clients.braze import BrazeClient
from reconcile.config import BrazeConfig
from reconcile.errors import ApiError, AuthError, TransientApiError
from reconcile.sandbox.braze import BrazeSim
from reconcile.sandbox.server import serve

KEY = "sk-DISTINCTIVE-7f3a9c2e41-braze-key"


@pytest.fixture
def sim() -> BrazeSim:
    return BrazeSim(api_key=KEY)


@pytest.fixture
def url(sim: BrazeSim) -> Iterator[str]:
    with serve(sim, timeout_hold_seconds=1.0) as running:
        yield running.url


@pytest.fixture
def make_client() -> Iterator[Callable[[str], BrazeClient]]:
    made: list[BrazeClient] = []

    def make(url: str) -> BrazeClient:
        cfg = BrazeConfig(rest_endpoint=url, max_retries=1, backoff_cap_seconds=0.01, timeout_seconds=0.2)
        made.append(BrazeClient(cfg, KEY, sleep=lambda s: None, rng=random.Random(0)))
        return made[-1]

    yield make
    for client in made:
        client.close()


def error_texts(exc: BaseException) -> list[str]:
    texts: list[str] = ["".join(traceback.format_exception(exc))]
    seen: BaseException | None = exc
    while seen is not None:
        texts += [str(seen), repr(seen), repr(vars(seen))]
        seen = seen.__cause__ or seen.__context__
    return texts


def record_texts(caplog: pytest.LogCaptureFixture) -> list[str]:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(name)s %(message)s"))
    return [handler.format(r) + repr(r.args) for r in caplog.records]


def assert_no_key(texts: list[str]) -> None:
    leaks = [t for t in texts if KEY in t or KEY[3:20] in t]
    assert not leaks, leaks[:1]


def drive(caplog: pytest.LogCaptureFixture, call: Callable[[], Any], error: type[ApiError]) -> ApiError:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(error) as info:
        call()
    assert caplog.records, "DEBUG logging captured nothing"
    assert_no_key(record_texts(caplog) + error_texts(info.value))
    return info.value


def test_401_does_not_leak_the_key(caplog, make_client, ft_sim_wrong_key):
    client = make_client(ft_sim_wrong_key)
    err = drive(caplog, lambda: client.users_track([{"external_id": "u1"}]), AuthError)
    assert err.status_code == 401
    assert_no_key([repr(client), repr(vars(client))])


def test_500_exhausted_does_not_leak_the_key(caplog, make_client, sim, url):
    sim.faults.fail_next("/email/blocklist", 500, times=2)
    client = make_client(url)
    err = drive(caplog, lambda: client.email_blocklist(["a@x.com"]), TransientApiError)
    assert err.status_code == 500
    assert_no_key([repr(client), repr(vars(client))])


def test_timeout_does_not_leak_the_key(caplog, make_client, sim, url):
    sim.faults.fail_next("/subscription/status/get", 599, times=2)
    client = make_client(url)
    drive(caplog, lambda: client.subscription_status_get("g", external_ids=["u1"]), TransientApiError)
    assert_no_key([repr(client), repr(vars(client))])


def test_a_key_echoed_by_the_server_is_masked(caplog):
    def echo(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, json={"message": f"bad token {request.headers['authorization']}"})

    cfg = BrazeConfig(rest_endpoint="https://rest.example", max_retries=0)
    client = BrazeClient(cfg, KEY, transport=httpx.MockTransport(echo), sleep=lambda s: None)
    drive(caplog, lambda: client.email_blocklist(["a@x.com"]), TransientApiError)


@pytest.fixture
def ft_sim_wrong_key() -> Iterator[str]:
    with serve(BrazeSim(api_key="some-other-key")) as running:
        yield running.url
