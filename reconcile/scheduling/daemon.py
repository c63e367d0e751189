"""`reconcile scheduler`: run schedules.toml in the foreground until SIGTERM or SIGINT.

APScheduler 3's `BlockingScheduler` decides when jobs fire (`max_instances=1`,
`coalesce=True`, each job's `misfire_grace_time`), in a thread of its own. Its executor does
not run anything: it hands each fire to the main thread through a queue, and the main
thread runs the job (`reconcile.scheduling.jobs.run_scheduled`), because only the main
thread receives signals, so a SIGTERM mid-apply lets the batch in flight finish and be
journaled and closes the run as `interrupted`. Then the daemon stops taking runs and
exits 0. SIGHUP re-reads the schedules file; a file with problems is logged and the jobs
already loaded keep running.

Logged (logger `reconcile.scheduling`, each line with `event`, `job`, `fire_time` and, once
there is one, `run_id`): each fire (`fire`, INFO), each missed fire (`fire_missed`, later
than its grace time), each skip (`fire_skipped`: the previous run of the job still going,
another run holding the job's lock, the fire already run by another scheduler replica), a
fire that failed (`fire_failed`), each run's end (`run_end` from the post-run path,
WARNING when refused, failed, partial, stale or interrupted) and each fire's outcome
(`fire_done`). Missed fires, skips (except a replica's, which is the design working) and
failures are WARNING or above and notified to the job's targets; every minute and after
each fire the daemon checks each job for a stall (no success within two of its fires,
`stalled`, told once per last success).

With `health=(host, port)` the daemon serves `/healthz` and `/readyz` (scheduling/health.py)
from a thread of its own, answering even while a run holds the main thread.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Mapping

from apscheduler.events import (
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    EVENT_JOB_SUBMITTED,
    JobExecutionEvent,
    JobSubmissionEvent,
)
from apscheduler.executors.base import BaseExecutor
from apscheduler.schedulers.blocking import BlockingScheduler

from reconcile.errors import ConfigError, ReconcileError, RunLocked
from reconcile.pipeline.interrupts import Interrupted, signal_name
from reconcile.config.schedules import Job, load_schedules
from reconcile.observability.events import RunIds

log = logging.getLogger("reconcile.scheduling")

POLL_SECONDS = 0.2
NOTICE_EVERY = 300.0  # a job's skipped fires are told at most this often (the count of the others with it)
STALL_CHECK_SECONDS = 60.0  # how often the daemon looks for stalled jobs (a fire checks its own job after its run)


class MainThreadExecutor(BaseExecutor):
    """Queues each fire for the main thread; APScheduler still counts instances."""

    def __init__(self) -> None:
        super().__init__()
        self.fires: queue.Queue[tuple[Any, list[datetime]]] = queue.Queue()

    def _do_submit_job(self, job: Any, run_times: list[datetime]) -> None:
        self.fires.put((job, list(run_times)))

    def finished(self, job: Any, events: list[Any]) -> None:
        self._run_job_success(job.id, events)


def _not_called() -> None:
    raise RuntimeError("scheduled jobs run in the daemon's main thread")


class Daemon:
    """The scheduler process (see the module docstring)."""

    def __init__(self, path: str | Path, *, only: tuple[str, ...] = (), environ: Mapping[str, str] | None = None,
                 lease_seconds: float | None = None, display: Any = None,
                 health: tuple[str, int] | None = None):
        self.path = Path(path)
        self.only = only
        self.environ = environ
        self.lease_seconds = lease_seconds
        self.display = display  # telemetry -> progress display, per run (None: none)
        self.jobs: dict[str, Job] = {}
        self.executor = MainThreadExecutor()
        self.scheduler = BlockingScheduler(executors={"default": self.executor}, timezone=timezone.utc,
                                           job_defaults={"max_instances": 1, "coalesce": True})
        self.scheduler.add_listener(self._on_event, EVENT_JOB_SUBMITTED | EVENT_JOB_MAX_INSTANCES)
        self.stop_signal: int | None = None
        self.reload_requested = False
        self.busy = False
        self._thread: threading.Thread | None = None
        self.pending_notices: queue.Queue[tuple[str, str, str, datetime | None]] = queue.Queue()
        self.sender: Any = None  # notification sender (tests inject one); None: HTTP
        self.started = datetime.now(timezone.utc)
        self.stall_every = STALL_CHECK_SECONDS
        self._held: dict[tuple[str, str], list[Any]] = {}  # (job, event) -> [detail, last fire, fires]
        self._told: dict[tuple[str, str], float] = {}  # (job, event) -> when last notified (monotonic)
        self._next_stall_check = 0.0
        self.health = health  # (host, port) for /healthz and /readyz, or None
        self.health_server: Any = None
        self.running: str | None = None  # the job whose run is going now
        self.last: dict[str, dict[str, Any]] = {}  # job -> its last fire: time, outcome, run id

    # jobs --------------------------------------------------------------------------------

    def _load(self) -> dict[str, Job]:
        jobs = {j.name: j for j in load_schedules(self.path)}
        unknown = [n for n in self.only if n not in jobs]
        if unknown:
            from reconcile.errors import ConfigProblem

            raise ConfigError(ConfigProblem("--job", f"no job named {', '.join(map(repr, unknown))} in {self.path}",
                                            f"use one of: {', '.join(jobs) or 'none'}"))
        return {n: j for n, j in jobs.items() if not self.only or n in self.only}

    def _install(self, jobs: dict[str, Job]) -> None:
        self.scheduler.remove_all_jobs()
        for job in jobs.values():
            self.scheduler.add_job(_not_called, trigger=job.trigger, id=job.name, name=job.name,
                                   max_instances=1, coalesce=True, misfire_grace_time=job.misfire_grace_time,
                                   replace_existing=True)
        self.jobs = jobs
        for job in jobs.values():
            nxt = job.next_runs(datetime.now(timezone.utc), 1)
            log.info("job %s: %s, misfire grace %ss; next fire %s", job.name, job.describe(),
                     job.misfire_grace_time, nxt[0].isoformat() if nxt else "never")

    def reload(self) -> None:
        self.reload_requested = False
        try:
            jobs = self._load()
        except ConfigError as exc:
            log.error("reload of %s refused, the loaded jobs keep running: %s", self.path, exc)
            return
        self._install(jobs)
        log.info("reloaded %s: %d job(s)", self.path, len(jobs))

    # signals -----------------------------------------------------------------------------

    def _on_stop(self, signum: int, _frame: Any) -> None:
        first = self.stop_signal is None
        self.stop_signal = self.stop_signal or signum
        if first:
            log.info("%s received: no new runs will start", signal_name(signum))
        if self.busy:  # a job is being prepared (config, lock): stop it before its run starts
            raise Interrupted(signum)

    def _on_hup(self, _signum: int, _frame: Any) -> None:
        self.reload_requested = True

    def _on_event(self, event: Any) -> None:
        if isinstance(event, JobSubmissionEvent) and event.code == EVENT_JOB_SUBMITTED:
            times = ", ".join(t.isoformat() for t in event.scheduled_run_times)
            log.info("fire: job %s scheduled at %s", event.job_id, times,
                     extra={"event": "fire", "job": event.job_id, "fire_time": times})
        elif event.code == EVENT_JOB_MAX_INSTANCES:
            times = ", ".join(t.isoformat() for t in event.scheduled_run_times)
            why = "its previous run is still going (max_instances=1)"
            log.warning("skip: job %s fire at %s, %s", event.job_id, times, why,
                        extra={"event": "fire_skipped", "job": event.job_id, "fire_time": times, "reason": why})
            self.pending_notices.put((event.job_id, "fire_skipped", f"the fire did not run: {why}",
                                      event.scheduled_run_times[-1] if event.scheduled_run_times else None))

    def _tell(self, name: str, event: str, detail: str, fire_time: datetime | None) -> None:
        """Notify a job's targets (its config's and its own) of a fire without a run."""
        from reconcile.config import load_config
        from reconcile.observability.postrun import notify_fire
        from reconcile.scheduling.jobs import job_notify

        job = self.jobs.get(name)
        if job is None:
            return
        try:
            cfg = job.job_config(load_config(job.config, self.environ))
        except Exception:  # noqa: BLE001 - the job's own targets still hear of it
            cfg = None
        notify_fire(job_notify(cfg, job), name, event, detail, fire_time=fire_time, environ=self.environ,
                    sender=self.sender)

    def _check_stalls(self) -> None:
        """Tell once of each job with no success within two of its fires (since the daemon started)."""
        from reconcile.config import load_config, state_url
        from reconcile.scheduling.jobs import check_stalled
        from reconcile.store.store import Store

        now = datetime.now(timezone.utc)
        for job in list(self.jobs.values()):
            try:
                cfg = job.job_config(load_config(job.config, self.environ))
                with Store.open(state_url(cfg, self.environ)) as store:
                    check_stalled(store, job, cfg, now, started=self.started, environ=self.environ,
                                  sender=self.sender)
            except Exception:  # noqa: BLE001 - a job whose config is broken fails at its fire, and is told then
                log.debug("stall check of job %s failed", job.name, exc_info=True)

    # the loop ----------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """What /healthz and /readyz answer (scheduling/health.py); `reason` is None when ready."""
        alive = self._thread is not None and self._thread.is_alive() and self.scheduler.running
        reason = (f"stopping ({signal_name(self.stop_signal)})" if self.stop_signal is not None
                  else "the scheduler thread is not running" if not alive
                  else "no jobs loaded" if not self.jobs else None)
        jobs = {}
        for name in list(self.jobs):
            aps = self.scheduler.get_job(name) if alive else None
            jobs[name] = {"next_fire": getattr(aps, "next_run_time", None), "last": self.last.get(name)}
        return {"started_at": self.started, "running": self.running, "jobs": jobs, "reason": reason}

    def serve(self) -> int:
        """Run until SIGTERM/SIGINT; returns the exit code (0)."""
        if self.health is not None:
            from reconcile.scheduling.health import HealthServer

            self.health_server = HealthServer(*self.health, self.snapshot).start()
        try:
            return self._serve()
        finally:
            if self.health_server is not None:
                self.health_server.stop()

    def _serve(self) -> int:
        self._install(self._load())
        previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_hup)
        self._next_stall_check = time.monotonic() + self.stall_every  # the first fires come first
        self._thread = threading.Thread(target=self.scheduler.start, name="apscheduler", daemon=True)
        self._thread.start()
        log.info("scheduler started with %d job(s) from %s", len(self.jobs), self.path)
        try:
            while self.stop_signal is None:
                if self.reload_requested:
                    self.reload()
                self._housekeeping()
                try:
                    aps_job, run_times = self.executor.fires.get(timeout=POLL_SECONDS)
                except queue.Empty:
                    continue
                self._fire(aps_job, run_times)
        finally:
            self._shutdown()
            for s, handler in previous.items():
                signal.signal(s, handler if handler is not None else signal.SIG_DFL)
        log.info("scheduler stopped (%s)", signal_name(self.stop_signal) if self.stop_signal else "no signal")
        return 0

    def _housekeeping(self) -> None:
        """Notices queued by the scheduler thread (at most one per job and kind every
        NOTICE_EVERY seconds, counting the fires held back), and the periodic stall check."""
        while not self.pending_notices.empty():
            name, event, detail, when = self.pending_notices.get_nowait()
            held = self._held.setdefault((name, event), [detail, when, 0])
            held[1], held[2] = when, held[2] + 1
        now = time.monotonic()
        for key, (detail, when, count) in list(self._held.items()):
            if now < self._told.get(key, -NOTICE_EVERY) + NOTICE_EVERY:
                continue
            del self._held[key]
            self._told[key] = now
            more = f" ({count} fires so far, the last at {when.isoformat()})" if count > 1 and when else ""
            self._tell(key[0], key[1], detail + more, when)
        if time.monotonic() >= self._next_stall_check:
            self._next_stall_check = time.monotonic() + self.stall_every
            self._check_stalls()

    def _shutdown(self) -> None:
        try:
            self.scheduler.shutdown(wait=False)
        except Exception:  # noqa: BLE001 - it may not have started yet
            pass
        if self._thread is not None:
            self._thread.join(timeout=10)
        while not self.executor.fires.empty():
            aps_job, run_times = self.executor.fires.get_nowait()
            log.warning("skip: job %s fire at %s, the scheduler is stopping", aps_job.id, run_times[-1].isoformat())
            self.executor.finished(aps_job, [])

    def _fire(self, aps_job: Any, run_times: list[datetime]) -> None:
        events: list[Any] = []
        try:
            for run_time in run_times:
                if self.stop_signal is not None:
                    log.warning("skip: job %s fire at %s, the scheduler is stopping", aps_job.id, run_time.isoformat())
                    continue
                late = datetime.now(timezone.utc) - run_time
                if late > timedelta(seconds=aps_job.misfire_grace_time):
                    why = (f"started {late.total_seconds():.0f}s late, over its misfire_grace_time of "
                           f"{aps_job.misfire_grace_time}s")
                    log.warning("missed: job %s fire at %s %s", aps_job.id, run_time.isoformat(), why,
                                extra={"event": "fire_missed", "job": aps_job.id, "fire_time": run_time.isoformat(),
                                       "reason": why})
                    self.pending_notices.put((aps_job.id, "fire_missed", f"the fire was missed: it {why}", run_time))
                    events.append(JobExecutionEvent(EVENT_JOB_MISSED, aps_job.id, "default", run_time))
                    continue
                self._run_one(self.jobs.get(aps_job.id), run_time)
                events.append(JobExecutionEvent(EVENT_JOB_EXECUTED, aps_job.id, "default", run_time))
        finally:
            self.executor.finished(aps_job, events)

    def _run_one(self, job: Job | None, run_time: datetime) -> None:
        from reconcile.scheduling.jobs import run_scheduled

        if job is None:  # removed by a reload after it fired
            return
        self.busy, self.running = True, job.name
        self.last[job.name] = {"fire_time": run_time, "outcome": "running", "run_id": None}
        runs = RunIds()
        try:
            outcome = run_scheduled(job, fire_time=run_time, environ=self.environ, lease_seconds=self.lease_seconds,
                                    display=self.display, sender=self.sender, progress=runs)
        except Interrupted as exc:
            run_id = runs.last
            log.warning("job %s stopped by %s%s; no new runs will start; the next fire resumes it", job.name,
                        signal_name(exc.signum),
                        f": run {run_id} closed as interrupted" if run_id else " before its run started")
            self.stop_signal = self.stop_signal or exc.signum
            self.last[job.name] |= {"outcome": "interrupted", "run_id": run_id}
            return
        except RunLocked:  # logged and notified by run_scheduled as a skipped fire
            self.last[job.name] |= {"outcome": "skipped"}
            return
        except ReconcileError as exc:
            self.last[job.name] |= {"outcome": "failed", "run_id": runs.last, "exit_code": int(exc.exit_code)}
            log.error("job %s failed (exit %d): %s", job.name, exc.exit_code, exc,
                      extra=self._extra(job, run_time, exc, runs.last))
            return
        except Exception as exc:  # noqa: BLE001 - one job's bug must not stop the scheduler
            self.last[job.name] |= {"outcome": "failed", "run_id": runs.last, "exit_code": 1}
            log.exception("job %s failed with an unexpected error", job.name,
                          extra=self._extra(job, run_time, exc, runs.last))
            return
        finally:
            self.busy, self.running = False, None
        self.last[job.name] |= {"outcome": "skipped" if outcome.skipped else str(outcome.status),
                                "run_id": outcome.run_id, "exit_code": outcome.exit_code}
        if outcome.skipped:
            log.warning("skip: job %s: %s", job.name, outcome.skipped,
                        extra={"event": "fire_skipped", "job": job.name, "fire_time": run_time.isoformat(),
                               "reason": outcome.skipped})
        else:
            log.info("job %s: run %s %s (exit %d)", job.name, outcome.run_id, outcome.status, outcome.exit_code,
                     extra={"event": "fire_done", "job": job.name, "fire_time": run_time.isoformat(),
                            "run_id": outcome.run_id, "outcome": outcome.status,
                            "counts": {"exit_code": outcome.exit_code}})

    @staticmethod
    def _extra(job: Job, run_time: datetime, exc: BaseException, run_id: str | None) -> dict[str, Any]:
        return {"event": "fire_failed", "job": job.name, "fire_time": run_time.isoformat(),
                "run_id": run_id, "reason": str(exc)[:500]}
