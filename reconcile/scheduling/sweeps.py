"""Sliced sweeps across several workers on one state database.

    outcome = run_worker(job)                  # reconcile run --job NAME --worker [--sweep ID]

A job with `scope = "sliced"` and `slices = K` splits its full sweep into K stable hash
slices of the subjects (`reconcile.engine.universe.slice_of`). Any number of workers (pods of
a Kubernetes Indexed Job, processes on one host) share one sweep:

1. **Join.** Each worker opens the sweep: the one named by `--sweep ID` (created with K
   pending slices by whichever worker comes first; workers of one Kubernetes Job pass the
   Job's uid, so a pod started after the sweep finished does not start another), else the
   job's open sweep, else a new one. Creation is serialised (a transaction-level advisory
   lock on PostgreSQL, `BEGIN IMMEDIATE` on SQLite), so simultaneous workers join one sweep.
2. **Claim.** `SELECT ... FOR UPDATE SKIP LOCKED` takes the first pending slice (or one whose
   claim's lease ended: its worker is gone) and marks it claimed by this worker with a lease.
3. **Lock.** The slice's run lock (`reconcile.pipeline.lock`, named for the job's lock name plus
   `/slice-<k>`) is taken with the same lease; its heartbeat renews the claim too, and its
   fencing check runs before every batch. A dead holder's lock is taken over at once on
   PostgreSQL (its advisory lock is gone), so its unfinished plan is resumed by the
   successor: the slice's runs are recorded as job `<job>/slice-<k>`, and a run resumes only
   its own job's plans, never another slice's.
4. **Run.** A full reconciliation of exactly that slice: every subject in it, whatever its
   source (Braze's lists, deletions, open drift and tombstones included), and no subject of
   another slice, so no two workers ever plan a correction for the same subject.
5. **Finish.** The slice is marked done with its run (failed when the run raised), and the
   worker claims the next one. With nothing left to claim it waits (polling) until the
   sweep is done, so a slice whose worker died is finished by a survivor once the lease
   ends. The worker that finishes the last slice closes the sweep; when every slice's run
   succeeded, the incremental watermark moves to the sweep's start.

A worker stops early when its slice's lock is lost (exit 6; the slice is left to lapse and
be taken over) or on SIGTERM/SIGINT (the batch in flight is journaled, the slice is given
back as pending, exit 128 + signal). Its exit code is otherwise the worst of its runs'.

The scheduler's own `sliced` fires (one slice per fire, chosen by a counter, under the job's
lock) and sweep workers are two ways to run the same job: use one of them per job.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable, Mapping

from reconcile.errors import DataError, ReconcileError
from reconcile.pipeline.holder import holder_name, identity
from reconcile.scheduling.jobs import slice_job
from reconcile.pipeline.lock import LEASE_SECONDS, LockLost, RunLock, lock_name, utc_now
from reconcile.observability.events import RunIds

if TYPE_CHECKING:
    from reconcile.pipeline.session import Session

log = logging.getLogger(__name__)

POLL_SECONDS = 5.0  # longest wait between claims while other workers hold the last slices


@dataclass(frozen=True)
class SliceOutcome:
    slice: int
    run_id: str | None
    status: str | None
    exit_code: int
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"slice": self.slice, "run_id": self.run_id, "status": self.status, "exit_code": self.exit_code,
                "error": self.error}


@dataclass
class WorkerOutcome:
    job: str
    sweep_id: str
    slices: list[SliceOutcome] = field(default_factory=list)
    sweep_status: str = "open"
    stopped: str | None = None  # why the worker stopped before the sweep was done

    @property
    def exit_code(self) -> int:
        codes = [s.exit_code for s in self.slices if s.exit_code]
        return max(codes) if codes else 0

    def to_dict(self) -> dict[str, Any]:
        return {"job": self.job, "sweep_id": self.sweep_id, "sweep_status": self.sweep_status,
                "exit_code": self.exit_code, "stopped": self.stopped, "slices": [s.to_dict() for s in self.slices]}


class SliceLock(RunLock):
    """A slice's run lock whose heartbeat also renews the worker's claim on the slice."""

    def __init__(self, store: Any, name: str, *, job: str, sweep_id: str, slice_index: int, claim_holder: str,
                 lease_seconds: float = LEASE_SECONDS, clock: Callable[[], datetime] = utc_now):
        super().__init__(store, name, job=job, lease_seconds=lease_seconds, clock=clock)
        self.sweep_id, self.slice_index, self.claim_holder = sweep_id, slice_index, claim_holder

    def renew(self) -> bool:
        if not super().renew():
            return False
        if not self.store.renew_slice(self.sweep_id, self.slice_index, self.claim_holder, self.clock(),
                                      self.lease_seconds):
            self._lose(f"slice {self.slice_index} of sweep {self.sweep_id} is no longer claimed by this worker")
            return False
        return True


def require_sliced(job: Any) -> None:
    if job.scope != "sliced" or not job.slices:
        raise DataError(f"job {job.name!r} has scope = {job.scope!r}; a sweep worker needs "
                        'scope = "sliced" and slices = K in its schedules entry')


class Worker:
    """One worker of a job's sweep (see the module docstring)."""

    def __init__(self, rt: Session, job: Any, api_key: str, *, sweep_id: str | None = None,
                 lease_seconds: float = LEASE_SECONDS, poll_seconds: float = POLL_SECONDS,
                 sleep: Callable[[float], None] = time.sleep):
        require_sliced(job)
        if lease_seconds <= 0:
            raise DataError(f"--lease-seconds must be positive, got {lease_seconds}")
        self.runs = RunIds(rt.progress)
        self.rt, self.job, self.api_key = replace(rt, progress=self.runs), job, api_key
        self.lease_seconds, self.poll = float(lease_seconds), min(poll_seconds, lease_seconds / 3)
        self.sleep = sleep
        self.environ: Mapping[str, str] | None = None
        self.sender: Any = None  # notification sender (tests inject one); None: HTTP
        self.holder = holder_name(identity())
        self.sweep = rt.store.open_sweep(job.name, int(job.slices), utc_now(), sweep_id)
        if self.sweep["slices"] != job.slices:
            log.warning("sweep %s has %d slices, the job now %d; this sweep is finished with its own %d",
                        self.sweep["sweep_id"], self.sweep["slices"], job.slices, self.sweep["slices"])
            slices = int(self.sweep["slices"])
            self.rt = replace(self.rt, cfg=replace(rt.cfg, universe=replace(rt.cfg.universe, slices=slices)))
        self.outcome = WorkerOutcome(job.name, self.sweep["sweep_id"])
        # one Braze segment export for the whole sweep, whichever worker starts it
        self.rt = replace(self.rt, export_scope=self.sweep_id)

    @property
    def sweep_id(self) -> str:
        return str(self.sweep["sweep_id"])

    def run(self) -> WorkerOutcome:
        log.info("worker %s joined sweep %s of job %s (%d slices)", self.holder, self.sweep_id, self.job.name,
                 self.sweep["slices"])
        store = self.rt.store
        while True:
            claim = store.claim_slice(self.sweep_id, self.holder, utc_now(), self.lease_seconds)
            if claim is None:
                current = store.get_sweep(self.sweep_id) or {}
                if current.get("status") == "done":
                    break
                self.sleep(self.poll)
                continue
            if claim["previous_holder"]:
                log.warning("slice %d of sweep %s taken over from %s (its claim's lease ended)", claim["slice"],
                            self.sweep_id, claim["previous_holder"])
            if not self._run_slice(int(claim["slice"])):
                break
        self.outcome.sweep_status = str((store.get_sweep(self.sweep_id) or {}).get("status"))
        return self.outcome

    def _run_slice(self, index: int) -> bool:
        """Run one claimed slice; False when the worker must stop (the slice's lock was lost)."""
        from reconcile.errors import RunLocked
        from reconcile.pipeline.interrupts import Interrupted

        store, job = self.rt.store, self.job
        name = slice_job(job.name, index)
        lock = SliceLock(store, lock_name(self.rt.cfg.braze.rest_endpoint, self.api_key, name), job=name,
                         sweep_id=self.sweep_id, slice_index=index, claim_holder=self.holder,
                         lease_seconds=self.lease_seconds)
        try:
            lock.acquire()
        except RunLocked as exc:  # its last worker is still stopping: claim it again later
            log.warning("slice %d of sweep %s: %s; given back, claimed again once the lock is free", index,
                        self.sweep_id, exc)
            store.release_slice(self.sweep_id, index, self.holder)
            self.sleep(self.poll)
            return True
        log.info("slice %d of sweep %s: running as job %s", index, self.sweep_id, name)
        started = len(self.runs.ids)
        try:
            result = self._observed_run(name, index, lock)
        except Interrupted:
            store.release_slice(self.sweep_id, index, self.holder)
            raise
        except LockLost as exc:
            self.outcome.stopped = str(exc)
            self.outcome.slices.append(SliceOutcome(index, self._run_of(started), "failed",
                                                    int(exc.exit_code), str(exc)))
            return False
        except Exception as exc:  # noqa: BLE001 - the slice fails, the sweep goes on
            code = int(exc.exit_code) if isinstance(exc, ReconcileError) else 1
            run_id = self._run_of(started)
            log.error("slice %d of sweep %s failed: %s", index, self.sweep_id, exc)
            store.finish_slice(self.sweep_id, index, self.holder, utc_now(), failed=True, run_id=run_id,
                               exit_code=code, error=f"{type(exc).__name__}: {exc}")
            self.outcome.slices.append(SliceOutcome(index, run_id, "failed", code, str(exc)))
            self._close_sweep()
            return True
        finally:
            lock.release()
        status = str(getattr(result.status, "value", result.status))
        if not store.finish_slice(self.sweep_id, index, self.holder, utc_now(), run_id=result.run_id,
                                  exit_code=int(result.exit_code)):
            log.warning("slice %d of sweep %s: run %s finished, but the claim had passed to another worker",
                        index, self.sweep_id, result.run_id)
        log.info("slice %d of sweep %s: run %s %s (exit %d)", index, self.sweep_id, result.run_id, status,
                 result.exit_code)
        self.outcome.slices.append(SliceOutcome(index, result.run_id, status, int(result.exit_code)))
        self._close_sweep()
        return True

    def _run_of(self, started: int) -> str | None:
        """The run a slice's exception ended: the last one started since `started` runs."""
        return self.runs.last if len(self.runs.ids) > started else None

    def _observed_run(self, name: str, index: int, lock: Any) -> Any:
        """The slice's run, then (whatever its outcome) the post-run path named for the job."""
        from reconcile.observability.events import Telemetry, observing
        from reconcile.observability.logs import ContextListener
        from reconcile.pipeline.interrupts import deferred
        from reconcile.pipeline.job import run_job
        from reconcile.scheduling.jobs import after_job_runs, written_report

        job = self.job
        telemetry = Telemetry()
        telemetry.listeners.append(ContextListener(job.name))
        outer, self.runs.inner = self.runs.inner, telemetry  # the runs' events go to the slice's telemetry
        report_path = None
        try:
            with observing(telemetry):
                return run_job(self.rt, mode=job.run_mode, dry_run=job.dry_run, overrides=set(job.allow),
                               batch_guard=deferred, before_batch=lock.check, job=name, slice_index=index)
        except BaseException:
            report_path = written_report(self.rt.cfg, telemetry.run_ids)
            raise
        finally:
            self.runs.inner = outer
            telemetry.finish()
            after_job_runs(self.rt.cfg, job, telemetry, environ=self.environ, report_path=report_path,
                           sender=self.sender, store=self.rt.store, now=self.rt.clock())

    def _close_sweep(self) -> None:
        """Once the sweep is done with every slice's run a success, move the incremental
        watermark to the sweep's start (each slice checked every subject of its part since)."""
        from reconcile.pipeline.read import advance_watermark

        store = self.rt.store
        sweep = store.get_sweep(self.sweep_id) or {}
        if sweep.get("status") != "done":
            return
        store.drop_segment_export(f"sweep:{self.sweep_id}")
        if self.job.dry_run:
            return
        slices = store.sweep_slices(self.sweep_id)
        if any(s["status"] != "done" or s["exit_code"] for s in slices):
            log.warning("sweep %s done with %d slice(s) failed or not clean; the watermark stays", self.sweep_id,
                        sum(1 for s in slices if s["status"] != "done" or s["exit_code"]))
            return
        advance_watermark(store, sweep["started_at"], utc_now(), only_forward=True)
        log.info("sweep %s of job %s done: %d slices", self.sweep_id, self.job.name, len(slices))


def run_worker(job: Any, *, sweep_id: str | None = None, lease_seconds: float = LEASE_SECONDS,
               poll_seconds: float = POLL_SECONDS, environ: Mapping[str, str] | None = None,
               open_session: Callable[..., Any] | None = None, sender: Any = None) -> WorkerOutcome:
    """Work on `job`'s sweep until it is done (see the module docstring)."""
    from reconcile.config import braze_api_key, load_config
    from reconcile.pipeline.interrupts import handle_signals
    from reconcile.pipeline.session import open_session as default_open

    from reconcile.scheduling.jobs import tell_failure

    require_sliced(job)
    cfg = None
    try:
        cfg = job.job_config(load_config(job.config, environ))
        opener = open_session or default_open
        rt = opener(cfg, environ)
    except Exception as exc:  # before any slice ran: told as a skipped fire
        tell_failure(cfg, job, None, exc, environ, sender)
        raise
    with rt:
        worker = Worker(rt, job, braze_api_key(cfg, environ), sweep_id=sweep_id, lease_seconds=lease_seconds,
                        poll_seconds=poll_seconds)
        worker.environ, worker.sender = environ, sender
        with handle_signals():
            return worker.run()
