"""The ledger's tables on SQLite and PostgreSQL: one record per uid, completion is final,
callbacks queue and retry, deletions found done in drift_items."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from reconcile.store.ledger import LedgerStore, Received

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


def delete_request(uid: str) -> Received:
    return Received("accepted", 200, {"kind": "DeleteResponse"}, "{}", 2, T0, uid=uid, api_version="dsr/v1",
                    kind="DeleteRequest", tenant="acme",
                    request={"uid": uid, "tenant": "acme", "identity": "a@example.com", "identities": [],
                             "regulation": "gdpr", "jurisdiction": "eugdpr", "submitted_at": T0, "due_at": T0,
                             "status": "in_progress", "reason": None},
                    callbacks=[{"position": 0, "url": "https://dsr.ketch.com/cb", "headers": {"Authorization": "x"}}])


def test_a_uid_is_recorded_once_and_completion_is_final(store):
    ledger = LedgerStore.of(store)
    assert ledger.receive(delete_request("u-1")) == (200, {"kind": "DeleteResponse"}, False)
    other = delete_request("u-1")
    other.reply_status, other.reply = 500, {"kind": "Other"}
    assert ledger.receive(other) == (200, {"kind": "DeleteResponse"}, True)
    assert len(ledger.events()) == 1 and len(ledger.requests()) == 1
    store.start_run("r1", mode="full", config_hash="h", started_at=T0)
    assert ledger.complete("u-1", "no_match", "m", {"kind": "DeleteStatusEvent"}, "r1", T0)
    assert not ledger.complete("u-1", "executed", "m", {}, "r1", T0)
    (req,) = ledger.requests()
    assert req["status"] == "completed" and req["reason"] == "no_match" and req["completed_run"] == "r1"
    (due,) = ledger.due_callbacks(T0)
    assert due["headers"] == {"Authorization": "x"} and due["event"] == {"kind": "DeleteStatusEvent"}
    ledger.callback_failed(due["id"], 1, "HTTP 500", T0 + timedelta(minutes=15))
    assert ledger.due_callbacks(T0) == [] and len(ledger.due_callbacks(T0 + timedelta(minutes=15))) == 1
    ledger.callback_delivered(due["id"], 2, T0)
    assert ledger.due_callbacks(T0 + timedelta(days=1)) == []
    (cb,) = ledger.callbacks()
    assert cb["status"] == "delivered" and cb["attempts"] == 2
    assert [h["status"] for h in ledger.history("u-1")] == ["in_progress", "completed"]


def test_verified_and_resolved_deletions_count_as_done(store):
    ledger = LedgerStore.of(store)
    store.start_run("r1", mode="full", config_hash="h", started_at=T0)
    item = {"subject_key": "a@example.com", "drift_class": "missed_deletion", "field": "profile",
            "expected": "absent", "actual": "present", "severity": "critical", "reason": "r"}
    ids = store.record_drift("r1", [item, {**item, "subject_key": "b@example.com"}],
                             ["a@example.com", "b@example.com"], T0)
    assert ledger.verified_deletions(["a@example.com", "b@example.com"]) == {}
    store.mark_verified([ids[("a@example.com", "missed_deletion", "profile")]], T0 + timedelta(minutes=5))
    assert ledger.verified_deletions(["a@example.com", "b@example.com"]) == {"a@example.com": T0 + timedelta(minutes=5)}
