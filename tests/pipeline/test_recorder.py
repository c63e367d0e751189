"""RunRecorder on a real state store (SQLite and PostgreSQL): every path to an outcome,
the order it enforces, and what leaving `with recorder:` records for each way a run dies."""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from reconcile.errors import AuthError, DataError, GuardRefused, StalePlan, StoreError
from reconcile.pipeline.interrupts import Interrupted, handle_signals
from reconcile.models.run import RunResult, RunStatus
from reconcile.pipeline.recorder import ERROR_LIMIT, RecorderError, RunRecorder, recording
from reconcile.store.store import Store

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def recorder(store: Store, run_id: str = "run-1", job: str | None = "nightly") -> RunRecorder:
    return RunRecorder(store, Clock(), run_id, "full", "cfg-1", job=job)


Step = Callable[[RunRecorder], None]

PATHS: list[tuple[str, list[Step], RunStatus, int, str | None]] = [
    ("plan only", [lambda r: r.planned(universe_count=3), lambda r: r.planned(exit_code=2)], RunStatus.PLANNED, 2, None),
    ("dry run", [lambda r: r.planned(), lambda r: r.dry_run(2)], RunStatus.DRY_RUN, 2, None),
    ("in sync", [lambda r: r.planned(), lambda r: r.in_sync()], RunStatus.IN_SYNC, 0, None),
    ("applied", [lambda r: r.planned(), lambda r: r.applying(), lambda r: r.applied(actions_sent=4)],
     RunStatus.APPLIED, 0, None),
    ("partial", [lambda r: r.applying(), lambda r: r.partial(actions_failed=1, error="batch 3: HTTP 400")],
     RunStatus.PARTIAL, 4, "batch 3: HTTP 400"),
    ("refused", [lambda r: r.planned(), lambda r: r.refused("guard max_deletions refused apply", 12)],
     RunStatus.REFUSED, 12, "guard max_deletions refused apply"),
    ("stale", [lambda r: r.stale(StalePlan("plan p is stale"))], RunStatus.STALE, 5, "plan p is stale"),
    ("failed early", [lambda r: r.failed(AuthError("bad key", service="braze", status_code=401))],
     RunStatus.FAILED, 1, "braze HTTP 401: bad key"),
    ("failed applying", [lambda r: r.applying(), lambda r: r.failed(ValueError("x"), 3)],
     RunStatus.FAILED, 3, "ValueError: x"),
    ("interrupted", [lambda r: r.applying(), lambda r: r.interrupted(signal.SIGTERM)],
     RunStatus.INTERRUPTED, 143, "interrupted by SIGTERM"),
]


@pytest.mark.parametrize("steps, status, code, error", [p[1:] for p in PATHS], ids=[p[0] for p in PATHS])
def test_each_path_records_its_outcome_once(
    store: Store, steps: list[Step], status: RunStatus, code: int, error: str | None
) -> None:
    rec = recorder(store)
    rec.start()
    run = store.get_run("run-1")
    assert (run["status"], run["job"], run["finished_at"]) == ("running", "nightly", None)
    for step in steps:
        step(rec)
    run = store.get_run("run-1")
    assert (run["status"], run["exit_code"], run["error"]) == (status.value, code, error)
    assert run["finished_at"] is not None and run["finished_at"] > run["started_at"]
    assert rec.closed and rec.status is status and rec.exit_code == code
    with pytest.raises(RecorderError, match="already closed"):
        rec.in_sync()
    rec.failed(RuntimeError("late"))
    rec.interrupted(signal.SIGINT)
    assert store.get_run("run-1") == run


def test_fields_given_with_a_status_are_recorded(store: Store) -> None:
    rec = recorder(store)
    rec.start()
    rec.planned(universe_count=10, drift_counts={"missed_optout": 2}, actions_planned=1)
    rec.update(capabilities={"email.hard_bounces": False}, plan_id="plan-1")
    rec.applying()
    rec.applied(actions_sent=1, verified_count=1)
    run = store.get_run("run-1")
    assert (run["universe_count"], run["drift_counts"], run["plan_id"]) == (10, {"missed_optout": 2}, "plan-1")
    assert run["capabilities"] == {"email.hard_bounces": False}
    assert (run["actions_sent"], run["verified_count"], run["status"]) == (1, 1, "applied")


BAD_ORDER: list[tuple[str, list[Step], Step, str]] = [
    ("applied before applying", [lambda r: r.planned()], lambda r: r.applied(), "applied cannot follow planned"),
    ("partial before applying", [], lambda r: r.partial(), "partial cannot follow running"),
    ("planned while applying", [lambda r: r.applying()], lambda r: r.planned(), "planned cannot follow applying"),
    ("refused while applying", [lambda r: r.applying()], lambda r: r.refused("g", 12), "refused cannot follow"),
    ("started twice", [], lambda r: r.start(), "already started"),
]


@pytest.mark.parametrize("before, wrong, message", [b[1:] for b in BAD_ORDER], ids=[b[0] for b in BAD_ORDER])
def test_out_of_order_is_a_programming_error(store: Store, before: list[Step], wrong: Step, message: str) -> None:
    rec = recorder(store)
    rec.start()
    for step in before:
        step(rec)
    status = store.get_run("run-1")["status"]
    with pytest.raises(RecorderError, match=message):
        wrong(rec)
    assert store.get_run("run-1")["status"] == status


def test_nothing_before_start(store: Store) -> None:
    rec = recorder(store)
    with pytest.raises(RecorderError, match="before start"):
        rec.planned()
    with pytest.raises(RecorderError, match="before start"):
        rec.update(universe_count=1)
    assert store.get_run("run-1") is None


def test_status_fields_are_not_accepted_as_plain_fields(store: Store) -> None:
    rec = recorder(store)
    rec.start()
    with pytest.raises(TypeError, match="status"):
        rec.update(status="applied")
    with pytest.raises(TypeError, match="exit_code, finished_at"):
        rec.update(exit_code=0, finished_at=T0)
    rec.applying()
    with pytest.raises(TypeError, match="exit_code"):
        rec.applied(exit_code=3)
    assert store.get_run("run-1")["status"] == "applying"


def test_error_is_cut_to_the_limit(store: Store) -> None:
    rec = recorder(store)
    rec.start()
    rec.failed("x" * 5000, 1)
    error = store.get_run("run-1")["error"]
    assert len(error) == ERROR_LIMIT and error.endswith("…")


EXITS: list[tuple[str, BaseException, RunStatus, int, str]] = [
    ("ctrl-c", KeyboardInterrupt(), RunStatus.INTERRUPTED, 130, "interrupted by SIGINT"),
    ("sigint", Interrupted(signal.SIGINT), RunStatus.INTERRUPTED, 130, "interrupted by SIGINT"),
    ("sigterm", Interrupted(signal.SIGTERM), RunStatus.INTERRUPTED, 143, "interrupted by SIGTERM"),
    ("401", AuthError("invalid API key", service="braze", status_code=401), RunStatus.FAILED, 1, "HTTP 401"),
    ("bad csv", DataError("universe.csv line 3: no email column"), RunStatus.FAILED, 1, "line 3"),
    ("guard", GuardRefused(["max_deletions"], "9 deletions"), RunStatus.REFUSED, 12, "max_deletions"),
    ("stale", StalePlan("plan p is stale"), RunStatus.STALE, 5, "stale"),
    ("bug", KeyError("subject_key"), RunStatus.FAILED, 1, "KeyError: 'subject_key'"),
    ("exit", SystemExit(7), RunStatus.FAILED, 7, "SystemExit: 7"),
]


@pytest.mark.parametrize("exc, status, code, error", [e[1:] for e in EXITS], ids=[e[0] for e in EXITS])
def test_leaving_the_block_closes_an_open_run_and_reraises(
    store: Store, exc: BaseException, status: RunStatus, code: int, error: str
) -> None:
    with pytest.raises(type(exc)) as info:
        with recorder(store) as rec:
            rec.planned()
            raise exc
    assert info.value is exc
    run = store.get_run("run-1")
    assert (run["status"], run["exit_code"]) == (status.value, code)
    assert error in run["error"] and run["finished_at"] is not None


def test_a_failure_after_the_outcome_does_not_rewrite_it(store: Store) -> None:
    with pytest.raises(RuntimeError):
        with recording(recorder(store)) as rec:
            rec.in_sync()
            raise RuntimeError("writing the report failed")
    run = store.get_run("run-1")
    assert (run["status"], run["exit_code"], run["error"]) == ("in_sync", 0, None)


def test_a_block_that_records_no_outcome_fails_the_run(store: Store) -> None:
    with recorder(store) as rec:
        rec.applying()
    run = store.get_run("run-1")
    assert (run["status"], run["exit_code"]) == ("failed", 1)
    assert "without recording an outcome" in run["error"] and "applying" in run["error"]


def test_when_closing_fails_the_original_error_still_propagates(store: Store) -> None:
    class Broken:
        def start_run(self, run_id: str, **fields: Any) -> None:
            pass

        def update_run(self, run_id: str, **fields: Any) -> None:
            raise StoreError("state store: database is locked")

    with pytest.raises(DataError) as info:
        with RunRecorder(Broken(), Clock(), "r", "full", "h"):
            raise DataError("bad row")
    assert any("could not be recorded as closed" in note for note in info.value.__notes__)


def test_a_real_sigterm_mid_run_is_recorded_as_interrupted(store: Store) -> None:
    with pytest.raises(Interrupted):
        with handle_signals(), recorder(store) as rec:
            rec.applying()
            os.kill(os.getpid(), signal.SIGTERM)
            signal.pthread_kill(threading.get_ident(), 0)
            rec.applied()
    run = store.get_run("run-1")
    assert (run["status"], run["exit_code"], run["error"]) == ("interrupted", 143, "interrupted by SIGTERM")


def test_store_refuses_bare_strings_outside_run_status(store: Store) -> None:
    recorder(store).start()
    with pytest.raises(ValueError, match="not one of"):
        store.update_run("run-1", status="ok")


def test_run_result_round_trips_through_json() -> None:
    result = RunResult(
        "run-1", RunStatus.PARTIAL, 4, {"missed_optout": 3}, actions_planned=2, actions_sent=2, actions_failed=1,
        overrides=["max_deletions"], messages=["batch 2: HTTP 500"], report_path="reports/run-1.md",
    )
    text = result.to_json()
    assert json.loads(text)["status"] == "partial" and json.loads(text)["overrides"] == ["max_deletions"]
    again = RunResult.from_json(text)
    assert again == result and again.status is RunStatus.PARTIAL and again.overrides == ("max_deletions",)
    assert RunResult.from_json(result.to_dict()) == result


@pytest.mark.parametrize(
    "data, message",
    [
        ('{"run_id": "r", "status": "ok", "exit_code": 0}', "'ok' is not a valid RunStatus"),
        ('{"run_id": "r", "exit_code": 0}', "missing field"),
        ('{"run_id": "r", "status": "failed", "exit_code": 1, "colour": 1}', "unknown field"),
        ("[1, 2]", "expected a JSON object"),
    ],
)
def test_run_result_from_json_refuses_bad_input(data: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RunResult.from_json(data)


def test_the_recorder_saves_the_plan_and_moves_it_only_where_its_status_allows(store: Store) -> None:
    from reconcile.models.plan import PlanStatus

    rec = recorder(store)
    rec.start()
    rec.save_plan("plan-1", "fp-1", {"plan_id": "plan-1", "actions": []})
    assert store.get_plan("plan-1")["status"] == PlanStatus.PLANNED and store.get_plan("plan-1")["run_id"] == "run-1"
    rec.plan_status("plan-1", PlanStatus.APPLYING)
    rec.plan_status("plan-1", PlanStatus.APPLYING)  # a partial apply stays applying
    rec.plan_status("plan-1", PlanStatus.APPLIED)
    with pytest.raises(RecorderError, match="cannot become planned"):
        rec.plan_status("plan-1", PlanStatus.PLANNED)
    rec.plan_status("plan-1", PlanStatus.STALE)
    for later in (PlanStatus.APPLYING, PlanStatus.APPLIED, PlanStatus.REFUSED):
        with pytest.raises(RecorderError, match="is stale.*run `reconcile plan` again"):
            rec.plan_status("plan-1", later)
    assert store.get_plan("plan-1")["status"] == PlanStatus.STALE
    with pytest.raises(RecorderError, match="no plan plan-9"):
        rec.plan_status("plan-9", PlanStatus.APPLYING)


def test_notes_merge_into_the_summary_and_keep_what_it_holds(store: Store) -> None:
    rec = recorder(store)
    rec.start()
    rec.update(summary={"kept": 1})
    rec.note(api_usage={"braze": {}})
    rec.note(absence_skipped=3)
    assert store.get_run("run-1")["summary"] == {"kept": 1, "api_usage": {"braze": {}}, "absence_skipped": 3}
    store.note_run("no-such-run", x=1)  # a note never creates a run
    assert store.get_run("no-such-run") is None


def test_run_ids_keep_the_runs_started_and_pass_every_event_on() -> None:
    from reconcile.observability.events import RunIds

    seen: list[tuple[str, ...]] = []

    class Inner:
        def __call__(self, stage: str, done: int, total: int) -> None:
            seen.append(("count", stage, str(done), str(total)))

        def stage(self, name: str, **counts: int) -> None:
            seen.append(("stage", name))

        def run_started(self, run_id: str, mode: str) -> None:
            seen.append(("run", run_id, mode))

    runs = RunIds(Inner())
    assert runs.last is None
    runs.run_started("run-1", "full")
    runs.stage("extract")
    runs("ketch", 1, 2)
    runs.run_started("run-2", "apply")
    assert runs.ids == ["run-1", "run-2"] and runs.last == "run-2"
    assert seen == [("run", "run-1", "full"), ("stage", "extract"), ("count", "ketch", "1", "2"),
                    ("run", "run-2", "apply")]
    RunIds().stage("extract")  # without an inner object, events go nowhere
