"""The simulator's /users/export/segment and the pre-signed download it serves."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from reconcile.sandbox.braze import BrazeSim
from reconcile.sandbox.braze_checks import Msg
from reconcile.sandbox.server import serve

NOW = 1_714_560_000.0
AUTH = {"Authorization": "Bearer sandbox-rest-key"}
FIELDS = ["external_id", "braze_id", "email", "email_subscribe"]


class Clock:
    def __init__(self) -> None:
        self.t = NOW

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sim(clock: Clock) -> BrazeSim:
    s = BrazeSim(clock=clock, segment_export_delay_seconds=30, segment_file_users=2)
    for i in range(5):
        s.add_profile(external_id=f"u{i}", email=f"u{i}@example.com")
    s.add_profile(email="anon@example.com", email_subscribe="unsubscribed")
    return s


@pytest.fixture
def client(sim: BrazeSim) -> Iterator[httpx.Client]:
    with httpx.Client(transport=sim.transport(), base_url="http://braze.test", headers=AUTH) as c:
        yield c


def start(client: httpx.Client, **body) -> httpx.Response:
    return client.post("/users/export/segment", json={"segment_id": "all-users", "fields_to_export": FIELDS, **body})


def plain_get(sim: BrazeSim, url: str, **headers: str) -> httpx.Response:
    with httpx.Client(transport=sim.transport()) as c:
        return c.get(url, headers=headers)


def test_export_answers_prefix_and_a_download_url_outside_the_api(client: httpx.Client) -> None:
    r = start(client)
    body = r.json()
    assert r.status_code == 201 and body["message"] == "success" and set(body) == {"message", "object_prefix", "url"}
    parts = urlsplit(body["url"])
    assert parts.netloc == "braze.test" and parts.path == f"/_downloads/{body['object_prefix']}.zip"
    assert "X-Amz-Signature=" in parts.query


def test_download_is_an_s3_404_until_ready_then_a_zip_of_json_lines(sim: BrazeSim, client: httpx.Client,
                                                                     clock: Clock) -> None:
    url = start(client).json()["url"]
    early = plain_get(sim, url)
    assert early.status_code == 404 and early.headers["content-type"] == "application/xml"
    assert b"<Code>NoSuchKey</Code>" in early.content
    clock.t += 30
    ready = plain_get(sim, url)
    assert ready.status_code == 200 and ready.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(ready.content)) as archive:
        names = archive.namelist()
        users = [json.loads(line) for n in names for line in archive.read(n).decode().splitlines()]
    assert len(names) == 3 and len(users) == 6
    anon = next(u for u in users if u["email"] == "anon@example.com")
    assert anon["email_subscribe"] == "unsubscribed" and "external_id" not in anon and anon["braze_id"]
    assert all(set(u) <= set(FIELDS) for u in users)


def test_download_needs_the_signature_and_refuses_an_authorization_header(sim: BrazeSim, client: httpx.Client,
                                                                          clock: Clock) -> None:
    url = start(client).json()["url"]
    clock.t += 30
    unsigned = plain_get(sim, url.split("?")[0])
    with_key = plain_get(sim, url, Authorization="Bearer sandbox-rest-key")
    assert unsigned.status_code == 403 and b"SignatureDoesNotMatch" in unsigned.content
    assert with_key.status_code == 400 and b"InvalidArgument" in with_key.content


def test_one_export_per_segment_at_a_time(client: httpx.Client, clock: Clock) -> None:
    assert start(client).status_code == 201
    busy = start(client)
    assert busy.status_code == 429 and busy.json()["message"] == Msg.EXPORT_RUNNING.format(segment_id="all-users")
    clock.t += 30
    assert start(client).status_code == 201


@pytest.mark.parametrize("body, message", [
    ({"fields_to_export": FIELDS}, Msg.SEGMENT_REQUIRED),
    ({"segment_id": "vip", "fields_to_export": FIELDS}, Msg.UNKNOWN_SEGMENT.format(segment_id="vip")),
    ({"segment_id": "all-users"}, Msg.FIELDS_REQUIRED),
    ({"segment_id": "all-users", "fields_to_export": ["shoe_size"]}, Msg.BAD_FIELDS),
    ({"segment_id": "all-users", "fields_to_export": FIELDS, "output_format": "gzip"}, Msg.GZIP_NEEDS_BUCKET),
    ({"segment_id": "all-users", "fields_to_export": FIELDS, "output_format": "csv"}, Msg.BAD_OUTPUT_FORMAT),
    ({"segment_id": "all-users", "fields_to_export": FIELDS, "callback_endpoint": 5}, Msg.BAD_CALLBACK),
])
def test_bad_export_requests_are_400(client: httpx.Client, body: dict, message: str) -> None:
    r = client.post("/users/export/segment", json=body)
    assert r.status_code == 400 and r.json()["message"] == message


def test_segment_id_is_configurable(clock: Clock) -> None:
    sim = BrazeSim(clock=clock, segment_id="seg-123")
    with httpx.Client(transport=sim.transport(), base_url="http://braze.test", headers=AUTH) as c:
        assert c.post("/users/export/segment", json={"segment_id": "all-users", "fields_to_export": FIELDS}
                      ).status_code == 400
        assert c.post("/users/export/segment", json={"segment_id": "seg-123", "fields_to_export": FIELDS}
                      ).status_code == 201


def test_export_counts_against_the_shared_class(clock: Clock) -> None:
    sim = BrazeSim(clock=clock, rate_limits={"shared": (1, 3600.0)})
    with httpx.Client(transport=sim.transport(), base_url="http://braze.test", headers=AUTH) as c:
        first = c.post("/users/export/segment", json={"segment_id": "all-users", "fields_to_export": FIELDS})
        url = first.json()["url"]
        second = c.get("/email/unsubscribes", params={"email": "a@example.com", "end_date": "2024-05-01"})
    assert first.headers["X-RateLimit-Remaining"] == "0" and second.status_code == 429
    assert plain_get(sim, url).status_code == 200


def test_loopback_url_points_at_the_served_address(sim: BrazeSim, clock: Clock) -> None:
    with serve(sim) as running, httpx.Client(base_url=running.url, headers=AUTH, timeout=10) as c:
        url = c.post("/users/export/segment", json={"segment_id": "all-users", "fields_to_export": FIELDS}).json()["url"]
        clock.t += 30
        download = httpx.get(url, timeout=10)
    assert url.startswith(f"{running.url}/_downloads/") and download.status_code == 200
