"""The ledger over real loopback HTTP: every message kind, auth, malformed and oversized
bodies, replays, unknown kinds, health, and what is kept (and not kept) of a message."""

from __future__ import annotations

import base64
import json
import logging
import socket

import pytest

from reconcile.ledger.app import create_app
from reconcile.ledger.serve import start_in_thread
from reconcile.store.schema import ledger_events
from tests.ledger.conftest import ENV, TOKEN, consent, delete, identities, ledger_config, message, now_ts

EMAIL = "kim.lee@example.com"


def subscription_topics() -> dict:
    return message("SubscriptionTopicRequest", {
        "property": "web", "environment": "production", "identities": identities(EMAIL),
        "topics": {"newsletter": {"contactMethods": ["email"], "status": "denied"},
                   "promotions": {"email": {"status": "granted"}}},
        "submittedTimestamp": now_ts()})


def subscription_controls() -> dict:
    return message("SubscriptionControlRequest", {
        "property": "web", "environment": "production", "identities": identities(EMAIL),
        "controls": {"global_unsubscribe": {"status": "granted"}}, "submittedTimestamp": now_ts()})


def dsr(kind: str) -> dict:
    doc = delete(EMAIL)
    doc["kind"] = kind
    return doc


def test_each_message_kind_gets_the_spec_answer(lw):
    r = lw.post(consent(EMAIL))
    assert r.status_code == 204 and r.content == b""
    assert lw.post(subscription_topics()).status_code == 202
    assert lw.post(subscription_controls()).status_code == 202
    doc = delete(EMAIL, [{"url": "https://dsr.ketch.com/callback", "headers": {"Authorization": "cb-secret"}}])
    r = lw.post(doc)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["kind"] == "DeleteResponse" and body["apiVersion"] == "dsr/v1"
    assert body["metadata"] == doc["metadata"]
    assert body["response"]["status"] == "in_progress" and body["response"]["requestID"] == doc["metadata"]["uid"]
    expected = body["response"]["expectedCompletionTimestamp"]
    assert isinstance(expected, int) and now_ts() < expected <= doc["request"]["dueTimestamp"]
    for kind in ("AccessRequest", "CorrectionRequest", "RestrictProcessingRequest"):
        r = lw.post(dsr(kind))
        assert r.status_code == 200, r.text
        assert r.json()["kind"] == kind.replace("Request", "Response")
        reply = r.json()["response"]
        assert reply["status"] == "pending" and reply["status"] != "completed"  # not processed here: never completed
        assert isinstance(reply["expectedCompletionTimestamp"], int)
    changes = lw.ledger.changed_since(None)
    assert [c["identity"] for c in changes] == [EMAIL]  # three changes, one subject
    (req,) = lw.ledger.requests()
    assert req["identity"] == EMAIL and req["regulation"] == "gdpr" and req["jurisdiction"] == "eugdpr"
    assert req["status"] == "in_progress" and int(req["due_at"].timestamp()) == doc["request"]["dueTimestamp"]
    assert [h["status"] for h in lw.ledger.history(req["uid"])] == ["in_progress"]
    assert [e["kind"] for e in lw.ledger.events()][::-1] == [
        "ConsentRequest", "SubscriptionTopicRequest", "SubscriptionControlRequest", "DeleteRequest",
        "AccessRequest", "CorrectionRequest", "RestrictProcessingRequest"]


@pytest.mark.parametrize("auth", [None, "Bearer wrong-token", f"Bearer {TOKEN}x", f"bearer{TOKEN}",
                                  "Basic " + base64.b64encode(f"u:{TOKEN}".encode()).decode(), f"Token {TOKEN}",
                                  TOKEN[:-1]])
def test_bad_credentials_are_refused_with_401_and_nothing_is_kept(lw, auth):
    headers = {"Authorization": auth} if auth else {}
    r = lw.post(consent(EMAIL), token=None, headers=headers)
    assert r.status_code == 401
    assert r.json()["kind"] == "Error" and r.json()["error"]["code"] == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert lw.ledger.events() == []


def test_basic_auth(world):
    cfg = ledger_config(world, ledger={"bearer_token_env": "", "basic_user_env": "HOOK_USER",
                                       "basic_password_env": "HOOK_PASSWORD"})
    env = {**ENV, "HOOK_USER": "ketch", "HOOK_PASSWORD": "pa:ss"}
    from reconcile.store.store import Store

    with Store.open(cfg.state.url) as store, start_in_thread(create_app(cfg, store, environ=env)) as server:
        import httpx

        url = server.url + cfg.ledger.path
        assert httpx.post(url, json=consent(EMAIL), auth=("ketch", "pa:ss")).status_code == 204
        assert httpx.post(url, json=consent(EMAIL), auth=("ketch", "pa:sx")).status_code == 401
        assert httpx.post(url, json=consent(EMAIL), headers={"Authorization": "Basic !!"}).status_code == 401


def test_a_missing_secret_stops_the_app_from_starting(world):
    from reconcile.errors import ConfigError
    from reconcile.store.store import Store

    cfg = ledger_config(world)
    with Store.open(cfg.state.url) as store, pytest.raises(ConfigError) as info:
        create_app(cfg, store, environ={})
    assert "KETCH_WEBHOOK_TOKEN is not set" in str(info.value)


@pytest.mark.parametrize("raw, fragment", [
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (json.dumps({"kind": "ConsentRequest", "apiVersion": "consent/v1", "metadata": {"tenant": "acme"},
                 "request": {}}).encode(), "metadata.uid"),
])
def test_malformed_bodies_get_400_in_the_error_shape(lw, raw, fragment):
    r = lw.post(raw=raw)
    assert r.status_code == 400
    body = r.json()
    assert body["apiVersion"] == "v1" and body["kind"] == "Error"
    assert body["error"]["code"] == 400 and body["error"]["status"] == "invalid" and fragment in body["error"]["message"]
    (kept,) = lw.ledger.events()
    assert kept["outcome"] == "invalid" and kept["uid"] is None and fragment in kept["error"]


@pytest.mark.parametrize("change, fragment", [
    (lambda d: d["request"].pop("identities"), "request.identities"),
    (lambda d: d["request"].update(purposes={"email_marketing": "yes"}), "request.purposes.email_marketing"),
    (lambda d: d["request"].update(collectedAt="yesterday"), "request.collectedAt"),
    (lambda d: d["request"]["identities"][0].update(identityFormat="rot13"), "identityFormat"),
    (lambda d: d.update(apiVersion="dsr/v9"), "apiVersion"),
])
def test_schema_violations_name_the_field(lw, change, fragment):
    doc = consent(EMAIL)
    change(doc)
    r = lw.post(doc)
    assert r.status_code == 400 and fragment in r.json()["error"]["message"], r.text
    assert r.json()["metadata"]["uid"] == doc["metadata"]["uid"]
    assert lw.ledger.changed_since(None) == []


def test_a_delete_request_with_a_malformed_due_time_is_refused(lw):
    doc = delete(EMAIL)
    doc["request"]["dueTimestamp"] = "next week"
    r = lw.post(doc)
    assert r.status_code == 400 and "request.dueTimestamp" in r.json()["error"]["message"]
    assert lw.ledger.requests() == []


def test_oversized_bodies_get_413(lw):
    doc = consent(EMAIL)
    doc["request"]["context"] = {"pad": "x" * 5000}
    r = lw.post(doc)
    assert r.status_code == 413 and r.json()["error"]["code"] == 413
    # the same without a Content-Length: a chunked body is cut off at the limit
    with socket.create_connection(("127.0.0.1", int(lw.server.url.rsplit(":", 1)[1])), timeout=5) as s:
        body = json.dumps(doc).encode()
        head = (f"POST {lw.cfg.ledger.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
                "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
        s.sendall(head + b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 1000]), body[i:i + 1000])
                                  for i in range(0, len(body), 1000)) + b"0\r\n\r\n")
        answer = s.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413")
    assert lw.ledger.events() == []


def test_a_replay_is_stored_once_and_answered_the_same(lw):
    doc = delete(EMAIL, [{"url": "https://dsr.ketch.com/callback", "headers": {"Authorization": "cb"}}])
    first, again = lw.post(doc), lw.post(doc)
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()
    c = consent(EMAIL)
    assert lw.post(c).status_code == lw.post(c).status_code == 204
    assert len(lw.ledger.events()) == 2 and len(lw.ledger.requests()) == 1
    assert len(lw.ledger.callbacks()) == 1 and len(lw.ledger.changed_since(None)) == 1


def test_unknown_kinds_get_400_and_are_kept_for_inspection(lw):
    doc = message("PortabilityRequest", {"identities": identities(EMAIL)})
    r = lw.post(doc)
    assert r.status_code == 400
    assert "PortabilityRequest" in r.json()["error"]["message"] and r.json()["error"]["status"] == "invalid"
    (kept,) = lw.ledger.events("unknown_kind")
    assert kept["kind"] == "PortabilityRequest" and kept["uid"] == doc["metadata"]["uid"]
    assert json.loads(kept["body"])["request"]["identities"][0]["identityValue"] == EMAIL
    assert lw.post(doc).json() == r.json()  # a replay of it too is answered the same
    assert len(lw.ledger.events()) == 1


def test_healthz(lw):
    import httpx

    r = httpx.get(lw.server.url + "/healthz", timeout=5)
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_access_log_and_store_keep_no_identity_or_secret(lw, caplog):
    caplog.set_level(logging.DEBUG)
    doc = delete(EMAIL, [{"url": "https://dsr.ketch.com/callback", "headers": {"Authorization": "Bearer cb-9f3e"}}])
    assert lw.post(doc).status_code == 200
    lw.post(consent(EMAIL, email_marketing="granted"))
    lw.post(raw=b'{"oops": "' + EMAIL.encode() + b'"')
    access = [r.getMessage() for r in caplog.records if r.name == "reconcile.ledger.access"]
    assert len(access) == 3 and any(" 200 DeleteRequest " in a for a in access)
    assert EMAIL not in caplog.text and doc["metadata"]["uid"] not in caplog.text and TOKEN not in caplog.text
    with lw.store._engine.connect() as conn:
        bodies = [row.body for row in conn.execute(ledger_events.select())]
    assert all("cb-9f3e" not in b for b in bodies)
    assert any(EMAIL in b for b in bodies)  # the raw event is kept (it is the evidence of the request)
    (cb,) = lw.ledger.callbacks()
    assert cb["status"] == "waiting" and "headers" not in cb


def test_readyz_and_openapi_over_http(lw):
    import httpx

    ready = httpx.get(lw.server.url + "/readyz", timeout=5)
    assert ready.status_code == 200 and ready.json() == {"status": "ok"}
    doc = httpx.get(lw.server.url + "/openapi.json", timeout=5).json()
    assert doc["openapi"].startswith("3.1")
    assert {"/healthz", "/readyz"} <= set(doc["paths"]) and any("post" in v for v in doc["paths"].values())
    kinds = doc["components"]["schemas"]["Message"]["properties"]["kind"]["enum"]
    assert {"ConsentRequest", "DeleteRequest", "SubscriptionTopicRequest", "SubscriptionControlRequest"} <= set(kinds)


def test_the_docs_sample_messages_are_accepted_as_documented(lw):
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "ledger.md").read_text(encoding="utf-8")
    samples = re.findall(r"^## (\w+) \(answered (\d+)[^)]*\)\n\n```json\n(.*?)```", text, re.M | re.S)
    assert {kind for kind, _, _ in samples} == {"ConsentRequest", "SubscriptionTopicRequest",
                                                 "SubscriptionControlRequest", "DeleteRequest"}
    for kind, status, body in samples:
        doc = json.loads(body)
        assert doc["kind"] == kind and doc["request"]["property"] == "website"
        doc["request"]["property"] = lw.cfg.ketch.property  # the docs' ketch.property is "website"
        r = lw.post(doc)
        assert r.status_code == int(status), (kind, r.text)
    assert len(lw.ledger.events()) == 4
