"""export_segment: POST, poll the pre-signed URL without the Braze key, parse every line;
over loopback against the served simulator and in-process."""

from __future__ import annotations

import gzip
import io
import json
import random
import zipfile
from typing import Any, Callable

import httpx
import pytest

from reconcile.clients.braze import BrazeClient
from reconcile.clients.braze_segment import ExportUnavailable
from reconcile.config import BrazeConfig
from reconcile.errors import DataError, FatalApiError, PermissionDenied, UnconfirmedWrite
from reconcile.sandbox.braze import PARTNER_PERMISSIONS, BrazeSim
from reconcile.sandbox.server import serve

from fake_time import FakeTime

KEY = "sandbox-rest-key"
FIELDS = ["external_id", "braze_id", "email", "email_subscribe"]


def make_client(ft: FakeTime, transport: httpx.BaseTransport | None = None,
                url: str = "https://rest.example.braze.com") -> BrazeClient:
    return BrazeClient(BrazeConfig(rest_endpoint=url, max_retries=1), KEY, transport=transport, sleep=ft.sleep,
                       clock=ft.clock, rng=random.Random(0))


def seeded(ft: FakeTime, n: int, **kw: Any) -> BrazeSim:
    sim = BrazeSim(api_key=KEY, clock=ft.clock, **kw)
    for i in range(n):
        sim.add_profile(external_id=f"u{i}", email=f"u{i}@x.com",
                        email_subscribe="unsubscribed" if i % 3 == 0 else "subscribed")
    return sim


def downloads(sim: BrazeSim) -> list[dict[str, Any]]:
    return [c for c in sim.calls if c["path"].startswith("/_downloads/")]


def test_loopback_export_waits_for_the_file_and_reads_every_user():
    ft = FakeTime()
    sim = seeded(ft, 12, segment_export_delay_seconds=25, segment_file_users=5)
    with serve(sim) as running, make_client(ft, url=running.url) as client:
        users = list(client.export_segment("all-users", FIELDS, poll_seconds=10, timeout_seconds=120))
    assert sorted(u["external_id"] for u in users) == sorted(f"u{i}" for i in range(12))
    assert all(set(u) == set(FIELDS) for u in users)
    assert {u["email_subscribe"] for u in users if u["external_id"] == "u3"} == {"unsubscribed"}
    assert [c["status"] for c in downloads(sim)] == [404, 404, 404, 200] and ft.sleeps == [10, 10, 10]
    post = [c for c in sim.calls if c["path"] == "/users/export/segment"][0]
    assert post["body"] == {"segment_id": "all-users", "fields_to_export": FIELDS}


def test_download_never_carries_the_braze_key():
    ft = FakeTime()
    sim = seeded(ft, 2)
    seen: list[httpx.Request] = []
    inner = sim.transport()

    def spy(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return inner.handle_request(request)

    users = list(make_client(ft, httpx.MockTransport(spy)).export_segment("all-users", ["external_id"]))
    download = [r for r in seen if r.url.path.startswith("/_downloads/")]
    assert len(users) == 2 and len(download) == 1
    assert "authorization" not in download[0].headers and KEY not in str(download[0].headers)
    assert seen[0].headers["authorization"] == f"Bearer {KEY}"


def test_in_process_export_of_many_files():
    ft = FakeTime()
    sim = seeded(ft, 23, segment_file_users=5, segment_id="everyone")
    users = list(make_client(ft, sim.transport()).export_segment("everyone", ["external_id", "email"]))
    assert len(users) == 23 and len({u["external_id"] for u in users}) == 23


def test_timeout_is_a_clear_transient_error():
    ft = FakeTime()
    sim = seeded(ft, 1, segment_export_delay_seconds=3600)
    with pytest.raises(ExportUnavailable, match="not ready after 60s") as info:
        make_client(ft, sim.transport()).export_segment("all-users", ["email"], poll_seconds=15, timeout_seconds=60)
    assert "X-Amz-Signature" not in str(info.value) and sum(ft.sleeps) == 60


def test_unknown_segment_is_a_fatal_400():
    ft = FakeTime()
    with pytest.raises(FatalApiError) as info:
        make_client(ft, seeded(ft, 1).transport()).export_segment("nope", ["email"])
    assert info.value.status_code == 400 and "does not exist" in str(info.value)


def test_partner_key_cannot_export_segments():
    ft = FakeTime()
    sim = seeded(ft, 1, permissions=PARTNER_PERMISSIONS)
    with pytest.raises(PermissionDenied):
        make_client(ft, sim.transport()).export_segment("all-users", ["email"])


def test_bad_arguments_fail_before_any_request():
    ft = FakeTime()
    sim = seeded(ft, 1)
    for args in (("", ["email"]), ("all-users", [])):
        with pytest.raises(ValueError):
            make_client(ft, sim.transport()).export_segment(*args)
    assert sim.calls == []


# -- hand-built answers ----------------------------------------------------------------------
def zip_of(files: dict[str, str]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return out.getvalue()


def api(download: Callable[[httpx.Request], httpx.Response],
        started: dict[str, Any] | None = None) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "rest.example.braze.com":
            return httpx.Response(201, json=started or {
                "message": "success", "object_prefix": "p1", "url": "https://bucket.s3.example/p1.zip?X-Amz-Signature=s"})
        return download(request)
    return httpx.MockTransport(handler)


def test_malformed_line_is_a_data_error_naming_file_and_line():
    body = zip_of({"p1/a.json": '{"external_id": "u1"}\n', "p1/b.json": '{"external_id": "u2"}\n\n{"email": "a@x.c\n'})
    users = make_client(FakeTime(), api(lambda r: httpx.Response(200, content=body))).export_segment("s", ["email"])
    assert next(users) == {"external_id": "u1"} and next(users) == {"external_id": "u2"}
    with pytest.raises(DataError, match=r"'p1/b.json' line 3: not valid JSON") as info:
        next(users)
    assert "a@x.c" not in str(info.value)


def test_a_line_that_is_not_an_object_is_a_data_error():
    body = zip_of({"p1/a.json": '["u1"]\n'})
    with pytest.raises(DataError, match="line 1: not a JSON object"):
        list(make_client(FakeTime(), api(lambda r: httpx.Response(200, content=body))).export_segment("s", ["email"]))


def test_gzip_download_is_read_too():
    body = gzip.compress(b'{"external_id": "u1"}\n{"external_id": "u2"}\n')
    users = make_client(FakeTime(), api(lambda r: httpx.Response(200, content=body))).export_segment("s", ["email"])
    assert [u["external_id"] for u in users] == ["u1", "u2"]


def test_not_a_zip_is_a_data_error():
    client = make_client(FakeTime(), api(lambda r: httpx.Response(200, content=b"<html>login</html>")))
    with pytest.raises(DataError, match="neither a zip nor a gzip"):
        list(client.export_segment("s", ["email"]))


def test_download_over_the_size_cap_is_refused():
    body = zip_of({"p1/a.json": json.dumps({"email": "x" * 5000}) + "\n"})
    client = make_client(FakeTime(), api(lambda r: httpx.Response(200, content=body)))
    with pytest.raises(DataError, match="larger than max_bytes=100"):
        client.export_segment("s", ["email"], max_bytes=100)


def test_403_5xx_and_timeouts_mean_poll_again():
    answers = iter(["403", "503", "timeout", "200"])
    body = zip_of({"p1/a.json": '{"external_id": "u1"}\n'})

    def download(request: httpx.Request) -> httpx.Response:
        step = next(answers)
        if step == "timeout":
            raise httpx.ReadTimeout("slow", request=request)
        return httpx.Response(int(step), content=body if step == "200" else b"<Error/>")

    ft = FakeTime()
    assert list(make_client(ft, api(download)).export_segment("s", ["email"], poll_seconds=5)) == [{"external_id": "u1"}]
    assert ft.sleeps == [5, 5, 5]


def test_other_download_refusals_are_fatal():
    client = make_client(FakeTime(), api(lambda r: httpx.Response(410, content=b"<Error>Expired</Error>")))
    with pytest.raises(FatalApiError) as info:
        client.export_segment("s", ["email"])
    assert info.value.status_code == 410 and "X-Amz-Signature" not in str(info.value)


@pytest.mark.parametrize("started, error", [
    ({"message": "success", "object_prefix": "p1"}, ExportUnavailable),
    ({"object_prefix": "p1", "url": "https://b/p1.zip"}, UnconfirmedWrite),
])
def test_start_answer_without_url_or_success(started, error):
    with pytest.raises(error):
        make_client(FakeTime(), api(lambda r: httpx.Response(200), started)).export_segment("s", ["email"])
