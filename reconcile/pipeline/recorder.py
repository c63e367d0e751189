"""`RunRecorder`: the one writer of a run's status, so every run ends with an outcome.

    recorder = RunRecorder(store, clock, run_id, mode="full", config_hash=cfg.hash(), job="nightly")
    with recorder:                       # starts the run (status running) if not started yet
        recorder.planned(universe_count=..., drift_counts=...)
        recorder.applying()
        recorder.applied(actions_sent=..., verified_count=...)

Statuses and who may follow whom (anything else raises `RecorderError`):

    running  -> planned, applying, dry_run, in_sync, refused, stale
    planned  -> planned (closing it, with an exit code), applying, dry_run, in_sync, refused, stale
    applying -> applied, partial
    any open -> failed, interrupted

`running`, `planned` (without an exit code) and `applying` are open; every other method
closes the run: it sets status, exit_code, error and finished_at, once. Closing a closed run
is a programming error (`RecorderError`), except `failed` and `interrupted`, which are then
ignored (a failure after the outcome was recorded does not rewrite it). Errors are stored
as given, cut to 2000 characters: callers scrub secrets and identities first.

Leaving `with recorder:` with the run still open closes it:

    KeyboardInterrupt                     interrupted, exit 130
    interrupts.Interrupted                interrupted, exit 130 (SIGINT) or 143 (SIGTERM)
    GuardRefused / StalePlan              refused / stale with the error's exit code
    another ReconcileError                failed with the error's exit_code
    any other exception                   failed, exit 1
    no exception                          failed, exit 1: the code recorded no outcome

and re-raises the exception. If recording the outcome fails too, the original exception
still propagates, with a note saying why the run could not be closed.

Status writes run inside `reconcile.pipeline.interrupts.deferred()`, so a signal cannot cut the
transaction that records an outcome in half.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from datetime import datetime
from types import TracebackType
from typing import Any, Literal, Protocol

from reconcile.errors import ExitCode, GuardRefused, ReconcileError, StalePlan
from reconcile.pipeline.interrupts import Interrupted, deferred
from reconcile.models.plan import PlanStatus
from reconcile.models.run import RunStatus

log = logging.getLogger(__name__)

ERROR_LIMIT = 2000
NO_OUTCOME = "the run ended without recording an outcome"
OWNED = frozenset({"status", "exit_code", "finished_at", "run_id", "mode", "config_hash", "started_at"})
OPEN = frozenset({RunStatus.RUNNING, RunStatus.PLANNED, RunStatus.APPLYING})
BEFORE_APPLY = frozenset({RunStatus.RUNNING, RunStatus.PLANNED})
FOLLOWS: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.PLANNED: BEFORE_APPLY,
    RunStatus.APPLYING: BEFORE_APPLY,
    RunStatus.DRY_RUN: BEFORE_APPLY,
    RunStatus.IN_SYNC: BEFORE_APPLY,
    RunStatus.REFUSED: BEFORE_APPLY,
    RunStatus.STALE: BEFORE_APPLY,
    RunStatus.APPLIED: frozenset({RunStatus.APPLYING}),
    RunStatus.PARTIAL: frozenset({RunStatus.APPLYING}),
    RunStatus.FAILED: OPEN,
    RunStatus.INTERRUPTED: OPEN,
}


# a plan's status -> the statuses it may follow (`planned` is set only by saving the plan;
# a plan judged stale is never applied again: the operator plans again)
PLAN_FOLLOWS: dict[PlanStatus, frozenset[PlanStatus]] = {
    PlanStatus.PLANNED: frozenset(),
    PlanStatus.APPLYING: frozenset({PlanStatus.PLANNED, PlanStatus.REFUSED, PlanStatus.APPLYING, PlanStatus.APPLIED}),
    PlanStatus.APPLIED: frozenset({PlanStatus.PLANNED, PlanStatus.REFUSED, PlanStatus.APPLYING, PlanStatus.APPLIED}),
    PlanStatus.REFUSED: frozenset({PlanStatus.PLANNED, PlanStatus.REFUSED, PlanStatus.APPLYING, PlanStatus.APPLIED}),
    PlanStatus.STALE: frozenset(PlanStatus),
}


class RunStore(Protocol):
    def start_run(
        self, run_id: str, *, mode: str, config_hash: str, started_at: datetime, job: str | None = None
    ) -> None: ...

    def update_run(self, run_id: str, **fields: Any) -> None: ...

    def note_run(self, run_id: str, **notes: Any) -> None: ...

    def save_plan(self, plan_id: str, run_id: str, fingerprint: str, body: dict[str, Any],
                  created_at: datetime) -> None: ...

    def get_plan(self, plan_id: str) -> dict[str, Any] | None: ...

    def set_plan_status(self, plan_id: str, status: str) -> None: ...

    def get_run(self, run_id: str) -> dict[str, Any] | None: ...


class RecorderError(RuntimeError):
    """RunRecorder used out of order (closing twice, applied before applying, ...)."""


def describe(error: BaseException | str) -> str:
    """An error as the runs table keeps it: the message of our own errors, else `Type: message`."""
    if isinstance(error, str):
        text = error
    elif isinstance(error, (ReconcileError, Interrupted)):
        text = str(error) or type(error).__name__
    else:
        text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    return text if len(text) <= ERROR_LIMIT else text[: ERROR_LIMIT - 1] + "…"


class RunRecorder:
    """Records one run's life cycle in the state store (see the module docstring)."""

    def __init__(
        self,
        store: RunStore,
        clock: Callable[[], datetime],
        run_id: str,
        mode: str,
        config_hash: str,
        job: str | None = None,
    ):
        self.store = store
        self.clock = clock
        self.run_id = run_id
        self.mode = mode
        self.config_hash = config_hash
        self.job = job
        self.status: RunStatus | None = None
        self.exit_code: int | None = None
        self.closed = False

    def __repr__(self) -> str:
        return f"RunRecorder({self.run_id!r}, status={self.status and self.status.value!r}, closed={self.closed})"

    # life cycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Record the run as `running`."""
        if self.status is not None:
            raise RecorderError(f"run {self.run_id} was already started")
        with deferred():
            self.store.start_run(
                self.run_id, mode=self.mode, config_hash=self.config_hash, started_at=self.clock(), job=self.job
            )
        self.status = RunStatus.RUNNING

    def update(self, **fields: Any) -> None:
        """Record fields other than the outcome (counts, capabilities, plan id, ...)."""
        owned = sorted(set(fields) & OWNED)
        if owned:
            raise TypeError(f"RunRecorder.update: {', '.join(owned)} belong to the status methods")
        self._require_started("update")
        if "error" in fields and fields["error"] is not None:
            fields["error"] = describe(fields["error"])
        if fields:
            with deferred():
                self.store.update_run(self.run_id, **fields)

    def planned(self, exit_code: int | None = None, **fields: Any) -> None:
        """The plan is made; with an exit code this closes the run (`reconcile plan`)."""
        if exit_code is None:
            self._move(RunStatus.PLANNED, fields)
        else:
            self._close(RunStatus.PLANNED, exit_code, fields.pop("error", None), fields)

    def applying(self) -> None:
        self._move(RunStatus.APPLYING, {})

    def dry_run(self, exit_code: int) -> None:
        self._close(RunStatus.DRY_RUN, exit_code, None, {})

    def in_sync(self) -> None:
        self._close(RunStatus.IN_SYNC, ExitCode.OK, None, {})

    def refused(self, error: BaseException | str, exit_code: int) -> None:
        self._close(RunStatus.REFUSED, exit_code, error, {})

    def stale(self, error: BaseException | str) -> None:
        self._close(RunStatus.STALE, ExitCode.STALE_PLAN, error, {})

    def applied(self, **fields: Any) -> None:
        self._close(RunStatus.APPLIED, ExitCode.OK, fields.pop("error", None), fields)

    def partial(self, **fields: Any) -> None:
        self._close(RunStatus.PARTIAL, ExitCode.PARTIAL, fields.pop("error", None), fields)

    def failed(self, error: BaseException | str, exit_code: int | None = None) -> None:
        """Close as failed; `exit_code` defaults to a ReconcileError's own, else 1."""
        if self.closed:
            log.debug("run %s already closed as %s; failure not recorded: %s", self.run_id, self.status, error)
            return
        if exit_code is None:
            exit_code = error.exit_code if isinstance(error, ReconcileError) else ExitCode.ERROR
        self._close(RunStatus.FAILED, exit_code, error, {})

    def interrupted(self, signum: int) -> None:
        """Close as interrupted by `signum`: exit 128 + signum (130 SIGINT, 143 SIGTERM)."""
        if self.closed:
            log.debug("run %s already closed as %s; interruption not recorded", self.run_id, self.status)
            return
        stop = Interrupted(signum)
        self._close(RunStatus.INTERRUPTED, stop.exit_code, stop, {})

    # context manager ----------------------------------------------------------------------

    def __enter__(self) -> RunRecorder:
        if self.status is None:
            self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Literal[False]:
        if self.closed or self.status is None:
            return False
        try:
            self._close_for(exc)
        except BaseException as problem:  # noqa: BLE001 - the original exception must win
            if exc is None:
                raise
            log.error("run %s could not be closed after %s: %s", self.run_id, type(exc).__name__, problem)
            exc.add_note(f"run {self.run_id} could not be recorded as closed: {describe(problem)}")
        return False

    def _close_for(self, exc: BaseException | None) -> None:
        if exc is None:
            log.error("run %s: %s (status was %s)", self.run_id, NO_OUTCOME, self.status)
            self.failed(f"{NO_OUTCOME} (it was {self.status})", ExitCode.ERROR)
        elif isinstance(exc, KeyboardInterrupt):
            self.interrupted(signal.SIGINT)
        elif isinstance(exc, Interrupted):
            self.interrupted(exc.signum)
        elif isinstance(exc, GuardRefused) and self._may(RunStatus.REFUSED):
            self.refused(exc, exc.exit_code)
        elif isinstance(exc, StalePlan) and self._may(RunStatus.STALE):
            self.stale(exc)
        elif isinstance(exc, SystemExit):
            code = exc.code if isinstance(exc.code, int) and exc.code else ExitCode.ERROR
            self.failed(exc, code)
        else:
            self.failed(exc)

    # internals ----------------------------------------------------------------------------

    def _may(self, status: RunStatus) -> bool:
        return not self.closed and self.status in FOLLOWS[status]

    def _require_started(self, what: str) -> None:
        if self.status is None:
            raise RecorderError(f"run {self.run_id}: {what} before start()")

    # notes and plans -------------------------------------------------------------------

    def note(self, **notes: Any) -> None:
        """Merge `notes` into the run's summary (API use, subjects skipped, ...)."""
        self.store.note_run(self.run_id, **notes)

    def save_plan(self, plan_id: str, fingerprint: str, body: dict[str, Any]) -> None:
        """Save this run's plan as `planned`."""
        with deferred():
            self.store.save_plan(plan_id, self.run_id, fingerprint, body, self.clock())

    def plan_status(self, plan_id: str, status: PlanStatus) -> None:
        """Move a saved plan to `status`, refusing a move its current status does not allow."""
        saved = self.store.get_plan(plan_id)
        if saved is None:
            raise RecorderError(f"no plan {plan_id} in the state store")
        current = PlanStatus(saved["status"])
        if current not in PLAN_FOLLOWS[status]:
            why = "; run `reconcile plan` again" if current is PlanStatus.STALE else ""
            raise RecorderError(f"plan {plan_id} is {current}; it cannot become {status}{why}")
        with deferred():
            self.store.set_plan_status(plan_id, status)

    def _check(self, status: RunStatus) -> None:
        self._require_started(status.value)
        if self.closed:
            raise RecorderError(
                f"run {self.run_id} is already closed as {self.status} (exit {self.exit_code}); cannot record {status}"
            )
        if self.status not in FOLLOWS[status]:
            raise RecorderError(f"run {self.run_id}: {status} cannot follow {self.status}")

    def _move(self, status: RunStatus, fields: dict[str, Any]) -> None:
        self._check(status)
        self._refuse_owned(fields)
        with deferred():
            self.store.update_run(self.run_id, status=status, **fields)
        self.status = status

    def _close(
        self, status: RunStatus, exit_code: int, error: BaseException | str | None, fields: dict[str, Any]
    ) -> None:
        self._check(status)
        self._refuse_owned(fields)
        text = None if error is None else describe(error)
        outcome = {"status": status, "exit_code": int(exit_code), "error": text, "finished_at": self.clock()}
        with deferred():
            self.store.update_run(self.run_id, **fields, **outcome)
        self.status, self.exit_code, self.closed = status, int(exit_code), True

    @staticmethod
    def _refuse_owned(fields: dict[str, Any]) -> None:
        owned = sorted(set(fields) & (OWNED | {"error"}))
        if owned:
            raise TypeError(f"RunRecorder: {', '.join(owned)} are set by the status method itself")


def recording(recorder: RunRecorder) -> RunRecorder:
    """`with recording(recorder):` is `with recorder:` (starts it, closes it on the way out)."""
    return recorder


ABANDONED = ("stopped without closing (killed, or the state store was unreachable when it ended); "
             "closed by the later run that resumed its plan")


def close_abandoned(store: RunStore, run_id: str, clock: Callable[[], datetime]) -> bool:
    """Close a run still `running` or `applying` that no process holds any more (the caller
    holds the job's run lock and is resuming that run's plan) as failed, exit 1. Returns
    whether it was open."""
    run = store.get_run(run_id) or {}
    if run.get("status") not in (RunStatus.RUNNING, RunStatus.APPLYING):
        return False
    log.warning("run %s was left %s; closing it as failed", run_id, run.get("status"))
    with deferred():
        store.update_run(run_id, status=RunStatus.FAILED, exit_code=int(ExitCode.ERROR), error=ABANDONED,
                         finished_at=clock())
    return True
