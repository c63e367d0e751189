"""The Braze client's answers are bounded: size as sent and decompressed, an overall
deadline per try, and certificate failures final with their reason (over loopback)."""

from __future__ import annotations

import gzip
import time
from pathlib import Path

import pytest

from reconcile.clients.braze import BrazeClient
from reconcile.config import BrazeConfig
from reconcile.errors import FatalApiError, TransientApiError

from wire import Server, chunked, endless_chunks, http_answer, self_signed, trickle

SUCCESS = b'{"message": "success"}'
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)


def client(url: str, waits: list[float], **kw) -> BrazeClient:
    cfg = BrazeConfig(**{"rest_endpoint": url, "timeout_seconds": 5.0, "max_retries": 1, "max_body_bytes": 4096, **kw})
    return BrazeClient(cfg, "test-key-123456", sleep=waits.append)


BIG = b'{"message": "success", "pad": "' + b" " * 10_000 + b'"}'
OVERSIZED = {
    "content-length": http_answer(200, BIG),
    "chunked": http_answer(200, chunked(BIG), {"Transfer-Encoding": "chunked"}),
    "until-close": http_answer(200, BIG, length=False),
    "gzip-bomb": http_answer(200, gzip.compress(b" " * 20_000_000), {"Content-Encoding": "gzip"}),
    "endless-chunked": endless_chunks(),
}


@pytest.mark.parametrize("shape", list(OVERSIZED))
def test_an_answer_over_max_body_bytes_is_fatal_and_not_retried(shape: str) -> None:
    waits: list[float] = []
    with Server([OVERSIZED[shape]] * 3) as server, client(server.url, waits) as braze:
        started = time.monotonic()
        with pytest.raises(FatalApiError, match="over the 4096-byte limit") as info:
            braze.email_blocklist(["a@example.com"])
        assert time.monotonic() - started < 5
    assert "max_body_bytes" in str(info.value)
    assert len(server.requests) == 1 and waits == []


def test_a_gzip_answer_under_the_limit_is_read_and_confirms_the_write() -> None:
    waits: list[float] = []
    answers = [http_answer(200, gzip.compress(SUCCESS), {"Content-Encoding": "gzip"})]
    with Server(answers) as server, client(server.url, waits) as braze:
        result = braze.email_blocklist(["a@example.com"])
    assert result.ok == ["a@example.com"] and not result.rejected
    assert b"accept-encoding: gzip, deflate" in server.requests[0].lower()


def test_a_trickling_answer_is_cut_off_at_timeout_seconds_and_retried() -> None:
    waits: list[float] = []
    with Server([trickle(200, 0.05), trickle(200, 0.05)]) as server, \
            client(server.url, waits, timeout_seconds=0.4) as braze:
        started = time.monotonic()
        with pytest.raises(TransientApiError, match="2 attempt.*DeadlineExceeded"):
            braze.email_blocklist(["a@example.com"])
        took = time.monotonic() - started
    assert took < 3  # two tries of 0.4 s, not two answers of 10 s
    assert len(server.requests) == 2 and len(waits) == 1


def test_a_self_signed_certificate_is_fatal_with_its_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    tls = self_signed(tmp_path)
    if tls is None:
        pytest.skip("needs the openssl command to make a certificate")
    waits: list[float] = []
    with Server([http_answer(200, SUCCESS)] * 3, tls=tls) as server, client(server.url, waits) as braze, \
            pytest.raises(FatalApiError) as info:
        braze.email_blocklist(["a@example.com"])
    assert "certificate verify failed: self-signed certificate" in str(info.value)
    assert waits == [] and server.requests == []
