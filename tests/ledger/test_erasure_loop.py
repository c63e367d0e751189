"""The erasure loop end to end over loopback: a DeleteRequest reaches the ledger, the next
`run` deletes the profile in the sandbox, and the request's callback receives
`DeleteStatusEvent completed` with the request's Authorization header; no_match, ambiguity, guards,
refused callback URLs and callbacks that fail before they succeed."""

from __future__ import annotations

from pathlib import Path

from reconcile.pipeline.job import run_job
from reconcile.reports.build import write_report
from tests.ledger.conftest import delete, ledger_config

HEADERS = {"Authorization": "Bearer ketch-callback-7c2a", "X-Ketch-Trace": "t-1"}


def seeded(lw, subjects: int = 50) -> list[str]:
    lw.w.seed(lw.cfg, subjects=subjects, drift=0.0)
    (lw.w.tmp / "deletions.csv").write_text("identity,requested_at\n")
    emails = [line.split(",")[0] for line in (lw.w.tmp / "universe.csv").read_text().splitlines()[1:]]
    return [e for e in emails if len(lw.w.braze.profiles_by_email(e)) == 1]


def test_a_delete_request_is_executed_and_reported_completed_with_its_headers(lw):
    email = seeded(lw)[3]
    receiver = lw.receiver()
    doc = delete(email, [{"url": receiver.url, "headers": HEADERS}])
    assert lw.post(doc).status_code == 200
    with lw.runtime() as rt:
        result = run_job(rt)
    assert result.status == "applied", result.messages
    assert result.counts["missed_deletion"] == 1
    assert lw.w.braze.profiles_by_email(email) == []
    (got,) = receiver.received
    assert got["headers"]["authorization"] == HEADERS["Authorization"]
    assert "x-ketch-trace" not in got["headers"] and got["headers"]["content-type"] == "application/json"
    body = got["body"]
    assert body["apiVersion"] == "dsr/v1" and body["kind"] == "DeleteStatusEvent"
    assert body["metadata"] == doc["metadata"]
    assert body["event"]["status"] == "completed" and body["event"]["reason"] == "executed"
    assert body["event"]["requestID"] == doc["metadata"]["uid"]
    (req,) = lw.ledger.requests()
    assert req["status"] == "completed" and req["reason"] == "executed" and req["completed_run"] == result.run_id
    history = lw.ledger.history(req["uid"])
    assert [h["status"] for h in history] == ["in_progress", "completed", "completed"]
    assert "delivered" in history[-1]["message"]
    (cb,) = lw.ledger.callbacks()
    assert cb["status"] == "delivered" and cb["attempts"] == 1
    with lw.runtime() as rt:  # completed is final: nothing is sent again, nothing is deleted again
        again = run_job(rt)
    assert again.status == "in_sync" and len(receiver.received) == 1


def test_an_unknown_subject_gets_no_match(lw):
    seeded(lw)
    receiver = lw.receiver()
    assert lw.post(delete("nobody.here@example.com", [{"url": receiver.url, "headers": HEADERS}])).status_code == 200
    braze_deletes = len([c for c in lw.w.braze.calls if c["path"] == "/users/delete"])
    with lw.runtime() as rt:
        result = run_job(rt)
    assert result.status == "in_sync", result.messages
    assert len([c for c in lw.w.braze.calls if c["path"] == "/users/delete"]) == braze_deletes
    (got,) = receiver.received
    assert got["body"]["event"]["status"] == "completed" and got["body"]["event"]["reason"] == "no_match"


def test_a_shared_address_is_erased_profile_by_profile_by_braze_id(lw):
    email = seeded(lw)[2]
    lw.w.braze.add_profile(external_id=None, email=email.upper(), email_subscribe="subscribed")
    ids = sorted(p.braze_id for p in lw.w.braze.profiles_by_email(email))
    receiver = lw.receiver()
    lw.post(delete(email, [{"url": receiver.url, "headers": HEADERS}]))
    with lw.runtime() as rt:
        result = run_job(rt)
    assert result.status == "applied", result.messages
    assert result.counts["ambiguous_identity"] == 0 and result.counts["missed_deletion"] == 1
    assert lw.w.braze.profiles_by_email(email) == []
    sent = [c["body"] for c in lw.w.braze.calls if c["path"] == "/users/delete"]
    assert sorted(i for body in sent for i in body.get("braze_ids", [])) == ids
    assert not any("email_addresses" in body for body in sent)
    (got,) = receiver.received
    assert got["body"]["event"]["status"] == "completed" and got["body"]["event"]["reason"] == "executed"


def test_a_guard_refusal_keeps_the_request_in_progress_and_sends_nothing(lw):
    email = seeded(lw)[1]
    receiver = lw.receiver()
    lw.post(delete(email, [{"url": receiver.url, "headers": HEADERS}]))
    cfg = ledger_config(lw.w, guards={"max_deletions": 0})
    with lw.runtime(cfg) as rt:
        result = run_job(rt)
    assert result.status == "refused"
    assert len(lw.w.braze.profiles_by_email(email)) == 1
    assert receiver.received == [] and lw.ledger.requests()[0]["status"] == "in_progress"
    with lw.runtime() as rt:
        assert run_job(rt, overrides={"max_deletions"}).status == "applied"
    assert receiver.received[0]["body"]["event"]["reason"] == "executed"


def test_a_callback_failing_twice_gets_the_event_on_the_third_try_in_one_run(lw):
    email = seeded(lw)[4]
    receiver = lw.receiver(fail_first=2)
    lw.post(delete(email, [{"url": receiver.url, "headers": HEADERS}]))
    with lw.runtime() as rt:
        run_job(rt)
    assert len(receiver.received) == 3
    assert all(r["body"] == receiver.received[0]["body"] for r in receiver.received)
    (cb,) = lw.ledger.callbacks()
    assert cb["status"] == "delivered" and cb["attempts"] == 3


def test_failed_callbacks_are_retried_by_later_runs_and_reported(lw):
    email = seeded(lw)[5]
    receiver = lw.receiver(fail_first=2)
    lw.post(delete(email, [{"url": receiver.url, "headers": HEADERS}]))
    cfg = ledger_config(lw.w, ledger={"callback_tries_per_run": 1})
    runs = []
    for _ in range(3):
        with lw.runtime(cfg) as rt:
            runs.append(run_job(rt))
            failed = [e for e in rt.store.exceptions(runs[-1].run_id) if e["source"] == "ketch_callback"]
            if len(runs) == 1:
                report = write_report(rt.store, runs[0].run_id, cfg)
        assert len(failed) == (1 if len(runs) < 3 else 0)
    assert len(receiver.received) == 3
    assert "ketch_callback" in Path(report).read_text() and "HTTP 500" in Path(report).read_text()
    (cb,) = lw.ledger.callbacks()
    assert cb["status"] == "delivered" and cb["attempts"] == 3 and cb["last_error"] is None
    messages = [h["message"] for h in lw.ledger.history(lw.ledger.requests()[0]["uid"])]
    assert sum("failed (attempt" in m for m in messages) == 2 and "delivered" in messages[-1]


def test_callback_urls_are_untrusted(lw):
    email = seeded(lw)[6]
    receiver = lw.receiver()
    lw.post(delete(email, [{"url": "http://callbacks.example.net/cb", "headers": HEADERS},
                           {"url": receiver.url.replace("/callback", "/redirect"), "headers": HEADERS}]))
    refused, _ = lw.ledger.callbacks()
    assert refused["status"] == "refused" and "plain http" in refused["last_error"]
    with lw.runtime() as rt:
        run_job(rt)
    assert lw.ledger.requests()[0]["status"] == "completed"
    assert [c["status"] for c in lw.ledger.callbacks()] == ["refused", "delivered"]
    assert len(receiver.received) == 1


def test_a_redirecting_callback_is_not_followed(lw):
    email = seeded(lw)[7]
    receiver = lw.receiver(answer=302)
    lw.post(delete(email, [{"url": receiver.url, "headers": HEADERS}]))
    with lw.runtime() as rt:
        result = run_job(rt)
        failed = [e for e in rt.store.exceptions(result.run_id) if e["source"] == "ketch_callback"]
    assert len(receiver.received) == lw.cfg.ledger.callback_tries_per_run
    (cb,) = lw.ledger.callbacks()
    assert cb["status"] == "pending" and "redirects are not followed" in cb["last_error"]
    assert len(failed) == 1 and email not in failed[0]["reason"]
