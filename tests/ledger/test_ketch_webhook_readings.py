"""The ledger against Ketch's webhooks as a tenant may set them up (sandbox/ketch_webhooks.py):
the secret in a header of the admin's choosing, with or without a scheme; DeleteRequests
naming their subject only by `subject.email`, or without their times; rights the product
does not process. Over loopback: the ledger app served on 127.0.0.1, the simulators, runs."""

from __future__ import annotations

import pytest

from reconcile.config import load_config
from reconcile.errors import ConfigError
from reconcile.ledger.app import create_app
from reconcile.ledger.serve import start_in_thread
from reconcile.pipeline import run_job
from reconcile.sandbox.ketch_webhooks import KetchWebhooks
from reconcile.store.store import Store
from tests.ledger.conftest import ENV, TOKEN, LedgerWorld, consent, ledger_config, now_ts

EMAIL = "kim.lee@example.com"


@pytest.mark.parametrize("ledger, header, value", [
    ({}, "Authorization", "Bearer {token}"),  # the common reading: a bearer token
    ({}, "Authorization", "{token}"),  # the admin typed the token alone as the header's value
    ({"auth_header": "X-Ketch-Token", "auth_scheme": ""}, "X-Ketch-Token", "{token}"),
    ({"auth_header": "X-Ketch-Token", "auth_scheme": "Token"}, "x-ketch-token", "Token {token}"),
])
def test_the_secret_is_read_from_the_header_the_admin_chose(world, ledger, header, value):
    cfg = ledger_config(world, ledger=ledger)
    with Store.open(cfg.state.url) as store, start_in_thread(create_app(cfg, store, environ=ENV)) as server:
        url = server.url + cfg.ledger.path
        hooks = KetchWebhooks(url, TOKEN, auth_header=header, auth_value=value)
        assert hooks.send(consent(EMAIL)).status_code == 204
        wrong = KetchWebhooks(url, TOKEN + "x", auth_header=header, auth_value=value)
        refused = wrong.send(consent(EMAIL))
        assert refused.status_code == 401
        assert cfg.ledger.auth_header in refused.json()["error"]["message"] and TOKEN not in refused.text
        if header.lower() != "authorization":  # the right token in another header is no credential
            elsewhere = KetchWebhooks(url, TOKEN).send(consent(EMAIL))
            assert elsewhere.status_code == 401
        assert len([e for e in store_events(store) if e["outcome"] == "accepted"]) == 1


def store_events(store: Store) -> list[dict]:
    from reconcile.store.ledger import LedgerStore

    return LedgerStore.of(store).events()


@pytest.mark.parametrize("ledger, problem", [
    ({"auth_header": "Content-Length"}, "ledger.auth_header"),
    ({"auth_header": "X Ketch"}, "ledger.auth_header"),
    ({"auth_scheme": "Bearer token"}, "ledger.auth_scheme"),
])
def test_a_bad_auth_header_or_scheme_is_a_config_error_naming_the_key(world, ledger, problem):
    with pytest.raises(ConfigError) as err:
        ledger_config(world, ledger=ledger)
    assert problem in str(err.value)


def test_the_ledger_auth_keys_parse_from_a_job_file(world):
    path = world.tmp / "job.toml"
    for name in ("universe.csv", "deletions.csv"):
        (world.tmp / name).write_text("identity\n")
    path.write_text(world.toml('[ledger]\nenabled = true\nbearer_token_env = "T"\nauth_header = "X-Hook-Secret"\n'
                               'auth_scheme = ""\n'))
    cfg = load_config(path)
    assert (cfg.ledger.auth_header, cfg.ledger.auth_scheme) == ("X-Hook-Secret", "")


def _seeded(lw, key_type: str) -> None:
    lw.w.seed(lw.cfg, subjects=40, drift=0.0)
    (lw.w.tmp / "deletions.csv").write_text("identity,requested_at\n")


def _hooks(lw, **switches) -> KetchWebhooks:
    return KetchWebhooks(lw.url, TOKEN, **switches)


@pytest.fixture
def xw(world):
    """The ledger world under external_id keys (Ketch space account_id)."""
    cfg = ledger_config(world, key_type="external_id")
    store = Store.open(cfg.state.url)
    out = LedgerWorld(world, cfg, store, start_in_thread(create_app(cfg, store, environ=ENV)))
    try:
        yield out
    finally:
        out.server.stop()
        for r in out.receivers:
            r.running.stop()
        store.close()


def _profile_with_id_and_email(braze) -> tuple[str, str]:
    for p in braze.db.profiles.values():
        if p.external_id and p.email and len(braze.profiles_by_email(p.email)) == 1:
            return p.external_id, p.email
    raise AssertionError("the seeded workspace has no profile with both an external_id and an email")


@pytest.mark.parametrize("delete_identity", ["identities", "email_only"])
def test_an_erasure_is_looked_up_by_every_identity_under_external_id_keys(xw, delete_identity):
    _seeded(xw, "external_id")
    xid, email = _profile_with_id_and_email(xw.w.braze)
    receiver = xw.receiver()
    hooks = _hooks(xw, delete_identity=delete_identity)
    doc = hooks.dsr("DeleteRequest", email=email, space="account_id", value=xid,
                    callbacks=[{"url": receiver.url, "headers": {"Authorization": "cb"}}])
    assert hooks.send(doc).status_code == 200
    with xw.runtime(xw.cfg) as rt:
        result = run_job(rt)
    assert result.status == "applied", result.messages
    assert xw.w.braze.db.by_external_id(xid) is None and xw.w.braze.profiles_by_email(email) == []
    (got,) = receiver.received
    assert got["body"]["event"]["status"] == "completed" and got["body"]["event"]["reason"] == "executed"


def test_an_email_only_erasure_of_an_unknown_address_is_no_match_after_its_lookup(xw):
    _seeded(xw, "external_id")
    receiver = xw.receiver()
    hooks = _hooks(xw, delete_identity="email_only")
    doc = hooks.dsr("DeleteRequest", email="never.seen@example.com",
                    callbacks=[{"url": receiver.url, "headers": {}}])
    hooks.send(doc)
    with xw.runtime(xw.cfg) as rt:
        run_job(rt)
    lookups = [c for c in xw.w.braze.calls if c["path"] == "/users/export/ids"
               and (c["body"] or {}).get("email_address") == "never.seen@example.com"]
    assert lookups, "the address was never looked up in Braze"
    (got,) = receiver.received
    assert got["body"]["event"]["reason"] == "no_match"


def test_an_email_only_erasure_held_by_a_profile_without_external_id_stays_open(xw):
    _seeded(xw, "external_id")
    xw.w.braze.add_profile(external_id=None, email="anon.only@example.com", email_subscribe="subscribed")
    receiver = xw.receiver()
    hooks = _hooks(xw, delete_identity="email_only")
    hooks.send(hooks.dsr("DeleteRequest", email="anon.only@example.com",
                         callbacks=[{"url": receiver.url, "headers": {}}]))
    with xw.runtime(xw.cfg) as rt:
        result = run_job(rt)
        reasons = [e["reason"] for e in rt.store.exceptions(result.run_id) if e["source"] == "ketch_delete_request"]
    assert receiver.received == [] and xw.ledger.requests()[0]["status"] == "in_progress"
    assert reasons and "no external_id" in reasons[0]


def test_an_email_only_erasure_under_email_keys_is_executed(lw):
    _seeded(lw, "email")
    email = next(p.email for p in lw.w.braze.db.profiles.values()
                 if p.email and len(lw.w.braze.profiles_by_email(p.email)) == 1)
    receiver = lw.receiver()
    hooks = _hooks(lw, delete_identity="email_only")
    hooks.send(hooks.dsr("DeleteRequest", email=email, callbacks=[{"url": receiver.url, "headers": {}}]))
    with lw.runtime() as rt:
        assert run_job(rt).status == "applied"
    assert lw.w.braze.profiles_by_email(email) == []
    assert receiver.received[0]["body"]["event"]["reason"] == "executed"


def test_a_delete_request_without_its_times_is_accepted_and_executed(lw):
    _seeded(lw, "email")
    email = next(p.email for p in lw.w.braze.db.profiles.values()
                 if p.email and len(lw.w.braze.profiles_by_email(p.email)) == 1)
    hooks = _hooks(lw, timestamps="none")
    doc = hooks.dsr("DeleteRequest", email=email)
    assert "dueTimestamp" not in doc["request"] and "submittedTimestamp" not in doc["request"]
    r = hooks.send(doc)
    assert r.status_code == 200, r.text
    reply = r.json()["response"]
    assert reply["status"] == "in_progress" and isinstance(reply["expectedCompletionTimestamp"], int)
    assert reply["expectedCompletionTimestamp"] > now_ts()
    (req,) = lw.ledger.requests()
    assert req["submitted_at"] is None and req["due_at"] is None
    with lw.runtime() as rt:
        assert run_job(rt).status == "applied"
    assert lw.w.braze.profiles_by_email(email) == []
    assert lw.ledger.requests()[0]["reason"] == "executed"


@pytest.mark.parametrize("kind", ["AccessRequest", "CorrectionRequest", "RestrictProcessingRequest"])
@pytest.mark.parametrize("timestamps", ["both", "none"])
def test_rights_the_product_does_not_process_are_never_reported_completed(lw, kind, timestamps):
    _seeded(lw, "email")
    email = next(p.email for p in lw.w.braze.db.profiles.values() if p.email)
    receiver = lw.receiver()
    hooks = _hooks(lw, timestamps=timestamps)
    r = hooks.send(hooks.dsr(kind, email=email, callbacks=[{"url": receiver.url, "headers": {}}]))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["kind"] == kind.replace("Request", "Response")
    assert body["response"]["status"] != "completed" and isinstance(body["response"]["expectedCompletionTimestamp"],
                                                                    int)
    with lw.runtime() as rt:
        run_job(rt)
    assert receiver.received == []  # no status event claims it done later either
    assert lw.w.braze.profiles_by_email(email)  # and nothing was erased for it
