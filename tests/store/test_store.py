"""State store: runs, exceptions, plans, the action journal, tombstones, watermarks, errors.

Every test runs on SQLite and on PostgreSQL (see tests/conftest.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import traceback
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from reconcile.errors import StoreError
from reconcile.models.run import RunStatus
from reconcile.store.store import Store

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def start(store: Store, run_id: str = "run-1", minutes: float = 0, mode: str = "full") -> str:
    store.start_run(run_id, mode=mode, config_hash="cfg-abc", started_at=at(minutes))
    return run_id


def make_actions(n: int, plan_id: str = "plan-1") -> list[dict]:
    return [
        {
            "action_id": f"{plan_id}:{i:03d}",
            "seq": i,
            "endpoint": "/subscription/status/set",
            "kind": "unsubscribe_group",
            "payload": {"subscription_group_id": "g1", "external_id": [f"u{i}"]},
            "subject_keys": [f"u{i}"],
            "drift_ids": [i + 1],
        }
        for i in range(n)
    ]


def journaled(store: Store, n: int = 3) -> str:
    start(store)
    store.save_plan("plan-1", "run-1", "fp-1", {"actions": n}, at(1))
    store.journal_plan("plan-1", "run-1", make_actions(n), at(2))
    return "plan-1"


# runs ---------------------------------------------------------------------------------


def test_run_lifecycle(store: Store) -> None:
    start(store)
    run = store.get_run("run-1")
    assert run is not None
    assert (run["status"], run["mode"], run["config_hash"], run["started_at"]) == (
        "running",
        "full",
        "cfg-abc",
        T0,
    )
    store.update_run(
        "run-1",
        status="applied",
        universe_count=10,
        ketch_extracted_at=at(1),
        drift_counts={"missed_optout": 3, "unmatched": 1},
        guard_overrides=["max_deletions"],
        guard_result={"ok": True, "checks": [{"name": "max_deletions", "value": 2}]},
        exit_code=0,
        finished_at=at(5),
        summary={"note": "fine"},
    )
    run = store.get_run("run-1")
    assert run["status"] == "applied" and run["universe_count"] == 10 and run["exit_code"] == 0
    assert run["drift_counts"] == {"missed_optout": 3, "unmatched": 1}
    assert run["guard_overrides"] == ["max_deletions"]
    assert run["guard_result"]["checks"][0]["value"] == 2
    assert run["finished_at"] == at(5) and run["finished_at"].tzinfo == timezone.utc
    assert store.get_run("nope") is None


def test_update_run_rejects_unknown_fields_and_runs(store: Store) -> None:
    start(store)
    with pytest.raises(TypeError, match="colour"):
        store.update_run("run-1", colour="blue")
    with pytest.raises(StoreError, match="no run 'ghost'"):
        store.update_run("ghost", status="applied")


@pytest.mark.parametrize("bogus", ["ok", "APPLIED", "", None, 3])
def test_update_run_refuses_a_status_outside_run_status(store: Store, bogus: object) -> None:
    start(store)
    with pytest.raises(ValueError, match="is not one of running, planned"):
        store.update_run("run-1", status=bogus, exit_code=0)
    assert store.get_run("run-1")["status"] == "running" and store.get_run("run-1")["exit_code"] is None


def test_update_run_takes_run_status_members_and_start_run_a_job(store: Store) -> None:
    store.start_run("run-1", mode="full", config_hash="h", started_at=T0, job="nightly")
    store.update_run("run-1", status=RunStatus.INTERRUPTED, capabilities={"email.hard_bounces": False})
    run = store.get_run("run-1")
    assert (run["status"], run["job"]) == ("interrupted", "nightly")
    assert run["capabilities"] == {"email.hard_bounces": False}


def test_duplicate_run_id_is_a_store_error(store: Store) -> None:
    start(store)
    with pytest.raises(StoreError, match="start_run failed"):
        start(store)


def test_timestamps_must_be_timezone_aware(store: Store) -> None:
    with pytest.raises(StoreError, match="naive datetime"):
        store.start_run("r", mode="full", config_hash="h", started_at=datetime(2026, 1, 1))


def test_non_utc_timestamps_come_back_in_utc(store: Store) -> None:
    plus2 = timezone(timedelta(hours=2))
    store.start_run("r", mode="full", config_hash="h", started_at=datetime(2026, 1, 1, 12, tzinfo=plus2))
    assert store.get_run("r")["started_at"] == datetime(2026, 1, 1, 10, tzinfo=timezone.utc)
    assert store.get_run("r")["started_at"].utcoffset() == timedelta(0)


def test_list_runs_and_last_run(store: Store) -> None:
    for i, status in enumerate(["applied", "failed", "applied", "running"]):
        start(store, f"run-{i}", minutes=i * 10)
        store.update_run(f"run-{i}", status=status)
    assert [r["run_id"] for r in store.list_runs()] == ["run-3", "run-2", "run-1", "run-0"]
    assert [r["run_id"] for r in store.list_runs(limit=2)] == ["run-3", "run-2"]
    assert store.last_run()["run_id"] == "run-3"
    assert store.last_run(status_in=["applied"])["run_id"] == "run-2"
    assert store.last_run(status_in=["applied", "failed"], before_run="run-2")["run_id"] == "run-1"
    assert store.last_run(before_run="run-0") is None
    assert store.last_run(status_in=["refused"]) is None


# exceptions ---------------------------------------------------------------------------


def test_exceptions_keep_reason_and_extra_detail(store: Store) -> None:
    start(store)
    store.add_exceptions(
        "run-1",
        [
            {"identity": "not-an-email", "source": "universe", "reason": "malformed email"},
            {"identity": "a@x.com", "source": "braze", "reason": "ambiguous", "profiles": 3},
        ],
    )
    store.add_exceptions("run-1", [])
    rows = store.exceptions("run-1")
    assert [(r["identity"], r["reason"]) for r in rows] == [
        ("not-an-email", "malformed email"),
        ("a@x.com", "ambiguous"),
    ]
    assert rows[1]["detail"] == {"profiles": 3}
    assert store.exceptions("other") == []


# plans --------------------------------------------------------------------------------


def test_plan_save_get_and_status(store: Store) -> None:
    start(store)
    body = {"drift": [{"subject_key": "a", "class": "missed_optout"}], "batches": 2}
    store.save_plan("plan-1", "run-1", "fp-1", body, at(1))
    store.save_plan("plan-1", "run-1", "fp-1", body, at(2))  # same plan again: no-op
    plan = store.get_plan("plan-1")
    assert plan["body"] == body and plan["status"] == "planned" and plan["created_at"] == at(1)
    store.set_plan_status("plan-1", "applying")
    assert store.get_plan("plan-1")["status"] == "applying"
    assert store.get_plan("missing") is None
    with pytest.raises(StoreError, match="another fingerprint"):
        store.save_plan("plan-1", "run-1", "fp-2", body, at(3))
    with pytest.raises(ValueError):
        store.set_plan_status("plan-1", "done")
    with pytest.raises(StoreError, match="no plan"):
        store.set_plan_status("missing", "stale")


# action journal -----------------------------------------------------------------------


def test_journal_plan_is_ordered_and_idempotent(store: Store) -> None:
    start(store)
    store.save_plan("plan-1", "run-1", "fp-1", {}, at(1))
    shuffled = make_actions(5)[::-1]
    store.journal_plan("plan-1", "run-1", shuffled, at(2))
    store.journal_sending("plan-1:000", at(3))
    store.journal_plan("plan-1", "run-1", make_actions(5), at(4))  # re-journal: no-op
    rows = store.actions(plan_id="plan-1")
    assert [r["seq"] for r in rows] == [0, 1, 2, 3, 4]
    assert [r["status"] for r in rows] == ["sending"] + ["pending"] * 4
    assert rows[0]["created_at"] == at(2) and rows[1]["attempts"] == 0
    assert rows[2]["payload"] == {"subscription_group_id": "g1", "external_id": ["u2"]}
    assert rows[2]["subject_keys"] == ["u2"] and rows[2]["drift_ids"] == [3]
    assert store.actions(run_id="run-1") == rows
    assert store.actions(plan_id="other") == []


def test_journal_before_and_after_sending(store: Store) -> None:
    plan = journaled(store)
    store.journal_sending("plan-1:000", at(3))
    store.journal_result("plan-1:000", "failed", error="HTTP 503", at=at(4))
    store.journal_sending("plan-1:000", at(5))
    store.journal_result(
        "plan-1:000", "confirmed", response_summary={"status": 201, "message": "success"}, at=at(6)
    )
    store.journal_sending("plan-1:001", at(7))
    store.journal_result("plan-1:001", "rejected", response_summary={"status": 400}, error="bad id", at=at(8))
    first, second, third = store.actions(plan_id=plan)
    assert (first["status"], first["attempts"], first["sent_at"], first["finished_at"]) == (
        "confirmed",
        2,
        at(5),
        at(6),
    )
    assert first["response_summary"] == {"status": 201, "message": "success"}
    assert (second["status"], second["error"]) == ("rejected", "bad id")
    assert third["status"] == "pending"
    assert [a["action_id"] for a in store.actions(status="confirmed")] == ["plan-1:000"]
    assert len(store.actions(status=["pending", "rejected"])) == 2


def test_confirmed_action_is_never_sent_again(store: Store) -> None:
    journaled(store, 1)
    store.journal_sending("plan-1:000", at(3))
    store.journal_result("plan-1:000", "confirmed", at=at(4))
    with pytest.raises(StoreError, match="already confirmed"):
        store.journal_sending("plan-1:000", at(5))
    with pytest.raises(StoreError, match="no action"):
        store.journal_sending("ghost", at(5))
    with pytest.raises(ValueError):
        store.journal_result("plan-1:000", "sending", at=at(5))


def test_unfinished_plans(store: Store) -> None:
    journaled(store, 2)
    store.save_plan("plan-2", "run-1", "fp-2", {}, at(10))
    store.journal_plan("plan-2", "run-1", make_actions(1, "plan-2"), at(11))
    assert store.unfinished_plans() == ["plan-1", "plan-2"]
    for action_id in ("plan-1:000", "plan-1:001"):
        store.journal_sending(action_id, at(12))
        assert "plan-1" in store.unfinished_plans()
        store.journal_result(action_id, "confirmed", at=at(13))
    assert store.unfinished_plans() == ["plan-2"]


def test_journal_sending_is_visible_to_another_connection(store: Store, store_url: str) -> None:
    journaled(store, 2)
    store.journal_sending("plan-1:001", at(3))
    with Store.open(store_url) as other:
        statuses = {a["action_id"]: a["status"] for a in other.actions(plan_id="plan-1")}
    assert statuses == {"plan-1:000": "pending", "plan-1:001": "sending"}


KILLED_WRITER = textwrap.dedent(
    """
    import sys, time
    from datetime import datetime, timezone
    from reconcile.store.store import Store
    store = Store.open(sys.argv[1])
    store.journal_sending("plan-1:000", datetime(2026, 3, 2, 9, 30, tzinfo=timezone.utc))
    print("sent", flush=True)
    time.sleep(60)
    """
)


def test_journal_survives_sigkill_right_after_sending(store: Store, store_url: str) -> None:
    journaled(store, 1)
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, store_url], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "sent"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
        proc.stdout.close()
    (action,) = store.actions(plan_id="plan-1")
    assert (action["status"], action["attempts"], action["sent_at"]) == ("sending", 1, at(30))
    assert store.unfinished_plans() == ["plan-1"]


def test_secrets_are_scrubbed_from_json(store: Store) -> None:
    journaled(store, 1)
    summary = {"headers": {"Authorization": "Bearer sk-live-123"}, "api_key": "k-999", "url": "/x", "n": 1}
    store.journal_result("plan-1:000", "failed", response_summary=summary, at=at(4))
    (action,) = store.actions()
    assert action["response_summary"] == {
        "headers": {"Authorization": "***"},
        "api_key": "***",
        "url": "/x",
        "n": 1,
    }
    assert action["subject_keys"] == ["u0"]


# tombstones and watermarks ------------------------------------------------------------


def test_tombstones_are_idempotent(store: Store) -> None:
    start(store)
    row = {
        "subject_key": "u1",
        "identity": "u1@x.com",
        "deleted_at": at(1),
        "run_id": "run-1",
        "reason": "dsr delete",
    }
    store.add_tombstones([row])
    store.add_tombstones(
        [{**row, "deleted_at": at(9), "reason": "again"}, {**row, "subject_key": "u0", "deleted_at": at(2)}]
    )
    store.add_tombstones([])
    stones = store.tombstones()
    assert [(t["subject_key"], t["deleted_at"], t["reason"]) for t in stones] == [
        ("u1", at(1), "dsr delete"),
        ("u0", at(2), "dsr delete"),
    ]


def test_watermarks(store: Store) -> None:
    assert store.get_watermark("braze_unsubscribes") is None
    store.set_watermark("braze_unsubscribes", "2026-03-01T00:00:00Z", at(1))
    store.set_watermark("braze_unsubscribes", "2026-03-02T00:00:00Z", at(2))
    store.set_watermark("ketch_dsr", "cursor-7", at(2))
    assert store.get_watermark("braze_unsubscribes") == "2026-03-02T00:00:00Z"
    assert store.get_watermark("ketch_dsr") == "cursor-7"


# errors -------------------------------------------------------------------------------


def _all_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)) + repr(exc)


def test_password_never_in_store_error() -> None:
    url = "postgresql+psycopg://alice:Hunter2-Very-Secret@127.0.0.1:9/state"
    with pytest.raises(StoreError) as info:
        Store.open(url)
    assert "Hunter2-Very-Secret" not in _all_text(info.value)
    assert "alice:***@127.0.0.1:9/state" in str(info.value)


@pytest.mark.postgres
def test_password_never_in_store_error_from_server(pg_database: str) -> None:
    from sqlalchemy.engine import make_url

    url = make_url(pg_database).set(password="Hunter2-Very-Secret", database="no_such_db_for_reconcile")
    with pytest.raises(StoreError, match="no_such_db_for_reconcile") as info:
        Store.open(url.render_as_string(hide_password=False))
    assert "Hunter2-Very-Secret" not in _all_text(info.value)


def test_sqlite_folder_is_created_and_unsupported_urls_refused(tmp_path: Path) -> None:
    with Store.open(f"sqlite:///{tmp_path / 'a' / 'b' / 'state.db'}") as store:
        assert store.list_runs() == []
    assert (tmp_path / "a" / "b" / "state.db").exists()
    with pytest.raises(StoreError, match="unsupported database"):
        Store.open("mysql://u:pw@localhost/db")
    with pytest.raises(StoreError, match="invalid database URL"):
        Store.open("not a url")
