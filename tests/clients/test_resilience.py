"""The resilience layer: what is retried, bounded answers, deadlines, certificate failures.

The wire-level cases run over loopback against the Ketch client on both backends, and
against `send_bounded`, the sync httpx form offered to the Braze client."""

from __future__ import annotations

import gzip
import random
import shutil
import socket
import ssl
import subprocess
import time
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

import aiohttp
import httpx
import pytest

from reconcile.clients.ketch import KetchClient
from reconcile.clients.resilience import (AnswerTooLarge, Attempts, DeadlineExceeded, PauseGate, RequestLabel,
                                          RetryPolicy, UndecodableBody, classify_failure, decode_body,
                                          is_retryable_status, retry_after_seconds, send_bounded)
from reconcile.config import KetchConfig
from reconcile.errors import FatalApiError, RateLimited, TransientApiError

from loopback_socket import SocketServer
from test_ketch_client import PROXY_VARS, CannedServer, FakeTime, chunked, consent_body, http_answer

BACKENDS = ["aiohttp", "httpx"]
LABEL = RequestLabel("test", "POST", "http://127.0.0.1/x")


@pytest.fixture(autouse=True)
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)


def net_client(url: str, backend: str, time_: FakeTime | None = None, **kw: Any) -> KetchClient:
    time_ = time_ or FakeTime()
    base = dict(base_url=url, organization="acme", property="web", environment="production", jurisdiction="x",
                concurrency=2, requests_per_second=0, timeout_seconds=5.0, max_retries=2)
    return KetchClient(KetchConfig(**{**base, **kw}), sleep=time_.sleep, clock=time_, http_backend=backend)


# == rules ======================================================================================
@pytest.mark.parametrize("status,retry", [(200, False), (204, False), (302, False), (400, False), (404, False),
                                          (408, True), (429, True), (500, True), (503, True), (599, True)])
def test_retryable_statuses(status: int, retry: bool) -> None:
    assert is_retryable_status(status) is retry


def test_retry_after_is_clamped_and_read_as_seconds_or_a_date() -> None:
    now = 1_700_000_000.0
    assert retry_after_seconds({"Retry-After": "5000"}, now, cap=300) == 300
    assert retry_after_seconds({"retry-after": "2.5"}, now) == 2.5
    date = format_datetime(datetime.fromtimestamp(now + 40, timezone.utc), usegmt=True)
    assert retry_after_seconds({"Retry-After": date}, now, cap=30) == 30
    assert retry_after_seconds({"Retry-After": date}, now) == pytest.approx(40)
    assert retry_after_seconds({"Retry-After": "-3"}, now) == 0
    assert retry_after_seconds({"Retry-After": "later"}, now) is None


@pytest.mark.parametrize("exc,retry", [
    (httpx.ReadTimeout("slow"), True), (httpx.ConnectError("refused"), True), (httpx.RemoteProtocolError("eof"), True),
    (httpx.UnsupportedProtocol("ftp"), False),
    (aiohttp.ServerDisconnectedError(), True), (aiohttp.ClientPayloadError("cut"), True),
    (aiohttp.ServerTimeoutError("slow"), True), (ConnectionResetError(), True), (TimeoutError(), True),
    (DeadlineExceeded("late"), True), (AnswerTooLarge("big"), False), (UndecodableBody("x"), False),
    (ValueError("odd"), False),
])
def test_transport_failures_are_classified(exc: BaseException, retry: bool) -> None:
    assert classify_failure(exc)[0] is retry
    assert type(exc).__name__ in classify_failure(exc)[1]


def test_a_certificate_failure_inside_an_httpx_error_is_fatal_with_its_reason() -> None:
    cert = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    cert.verify_message = "self-signed certificate"
    try:
        try:
            raise cert
        except ssl.SSLError as inner:
            raise httpx.ConnectError("handshake") from inner
    except httpx.ConnectError as outer:
        assert classify_failure(outer) == (False, "certificate verify failed: self-signed certificate")


class Answer:
    def __init__(self, status: int, headers: dict[str, str] | None = None):
        self.status_code, self.headers, self.text = status, headers or {}, ""


def test_a_5xx_with_retry_after_waits_that_long_and_counts_as_a_failed_try() -> None:
    ft = FakeTime()
    attempts = Attempts(RetryPolicy(max_retries=1, max_retry_after_seconds=60), LABEL, PauseGate(ft), clock=ft,
                        rng=random.Random(1), wall=ft)
    assert attempts.judge(Answer(503, {"Retry-After": "7"})) == 7
    with pytest.raises(TransientApiError, match="2 attempt"):
        attempts.judge(Answer(503))


def test_a_429_blocks_the_shared_gate_and_is_bounded_by_max_rate_limited() -> None:
    ft = FakeTime()
    gate = PauseGate(ft)
    policy = RetryPolicy(max_retries=0, max_rate_limited=1, max_retry_after_seconds=100)
    first = Attempts(policy, LABEL, gate, clock=ft, rng=random.Random(1), wall=ft)
    assert first.judge(Answer(429, {"Retry-After": "500"})) == 0
    other = Attempts(policy, LABEL, gate, clock=ft, rng=random.Random(1), wall=ft)
    assert other.gate_wait() == 100  # clamped, and shared
    with pytest.raises(RateLimited):
        first.judge(Answer(429, {"Retry-After": "1"}))


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "identity", None])
def test_decode_body_round_trips(encoding: str | None) -> None:
    import zlib

    data = b'{"a": 1}' * 50
    raw = {"gzip": gzip.compress(data), "deflate": zlib.compress(data)}.get(encoding or "", data)
    assert decode_body(raw, encoding, 10_000) == data


def test_decode_body_stops_a_decompression_bomb() -> None:
    bomb = gzip.compress(b"\0" * 50_000_000)
    assert len(bomb) < 100_000
    with pytest.raises(AnswerTooLarge, match="decompressed"):
        decode_body(bomb, "gzip", 1_000_000)


# == bounded answers over loopback ==============================================================
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", ["content-length", "chunked", "until-close", "gzip-bomb"])
def test_an_answer_over_max_body_bytes_is_a_clear_fatal_error(backend: str, shape: str) -> None:
    big = b'{"purposes":{' + b" " * 10_000 + b"}}"
    answer = {
        "content-length": http_answer(200, big),
        "chunked": http_answer(200, chunked(big, 1000), {"Transfer-Encoding": "chunked"}),
        "until-close": http_answer(200, big, length=False),
        "gzip-bomb": http_answer(200, gzip.compress(b" " * 5_000_000), {"Content-Encoding": "gzip"}),
    }[shape]
    time_ = FakeTime()
    with CannedServer([answer]) as server, net_client(server.url, backend, time_, max_body_bytes=4096) as client, \
            pytest.raises(FatalApiError, match="over the 4096-byte limit") as info:
        client.run(client.get_consent({"email": "a@x.com"}))
    assert "max_body_bytes" in str(info.value)
    assert time_.waits == [] and len(server.requests) == 1  # never retried


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_answer_under_the_limit_is_read(backend: str) -> None:
    body = consent_body({f"p{i}": "true" for i in range(100)})
    answers = [http_answer(200, gzip.compress(body), {"Content-Encoding": "gzip"})]
    with CannedServer(answers) as server, net_client(server.url, backend, max_body_bytes=len(body)) as client:
        assert client.run(client.get_consent({"email": "a@x.com"})).purposes == {f"p{i}": True for i in range(100)}


class TrickleServer(SocketServer):
    """Answers each connection with a head promising `size` bytes, then one byte per `gap` seconds."""

    def __init__(self, size: int = 200, gap: float = 0.05, tls: ssl.SSLContext | None = None):
        self.size, self.gap = size, gap
        self.sent: list[int] = []
        super().__init__(tls=tls)

    def _serve(self, conn: socket.socket) -> None:
        sent = 0
        try:
            if self.tls:
                conn = self.tls.wrap_socket(conn, server_side=True)
            conn.settimeout(5)
            conn.recv(65536)
            conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {self.size}\r\n\r\n".encode())
            while sent < self.size and not self.stopped:
                conn.sendall(b" ")
                sent += 1
                time.sleep(self.gap)
        except OSError:
            pass
        finally:
            self.sent.append(sent)
            conn.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_trickling_answer_is_cut_off_at_the_deadline_and_retried(backend: str) -> None:
    time_ = FakeTime()
    with TrickleServer(size=200, gap=0.05) as server:  # 10 s to send it all
        with net_client(server.url, backend, time_, timeout_seconds=0.3, max_retries=1) as client, \
                pytest.raises(TransientApiError, match="2 attempt.*DeadlineExceeded"):
            client.run(client.get_consent({"email": "a@x.com"}))
        deadline = time.monotonic() + 5
        while len(server.sent) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert len(server.sent) == 2 and all(n < 200 for n in server.sent)  # neither answer was waited out
    assert len(time_.waits) == 1


def _self_signed(tmp_path: Any) -> ssl.SSLContext:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    return tls


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_certificate_that_fails_verification_is_fatal_and_keeps_the_reason(backend: str, tmp_path: Any,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    tls = _self_signed(tmp_path)
    time_ = FakeTime()
    with CannedServer([http_answer(204)] * 3, tls=tls) as server, net_client(server.url, backend, time_) as client, \
            pytest.raises(FatalApiError) as info:
        client.run(client.get_consent({"email": "a@x.com"}))
    assert "certificate verify failed: self-signed certificate" in str(info.value)
    assert time_.waits == [] and server.requests == []


# == send_bounded: the same bounds for a sync httpx client (the Braze client's) =================
def test_send_bounded_reads_decodes_and_caps() -> None:
    body = b'{"message":"success"}'
    answers = [http_answer(200, gzip.compress(body), {"Content-Encoding": "gzip"}),
               http_answer(200, b"x" * 5000),
               http_answer(200, gzip.compress(b"\0" * 1_000_000), {"Content-Encoding": "gzip"})]
    with CannedServer(answers) as server, httpx.Client() as http:
        ok = send_bounded(http, http.build_request("POST", server.url + "/m"), limit=4096)
        assert ok.status_code == 200 and ok.json() == {"message": "success"}
        for _ in range(2):
            with pytest.raises(AnswerTooLarge):
                send_bounded(http, http.build_request("POST", server.url + "/m"), limit=4096)


def test_send_bounded_stops_a_trickle_at_its_deadline() -> None:
    with TrickleServer(size=200, gap=0.05) as server, httpx.Client() as http, pytest.raises(DeadlineExceeded):
        send_bounded(http, http.build_request("GET", server.url), deadline_seconds=0.3)


def test_send_bounded_keeps_an_in_memory_answer() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json={"message": "success"}))
    with httpx.Client(transport=transport) as http:
        assert send_bounded(http, http.build_request("POST", "https://rest.example/x")).json() == {"message": "success"}
        with pytest.raises(AnswerTooLarge):
            send_bounded(http, http.build_request("POST", "https://rest.example/x"), limit=5)


def test_retry_after_http_date_defaults_to_the_wall_clock() -> None:
    when = datetime.now(timezone.utc) + timedelta(seconds=30)
    got = retry_after_seconds({"Retry-After": format_datetime(when, usegmt=True)})
    assert got is not None and 25 <= got <= 31
