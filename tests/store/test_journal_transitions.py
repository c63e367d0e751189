"""The action journal's transitions on each backend (SQLite and PostgreSQL, see tests/conftest.py).

pending -> sending -> confirmed | failed | rejected | skipped; a failed batch may be sent
again (attempts count every send); a confirmed one never goes back to sending; statuses
outside the documented set are refused, by the API and by the database itself.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import update

from reconcile.errors import StoreError
from reconcile.store.schema import ACTION_RESULTS, ACTION_STATUSES
from reconcile.store.schema import actions as action_table
from reconcile.store.store import Store

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
PLAN = "plan-t"


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def action(i: int) -> dict:
    return {"action_id": f"{PLAN}:{i}", "seq": i, "endpoint": "/subscription/status/set", "kind": "group_unsubscribe",
            "payload": {"targets": [[f"s{i}", "email", f"s{i}@x.io"]]}, "subject_keys": [f"s{i}"], "drift_ids": [i]}


@pytest.fixture
def journal(store: Store) -> Store:
    store.start_run("run-t", mode="full", config_hash="h", started_at=T0)
    store.save_plan(PLAN, "run-t", "fp", {"plan_id": PLAN}, at(1))
    store.journal_plan(PLAN, "run-t", [action(i) for i in range(4)], at(2))
    return store


def state(store: Store, i: int) -> dict:
    (row,) = [a for a in store.actions(plan_id=PLAN) if a["action_id"] == f"{PLAN}:{i}"]
    return row


def test_journal_plan_writes_every_action_pending_with_no_attempts(journal: Store) -> None:
    rows = journal.actions(plan_id=PLAN)
    assert [(r["status"], r["attempts"], r["sent_at"], r["finished_at"]) for r in rows] == \
        [("pending", 0, None, None)] * 4
    assert journal.unfinished_plans() == [PLAN]


@pytest.mark.parametrize("result", ["confirmed", "failed", "rejected", "skipped"])
def test_pending_then_sending_then_each_result(journal: Store, result: str) -> None:
    journal.journal_sending(f"{PLAN}:0", at(3))
    mid = state(journal, 0)
    assert (mid["status"], mid["attempts"], mid["sent_at"], mid["finished_at"]) == ("sending", 1, at(3), None)
    journal.journal_result(f"{PLAN}:0", result, response_summary={"status": 201}, error=None if result == "confirmed"
                           else f"why {result}", at=at(4))
    end = state(journal, 0)
    assert (end["status"], end["attempts"], end["sent_at"], end["finished_at"]) == (result, 1, at(3), at(4))
    assert end["response_summary"] == {"status": 201}
    assert end["error"] == (None if result == "confirmed" else f"why {result}")
    # the others are untouched
    assert [state(journal, i)["status"] for i in (1, 2, 3)] == ["pending"] * 3


def test_a_failed_batch_is_sent_again_and_every_attempt_is_counted(journal: Store) -> None:
    aid = f"{PLAN}:1"
    for n in range(1, 4):
        journal.journal_sending(aid, at(10 * n))
        assert (state(journal, 1)["status"], state(journal, 1)["attempts"]) == ("sending", n)
        journal.journal_result(aid, "failed", error=f"HTTP 503 #{n}", at=at(10 * n + 1))
        assert (state(journal, 1)["status"], state(journal, 1)["error"]) == ("failed", f"HTTP 503 #{n}")
    journal.journal_sending(aid, at(50))
    journal.journal_result(aid, "confirmed", response_summary={"message": "success"}, at=at(51))
    row = state(journal, 1)
    assert (row["status"], row["attempts"], row["sent_at"], row["finished_at"]) == ("confirmed", 4, at(50), at(51))
    assert row["error"] is None, "a confirmed result clears the last failure's error"


def test_a_batch_left_sending_by_a_crash_is_sent_again_with_attempts_counted(journal: Store) -> None:
    aid = f"{PLAN}:2"
    journal.journal_sending(aid, at(3))  # the process died here
    journal.journal_sending(aid, at(9))  # the resume sends it again
    row = state(journal, 2)
    assert (row["status"], row["attempts"], row["sent_at"]) == ("sending", 2, at(9))


def test_a_confirmed_action_never_goes_back_to_sending(journal: Store) -> None:
    aid = f"{PLAN}:0"
    journal.journal_sending(aid, at(3))
    journal.journal_result(aid, "confirmed", at=at(4))
    with pytest.raises(StoreError, match=rf"action '{PLAN}:0' is already confirmed; it must not be sent again"):
        journal.journal_sending(aid, at(5))
    row = state(journal, 0)
    assert (row["status"], row["attempts"], row["sent_at"], row["finished_at"]) == ("confirmed", 1, at(3), at(4)), \
        "the refused send changed nothing"


def test_rejected_and_skipped_actions_leave_the_unfinished_set(journal: Store) -> None:
    for i, result in enumerate(("confirmed", "rejected", "skipped")):
        journal.journal_sending(f"{PLAN}:{i}", at(3))
        journal.journal_result(f"{PLAN}:{i}", result, at=at(4))
    assert journal.unfinished_plans() == [PLAN]  # the last one is still pending
    journal.journal_sending(f"{PLAN}:3", at(5))
    assert journal.unfinished_plans() == [PLAN]  # sending is unfinished too
    journal.journal_result(f"{PLAN}:3", "failed", at=at(6))
    assert journal.unfinished_plans() == []
    assert sorted(a["status"] for a in journal.actions(plan_id=PLAN)) == ["confirmed", "failed", "rejected",
                                                                          "skipped"]


@pytest.mark.parametrize("status", ["sending", "pending", "done", "CONFIRMED", "", "verified"])
def test_unknown_or_non_result_statuses_are_refused(journal: Store, status: str) -> None:
    journal.journal_sending(f"{PLAN}:0", at(3))
    with pytest.raises(ValueError, match="is not one of confirmed, failed, rejected, skipped"):
        journal.journal_result(f"{PLAN}:0", status, at=at(4))
    assert state(journal, 0)["status"] == "sending"


def test_the_database_itself_refuses_an_unknown_status(journal: Store) -> None:
    assert set(ACTION_RESULTS) < set(ACTION_STATUSES)
    with pytest.raises(Exception) as caught:
        with journal._engine.begin() as conn:  # past the API: the CHECK constraint
            conn.execute(update(action_table).where(action_table.c.action_id == f"{PLAN}:0").values(status="bogus"))
    assert "status" in str(caught.value).lower() or "check" in str(caught.value).lower()
    assert state(journal, 0)["status"] == "pending"


def test_unknown_action_ids_are_a_store_error(journal: Store) -> None:
    with pytest.raises(StoreError, match="no action 'ghost' in the journal"):
        journal.journal_sending("ghost", at(3))
    with pytest.raises(StoreError, match="no action 'ghost' in the journal"):
        journal.journal_result("ghost", "confirmed", at=at(3))


def test_rejournaling_a_plan_keeps_the_recorded_progress(journal: Store) -> None:
    journal.journal_sending(f"{PLAN}:0", at(3))
    journal.journal_result(f"{PLAN}:0", "confirmed", at=at(4))
    journal.journal_sending(f"{PLAN}:1", at(5))
    journal.start_run("run-2", mode="full", config_hash="h", started_at=at(6))
    journal.journal_plan(PLAN, "run-2", [action(i) for i in range(5)], at(6))  # a resumed apply journals again
    rows = journal.actions(plan_id=PLAN)
    assert [(r["status"], r["attempts"], r["run_id"]) for r in rows] == [
        ("confirmed", 1, "run-t"), ("sending", 1, "run-t"), ("pending", 0, "run-t"), ("pending", 0, "run-t"),
        ("pending", 0, "run-2")]


def test_transitions_are_visible_to_a_second_connection(journal: Store, store_url: str) -> None:
    journal.journal_sending(f"{PLAN}:0", at(3))
    journal.journal_result(f"{PLAN}:0", "confirmed", at=at(4))
    journal.journal_sending(f"{PLAN}:1", at(5))
    with Store.open(store_url) as other:
        seen = {a["action_id"]: (a["status"], a["attempts"]) for a in other.actions(plan_id=PLAN)}
        with pytest.raises(StoreError, match="already confirmed"):
            other.journal_sending(f"{PLAN}:0", at(6))
    assert seen == {f"{PLAN}:0": ("confirmed", 1), f"{PLAN}:1": ("sending", 1), f"{PLAN}:2": ("pending", 0),
                    f"{PLAN}:3": ("pending", 0)}


def test_blocklisted_by_job_keys_addresses_as_the_engine_matches_them(store: Store) -> None:
    """The engine matches a Braze address by its mailbox key: a look-alike (`uſer`, a long s)
    is another mailbox, a non-ASCII letter keeps its case, an IDN domain is its A-label."""
    from reconcile.models.mailbox import key_or_none

    store.start_run("run-b", mode="full", config_hash="h", started_at=at(0))
    store.save_plan("plan-b", "run-b", "fp", {"plan_id": "plan-b"}, at(0))
    addresses = ["uſer@example.com", " Éva@München.de ", "Bob@Example.com"]
    store.journal_plan("plan-b", "run-b", [
        {"action_id": "plan-b:0", "seq": 0, "endpoint": "/email/blocklist", "kind": "blocklist",
         "payload": {"targets": [[a.strip(), "email", a] for a in addresses]}, "subject_keys": [], "drift_ids": []},
    ], at(0))
    store.journal_sending("plan-b:0", at(0))
    store.journal_result("plan-b:0", "confirmed", response_summary={"message": "success"}, at=at(0))

    listed = store.blocklisted_by_job()

    assert listed == {key_or_none(a) for a in addresses}
    assert "user@example.com" not in listed and "éva@münchen.de" not in listed
