"""Run events: the `Progress` protocol, and `Telemetry`, which records and forwards them.

The runtime carries one `progress` object. The pipeline reports stages through
`stage(progress, name)`, counted work through `progress(stage, done, total)` (the call
Ketch extraction already makes), and the resilience layer reports each answer and each
rate-limit wait to its observers. `Telemetry` is all three: it times stages, counts
requests and 429s per endpoint and the seconds spent waiting on rate limits, and passes
every event to its listeners (a display, the log context). Nothing here sees an identity:
endpoints are URL paths without query strings.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Protocol, runtime_checkable
from urllib.parse import urlsplit
from contextlib import contextmanager

log = logging.getLogger("reconcile.run")


@runtime_checkable
class Progress(Protocol):
    """What a run reports while it works. Every method is optional for a caller: use the
    module functions (`stage`, `run_started`), which skip what an object lacks."""

    def __call__(self, stage: str, done: int, total: int, /) -> None: ...

    def stage(self, name: str, **counts: int) -> None: ...

    def run_started(self, run_id: str, mode: str) -> None: ...


class Listener(Protocol):
    def on_stage(self, name: str, counts: dict[str, int]) -> None: ...

    def on_count(self, stage: str, done: int, total: int) -> None: ...

    def on_request(self, endpoint: str, status: str) -> None: ...

    def on_wait(self, endpoint: str, seconds: float) -> None: ...

    def on_run(self, run_id: str, mode: str) -> None: ...


class RunIds:
    """A progress object that keeps the ids of the runs started, in order, and passes every
    event on to `inner`: how a caller names the run an exception ended (the last one)."""

    def __init__(self, inner: Progress | None = None):
        self.inner, self.ids = inner, list[str]()

    @property
    def last(self) -> str | None:
        return self.ids[-1] if self.ids else None

    def __call__(self, stage_name: str, done: int, total: int) -> None:
        if self.inner is not None:
            self.inner(stage_name, done, total)

    def stage(self, name: str, **counts: int) -> None:
        stage(self.inner, name, **counts)

    def run_started(self, run_id: str, mode: str) -> None:
        self.ids.append(run_id)
        run_started(self.inner, run_id, mode)


def stage(progress: Any, name: str, **counts: int) -> None:
    """Report that the run entered stage `name` (no-op without a progress object)."""
    fn = getattr(progress, "stage", None)
    if fn is not None:
        fn(name, **counts)


def run_started(progress: Any, run_id: str, mode: str) -> None:
    fn = getattr(progress, "run_started", None)
    if fn is not None:
        fn(run_id, mode)


def counting(progress: Any, name: str, total: int, then: Callable[[], None] | None = None) -> Callable[[], None] | None:
    """A `before_batch` callback reporting `name` done/total before each batch, then calling `then`."""
    if progress is None:
        return then
    done = [0]

    def before() -> None:
        progress(name, done[0], total)
        done[0] += 1
        if then is not None:
            then()

    return before


def endpoint_of(service: str, url: str) -> str:
    """A metric-safe endpoint name: Braze's path (`/users/track`), Ketch's operation (`consent/get`)."""
    path = urlsplit(url).path.rstrip("/")
    if service == "ketch":
        parts = path.split("/")
        return f"{parts[-3]}/{parts[-1]}" if len(parts) >= 3 else path
    return path or "/"


@dataclass
class StageTime:
    name: str
    started: float
    ended: float | None = None


@dataclass
class Telemetry:
    """Collects a run's events; thread-safe; forwards each to `listeners`."""

    clock: Callable[[], float] = time.monotonic
    listeners: list[Any] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)
    stages: list[StageTime] = field(default_factory=list)
    requests: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # (service, endpoint, status) -> n
    waits: defaultdict[tuple[str, str], float] = field(
        default_factory=lambda: defaultdict(float))  # (service, endpoint) -> seconds
    counts: dict[str, tuple[int, int]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # -- Progress -------------------------------------------------------------------------
    def __call__(self, stage_name: str, done: int, total: int) -> None:
        with self._lock:
            self.counts[stage_name] = (done, total)
        self._emit("on_count", stage_name, done, total)

    def stage(self, name: str, **counts: int) -> None:
        now = self.clock()
        with self._lock:
            if self.stages and self.stages[-1].ended is None:
                self.stages[-1].ended = now
            self.stages.append(StageTime(name, now))
        log.info("stage %s", name, extra={"event": "stage", "stage": name, "counts": counts or None})
        self._emit("on_stage", name, dict(counts))

    def run_started(self, run_id: str, mode: str) -> None:
        with self._lock:
            self.run_ids.append(run_id)
        self._emit("on_run", run_id, mode)

    def finish(self) -> None:
        """Close the open stage (call once the run has ended)."""
        with self._lock:
            if self.stages and self.stages[-1].ended is None:
                self.stages[-1].ended = self.clock()

    # -- resilience observer ----------------------------------------------------------
    def request(self, service: str, url: str, status: int | None) -> None:
        endpoint = endpoint_of(service, url)
        code = str(status) if status is not None else "error"
        with self._lock:
            self.requests[(service, endpoint, code)] += 1
        self._emit("on_request", f"{service} {endpoint}", code)

    def rate_wait(self, service: str, url: str, seconds: float) -> None:
        endpoint = endpoint_of(service, url)
        with self._lock:
            self.waits[(service, endpoint)] += seconds
        log.info("rate limit: waiting %.1fs for %s %s", seconds, service, endpoint,
                 extra={"event": "rate_limit_wait", "counts": {"seconds": round(seconds, 3)}})
        self._emit("on_wait", f"{service} {endpoint}", seconds)

    # -- read back --------------------------------------------------------------------
    def stage_seconds(self) -> dict[str, float]:
        out: dict[str, float] = {}
        with self._lock:
            for s in self.stages:
                end = s.ended if s.ended is not None else self.clock()
                out[s.name] = out.get(s.name, 0.0) + max(0.0, end - s.started)
        return out

    def total_requests(self) -> int:
        with self._lock:
            return sum(self.requests.values())

    def _emit(self, method: str, *args: Any) -> None:
        for listener in list(self.listeners):
            fn = getattr(listener, method, None)
            if fn is None:
                continue
            try:
                fn(*args)
            except Exception:  # noqa: BLE001 - a display must never stop a run
                logging.getLogger(__name__).debug("progress listener %r failed", listener, exc_info=True)


@contextmanager
def observing(telemetry: Telemetry) -> Iterator[Telemetry]:
    """Make the resilience layer report every answer and rate-limit wait to `telemetry`."""
    from reconcile.clients import resilience

    remove = resilience.add_observer(telemetry)
    try:
        yield telemetry
    finally:
        remove()
