"""Showing a run's progress on stderr.

On a terminal, `RichDisplay` draws one live line with rich: the stage, subjects done of
total, requests sent, and any rate-limit wait with its endpoint and the seconds left.
Elsewhere (cron, CI, a pipe), `HeartbeatDisplay` prints one plain line every
`interval` seconds and one per stage change. With `--log-format json`, `JsonProgress`
writes the same beats as NDJSON objects (`event: "progress"`), so stderr holds nothing
else. `--quiet` shows none (`display_for`).
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, Callable, TextIO

from reconcile.observability.events import Telemetry


class _State:
    """What both displays show, updated from the telemetry's events."""

    def __init__(self, clock: Callable[[], float]):
        self.clock = clock
        self.run_id = ""
        self.stage = "starting"
        self.done = 0
        self.total = 0
        self.count_stage = ""
        self.requests = 0
        self.wait_endpoint = ""
        self.wait_until = 0.0
        self.count_started: float | None = None
        self.count_from = 0
        self.last_endpoint = ""

    def on_run(self, run_id: str, mode: str) -> None:
        self.run_id = run_id

    def on_stage(self, name: str, counts: dict[str, int]) -> None:
        self.stage = name
        self.done, self.total, self.count_stage, self.count_started = 0, 0, "", None
        self.last_endpoint = ""

    def on_count(self, stage: str, done: int, total: int) -> None:
        if stage != self.count_stage or done < self.done or self.count_started is None:
            self.count_started, self.count_from = self.clock(), done
        self.count_stage, self.done, self.total = stage, done, total

    def on_request(self, endpoint: str, status: str) -> None:
        self.requests += 1
        self.last_endpoint = endpoint

    def rate(self) -> float:
        """Subjects a second of the current count, 0 before there is one."""
        if self.count_started is None:
            return 0.0
        elapsed, counted = self.clock() - self.count_started, self.done - self.count_from
        return counted / elapsed if counted > 0 and elapsed > 0 else 0.0

    def eta(self) -> str:
        rate = self.rate()
        if not rate or not self.total or self.done >= self.total:
            return ""
        left = (self.total - self.done) / rate
        return f"{int(left // 60)}m{int(left % 60):02d}s" if left >= 60 else f"{left:.0f}s"

    def pace(self) -> str:
        """Rate and ETA of the current count, or what the stage is waiting on before it counts."""
        if self.total:
            rate, eta = self.rate(), self.eta()
            return f"{rate:.0f}/s" + (f", ETA {eta}" if eta else "") if rate else ""
        if self.stage == "done":
            return ""
        if self.last_endpoint:
            return f"waiting on {self.last_endpoint}"
        return f"waiting on {self.stage}" if self.stage != "starting" else "waiting on the config and state store"

    def on_wait(self, endpoint: str, seconds: float) -> None:
        self.wait_endpoint = endpoint
        self.wait_until = max(self.wait_until, self.clock() + seconds)

    def waiting(self) -> float:
        return max(0.0, self.wait_until - self.clock())

    def line(self) -> str:
        parts = [f"run {self.run_id}" if self.run_id else "run", f"stage {self.stage}"]
        if self.total:
            parts.append(f"{self.count_stage} {self.done}/{self.total}")
        if pace := self.pace():
            parts.append(pace)
        parts.append(f"requests {self.requests}")
        left = self.waiting()
        if left > 0:
            parts.append(f"rate-limit wait {self.wait_endpoint} {left:.0f}s left")
        return "; ".join(parts)


class HeartbeatDisplay(_State):
    """One line per stage change and one every `interval` seconds, for logs and pipes."""

    def __init__(self, stream: TextIO, interval: float = 10.0, clock: Callable[[], float] = time.monotonic):
        super().__init__(clock)
        self.stream, self.interval = stream, interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def on_stage(self, name: str, counts: dict[str, int]) -> None:
        super().on_stage(name, counts)
        self._print()

    def _print(self) -> None:
        try:
            self.stream.write(f"progress: {self.line()}\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass

    def start(self) -> None:
        def beat() -> None:
            while not self._stop.wait(self.interval):
                self._print()

        self._thread = threading.Thread(target=beat, name="reconcile-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None


class JsonProgress(HeartbeatDisplay):
    """The heartbeat as JSON log objects, for `--log-format json` (whatever the stream is)."""

    def _print(self) -> None:
        import logging

        from reconcile.observability.logs import JsonFormatter

        record = logging.LogRecord("reconcile.progress", logging.INFO, __file__, 0, "progress: %s", (self.line(),),
                                   None)
        counts: dict[str, float] = {"requests": self.requests}
        if self.total:
            counts.update(done=self.done, total=self.total)
        if self.waiting() > 0:
            counts["rate_limit_wait_seconds"] = round(self.waiting(), 1)
        record.event, record.stage, record.counts = "progress", self.stage, counts
        if self.run_id:
            record.run_id = self.run_id
        try:
            self.stream.write(JsonFormatter().format(record) + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass


class RichDisplay(_State):
    """A live rich progress bar on a terminal."""

    def __init__(self, stream: TextIO, clock: Callable[[], float] = time.monotonic):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        super().__init__(clock)
        self.console = Console(file=stream, force_terminal=True)
        self.progress = Progress(TextColumn("[bold]{task.fields[stage]}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                                 console=self.console, transient=False, refresh_per_second=8)
        self.task = self.progress.add_task("run", total=None, stage="starting", info="")
        self._lock = threading.Lock()
        self._stopped = False

    def _refresh(self) -> None:
        pace = self.pace()
        info = f"{pace}  requests {self.requests}" if pace else f"requests {self.requests}"
        left = self.waiting()
        if left > 0:
            info += f"  rate-limit wait {self.wait_endpoint} {left:.0f}s left"
        label = (self.stage if not self.count_stage or self.count_stage == self.stage
                 else f"{self.stage}: {self.count_stage}")
        with self._lock:
            self.progress.update(self.task, stage=label, info=info, completed=self.done,
                                 total=self.total or None)

    def on_run(self, run_id: str, mode: str) -> None:
        super().on_run(run_id, mode)
        self.console.print(f"run {run_id} ({mode})", highlight=False, markup=False)

    def on_stage(self, name: str, counts: dict[str, int]) -> None:
        super().on_stage(name, counts)
        self._refresh()

    def on_count(self, stage: str, done: int, total: int) -> None:
        super().on_count(stage, done, total)
        self._refresh()

    def on_request(self, endpoint: str, status: str) -> None:
        super().on_request(endpoint, status)
        if self.requests % 25 == 0:
            self._refresh()

    def on_wait(self, endpoint: str, seconds: float) -> None:
        super().on_wait(endpoint, seconds)
        self._refresh()

    def start(self) -> None:
        self.progress.start()

    def stop(self) -> None:
        """Draw the bar finished, then stop it: what prints next appears below it."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        self.stage = "done"
        self.wait_until, self.last_endpoint = 0.0, ""
        self._refresh()
        with self._lock:
            if self.total:
                self.progress.update(self.task, completed=self.total)
            self.progress.stop()


def display_for(telemetry: Telemetry, *, quiet: bool, stream: TextIO | None = None,
                interval: float = 10.0, log_format: str = "text") -> Any:
    """Attach the right display to `telemetry` and start it; returns it (None when quiet)."""
    if quiet:
        return None
    out = stream if stream is not None else sys.stderr
    isatty = getattr(out, "isatty", None)
    display: Any
    if log_format == "json":
        display = JsonProgress(out, interval)
    else:
        display = RichDisplay(out) if isatty is not None and isatty() else HeartbeatDisplay(out, interval)
    telemetry.listeners.append(display)
    display.start()
    return display
