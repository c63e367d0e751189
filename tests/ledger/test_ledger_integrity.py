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
