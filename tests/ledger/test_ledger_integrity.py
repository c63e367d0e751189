"""A reused metadata.uid is a replay only when the body matches; messages for another Ketch
organization or property are refused. Over HTTP on loopback."""

from __future__ import annotations

from tests.ledger.conftest import consent, delete, message

EMAIL = "integrity@example.com"


def test_a_uid_reused_by_another_message_is_refused_and_the_request_is_not_lost(lw):
    unknown = message("PortabilityRequest", {"identities": []})
    assert lw.post(unknown).status_code == 400  # kept with its uid
    doc = delete(EMAIL, uid=unknown["metadata"]["uid"])
    r = lw.post(doc)
    assert r.status_code == 409 and "already used by a different message" in r.json()["error"]["message"]
    assert lw.ledger.requests() == []  # not answered from the old record as if stored
    conflict = [e for e in lw.ledger.events() if e["reply_status"] == 409]
    assert len(conflict) == 1 and conflict[0]["uid"] is None and conflict[0]["outcome"] == "invalid"

    fresh = delete(EMAIL)
    first = lw.post(fresh)
    assert first.status_code == 200
    assert lw.post(fresh).json() == first.json()  # a true replay: same answer, stored once
    changed = dict(fresh, request={**fresh["request"], "subject": {"email": "other@example.com"}})
    assert lw.post(changed).status_code == 409
    assert len(lw.ledger.requests()) == 1


def test_messages_for_another_organization_or_property_are_refused(lw):
    other_tenant = consent(EMAIL)
    other_tenant["metadata"]["tenant"] = "not-acme"
    r = lw.post(other_tenant)
    assert r.status_code == 400 and "metadata.tenant" in r.json()["error"]["message"]
    other_property = delete(EMAIL)
    other_property["request"]["property"] = "mobile-app"
    r = lw.post(other_property)
    assert r.status_code == 400 and "request.property" in r.json()["error"]["message"]
    assert lw.ledger.requests() == [] and lw.ledger.changed_since(None) == []
    assert lw.post(consent(EMAIL)).status_code == 204  # the configured ones still pass


def test_deeply_nested_json_gets_400_not_500(lw):
    for raw in (b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 50_000 + b"1" + b"}" * 50_000):
        r = lw.post(raw=raw[:4000])  # within max_body_bytes (4096 in the tests)
        assert r.status_code == 400 and "nests deeper" in r.json()["error"]["message"]
    assert lw.post(consent(EMAIL)).status_code == 204
    inside = lw.post(raw=b"{\"s\": \"" + b"[" * 1000 + b"\"}")  # brackets in a string do not count
    assert inside.status_code == 400 and "nests deeper" not in inside.json()["error"]["message"]


def test_requests_in_flight_beyond_the_limit_get_503_with_retry_after():
    """InFlightLimit counts requests being handled, not connections: the second of two
    concurrent requests over a limit of one is answered 503 with Retry-After in the spec's
    Error shape; once the first is done, the next is served."""
    import asyncio

    from reconcile.ledger.connections import InFlightLimit

    async def scenario() -> list[tuple[int, dict]]:
        release = asyncio.Event()

        async def app(scope, receive, send):
            await release.wait()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"{}"})

        limited = InFlightLimit(app, 1)
        answers: list[tuple[int, dict]] = []

        async def call():
            sent = []

            async def send(message):
                sent.append(message)
            await limited({"type": "http"}, None, send)
            answers.append((sent[0]["status"], dict(sent[0]["headers"])))
        first = asyncio.create_task(call())
        await asyncio.sleep(0)
        await call()
        release.set()
        await first
        await call()
        return answers

    busy, done, later = asyncio.run(scenario())
    assert busy[0] == 503 and busy[1][b"retry-after"] == b"5"
    assert done[0] == 200 and later[0] == 200
