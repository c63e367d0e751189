"""Braze's rate policy: per-endpoint-class budgets, plugged into the resilience layer.

One `Pacer` owns a `RateBudget` per endpoint class (`users_track`, `shared`, ...); every
send goes through `resilience.send_with_retries` with the budget as its `RateGate`:

* **Local pacing.** Each budget counts sends in fixed windows aligned to the clock, the
  way Braze counts them ("rate limits reset on the clock hour"), and never exceeds the
  configured `RateLimit(requests, per_seconds)` in a window.
* **Server pacing.** `X-RateLimit-Limit/Remaining/Reset` are read from every response in
  any letter case. While the server says `Remaining: 0`, nothing is sent before `Reset`
  (UTC epoch seconds). In-flight sends are subtracted so concurrent threads do not
  overshoot the remaining allowance.
* **429.** The budget is blocked until `Retry-After` (clamped, see `RetryPolicy`) if
  sent, else until `X-RateLimit-Reset`, else for a jittered backoff.
* **Shares.** Classes given a share (`braze.budget_share` for the shared class) send at
  most that share of the limit per window: of `X-RateLimit-Limit` once an answer's
  `X-RateLimit-Reset` shows the server counts the same clock window, else of the
  configured limit. A send reserved close to its window's end is charged to the next
  window too, since the server may count it there.
* **Use.** `Pacer.usage()` reports per class the answers per endpoint, the 429s and the
  wall seconds a send was held back (by the class's own cap, or by the server).
* **Shared backend.** With a `BudgetBackend` (see `reconcile.clients.shared_budget`) a
  send is also taken from a window several processes count together (in the state
  database), within the same cap; the in-process count stays as it is.
* **Failed tries, waits, what is retried:** `reconcile.clients.resilience` (one policy
  for both API clients).

`clock` and `sleep` are injected (defaults `time.time`, `time.sleep`); all state is
guarded by locks so several threads may share one pacer.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol
from urllib.parse import urlsplit

import httpx

from reconcile.clients.resilience import (Attempts, RequestLabel, RetryPolicy, header, header_number,
                                          retry_after_seconds, send_with_retries)
from reconcile.config import RateLimit

__all__ = ["BudgetBackend", "Clock", "Pacer", "RateBudget", "RateInfo", "RequestLabel", "RetryPolicy", "Sleep",
           "parse_rate_headers", "reset_epoch", "retry_after_seconds"]

log = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], None]

# A Reset value below this is not an epoch timestamp but a number of seconds from now.
_EPOCH_FLOOR = 1_000_000_000.0


@dataclass(frozen=True)
class RateInfo:
    """The `X-RateLimit-*` headers of one response (None when absent or unreadable)."""

    limit: int | None = None
    remaining: int | None = None
    reset: float | None = None


def parse_rate_headers(headers: Mapping[str, str] | httpx.Headers) -> RateInfo:
    """Read `X-RateLimit-Limit/Remaining/Reset` whatever the letter case of the names."""
    limit = header_number(header(headers, "x-ratelimit-limit"))
    remaining = header_number(header(headers, "x-ratelimit-remaining"))
    return RateInfo(
        limit=int(limit) if limit is not None else None,
        remaining=int(remaining) if remaining is not None else None,
        reset=header_number(header(headers, "x-ratelimit-reset")),
    )


def reset_epoch(reset: float | None, now: float) -> float | None:
    """Reset as an epoch time; small values from an epoch-like clock are seconds from now."""
    if reset is None:
        return None
    if reset < _EPOCH_FLOOR <= now:
        return now + reset
    return reset


class BudgetBackend(Protocol):
    """Where the sends of a class's clock windows are counted beyond this process."""

    def take(self, rate_class: str, window_start: float, per_seconds: float, limit: int,
             carry_to_next: bool) -> bool:
        """Take one send from the window starting at `window_start` if it holds fewer than
        `limit`; with `carry_to_next`, also charge the following window. False: no room."""
        ...


class RateBudget:
    """The send allowance of one endpoint class; thread-safe.

    `share` (0 < share <= 1) caps this job's own sends per window at that share of the
    limit: the one the server's `X-RateLimit-Limit` reports when `follow_header_limit`,
    else the configured one. A send reserved so close to its window's end that it may
    reach the server in the next window (twice the slowest recent answer, at least a
    thousandth of the window, at most a quarter) is charged to both windows."""

    def __init__(self, name: str, limit: RateLimit | None, clock: Clock, *, share: float = 1.0,
                 follow_header_limit: bool = False, backend: BudgetBackend | None = None):
        if not 0 < share <= 1:
            raise ValueError(f"share must be in (0, 1], got {share}")
        self.name = name
        self.limit = limit
        self.share = share
        self.follow_header_limit = follow_header_limit
        self.backend = backend
        self._clock = clock
        self._lock = threading.Lock()
        self._window_start = -math.inf
        self._window_used = 0
        self._carry_start = -math.inf  # a window already charged with sends near the previous one's end
        self._carry_used = 0
        self._header_limit: int | None = None
        self._server_remaining: int | None = None
        self._server_reset = -math.inf
        self._blocked_until = -math.inf
        self._latency = 0.0
        self._waited_until = -math.inf
        self.sent = 0
        self.rate_limited = 0
        self.waits = {"window": 0.0, "server": 0.0}  # wall seconds with a send held back, by what held it
        self.endpoints: dict[str, int] = {}

    @property
    def window_limit(self) -> int | None:
        """Sends this job allows itself per window (None: unlimited)."""
        if self.limit is None:
            return None
        base = self._header_limit if self._header_limit is not None else self.limit.requests
        return max(1, math.floor(base * self.share + 1e-9))

    def reserve(self) -> float:
        """Take one send slot and return 0, or return the seconds to wait before asking again."""
        with self._lock:
            now = self._clock()
            wait, reason = self._wait_at(now)
            if wait > 0:
                self._note_wait(now, wait, reason)
                return wait
            backend, limit = self.backend, self.window_limit
            if backend is None or limit is None:
                self._take(now)
                return 0.0
            start, per = self._window(now), self._per_seconds()
            carry = start + per - now < self._guard()
        if not backend.take(self.name, start, per, limit, carry):
            with self._lock:
                wait = max(start + per - now, per / 1000)
                self._note_wait(now, wait, "window")
            return wait
        with self._lock:
            self._take(now)
        return 0.0

    def _wait_at(self, now: float) -> tuple[float, str]:
        wait, reason = max(0.0, self._blocked_until - now), "server"
        if self._server_remaining is not None and self._server_remaining <= 0:
            wait = max(wait, self._server_reset - now)
        limit = self.window_limit
        if limit is not None:
            start = self._window(now)
            used = self._window_used if start == self._window_start else self._carried(start)
            if used >= limit:
                window_wait = start + self._per_seconds() - now
                if window_wait > wait:
                    wait, reason = window_wait, "window"
        return max(0.0, wait), reason

    def _note_wait(self, now: float, wait: float, reason: str) -> None:
        """Add the part of [now, now + wait] not already counted (wall time, not per thread)."""
        end = now + wait
        counted = max(0.0, end - max(now, self._waited_until))
        if counted:
            self.waits[reason] += counted
            self._waited_until = max(self._waited_until, end)

    def _per_seconds(self) -> float:
        assert self.limit is not None
        return float(self.limit.per_seconds)

    def _window(self, now: float) -> float:
        per = self._per_seconds()
        return math.floor(now / per) * per

    def _carried(self, start: float) -> int:
        return self._carry_used if start == self._carry_start else 0

    def _guard(self) -> float:
        per = self._per_seconds()
        return min(per / 4, max(2 * self._latency, per / 1000))

    def _take(self, now: float) -> None:
        self.sent += 1
        if self.limit is not None:
            start = self._window(now)
            if start != self._window_start:
                self._window_start, self._window_used = start, self._carried(start)
            self._window_used += 1
            following = start + self._per_seconds()
            if following - now < self._guard():
                if self._carry_start != following:
                    self._carry_start, self._carry_used = following, 0
                self._carry_used += 1
        if self._server_remaining is not None and self._server_reset > now:
            self._server_remaining -= 1

    def observe(self, info: RateInfo | Mapping[str, str] | Any) -> None:
        """Fold one response's rate-limit headers (or their RateInfo) into the budget."""
        if not isinstance(info, RateInfo):
            info = parse_rate_headers(info)
        with self._lock:
            now = self._clock()
            reset = reset_epoch(info.reset, now)
            if (self.follow_header_limit and info.limit is not None and info.limit > 0
                    and self._same_windows(now, reset)):
                self._header_limit = info.limit
            if info.remaining is None or reset is None or reset <= now:
                return
            if reset != self._server_reset or self._server_remaining is None:
                self._server_reset, self._server_remaining = reset, info.remaining
            else:
                self._server_remaining = min(self._server_remaining, info.remaining)

    def _same_windows(self, now: float, reset: float | None) -> bool:
        """Whether the server's window ends where this budget's does (or the next one), so
        its `X-RateLimit-Limit` counts what this budget's window counts."""
        if self.limit is None or reset is None:
            return False
        per = self._per_seconds()
        end = self._window(now) + per
        tolerance = max(1.0, per / 100)
        return abs(reset - end) <= tolerance or abs(reset - end - per) <= tolerance

    def note_answer(self, endpoint: str, seconds: float, rate_limited: bool) -> None:
        """Count one answer of `endpoint` and how long it took."""
        with self._lock:
            self.endpoints[endpoint] = self.endpoints.get(endpoint, 0) + 1
            self.rate_limited += rate_limited
            self._latency = max(max(0.0, seconds), self._latency * 0.9)

    def block_until(self, until: float) -> None:
        """Send nothing in this class before `until` (after a 429)."""
        with self._lock:
            self._blocked_until = max(self._blocked_until, until)

    def rate_limited_until(self, headers: Any, now: float) -> float | None:
        """`X-RateLimit-Reset` of a 429 as an epoch time, if it has one."""
        return reset_epoch(parse_rate_headers(headers).reset, now)

    def usage(self) -> dict[str, Any]:
        """Sends, answers per endpoint, 429s and wait seconds of this class so far."""
        with self._lock:
            limit = None if self.limit is None else {"requests": self.limit.requests,
                                                     "per_seconds": self.limit.per_seconds}
            return {"requests": sum(self.endpoints.values()), "endpoints": dict(self.endpoints),
                    "rate_limited": self.rate_limited, "wait_seconds": round(sum(self.waits.values()), 3),
                    "cap_wait_seconds": round(self.waits["window"], 3), "configured_limit": limit,
                    "reported_limit": self._header_limit, "share": self.share, "window_cap": self.window_limit}


DEFAULT_POLICY = RetryPolicy()  # frozen: safe to share


class Pacer:
    """Sends through per-class budgets, retrying per `RetryPolicy`.

    Classes named in `shares` are capped at that share of their limit (the limit the
    server's headers report once one answer has carried it)."""

    def __init__(
        self,
        limits: Mapping[str, RateLimit],
        policy: RetryPolicy = DEFAULT_POLICY,
        *,
        clock: Clock = time.time,
        sleep: Sleep = time.sleep,
        rng: random.Random | None = None,
        scrub: Callable[[str], str] = lambda text: text,
        shares: Mapping[str, float] | None = None,
    ):
        self.policy = policy
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._scrub = scrub
        self._lock = threading.Lock()
        self._shares = dict(shares or {})
        self._budgets = {name: self._new_budget(name, limit) for name, limit in limits.items()}

    backend: BudgetBackend | None = None  # shared window counts for every class (set_backend)

    def _new_budget(self, name: str, limit: RateLimit | None) -> RateBudget:
        share = self._shares.get(name)
        if share is None:
            return RateBudget(name, limit, self._clock, backend=self.backend)
        return RateBudget(name, limit, self._clock, share=share, follow_header_limit=True, backend=self.backend)

    def set_backend(self, backend: BudgetBackend | None) -> None:
        """Count every class's windows in `backend` too (None: in this process only)."""
        with self._lock:
            self.backend = backend
            for budget in self._budgets.values():
                budget.backend = backend

    def budget(self, name: str) -> RateBudget:
        with self._lock:
            if name not in self._budgets:
                self._budgets[name] = self._new_budget(name, None)
            return self._budgets[name]

    def set_limit(self, name: str, limit: RateLimit) -> None:
        """Pace `name` at `limit` from now on (a limit learned from the server)."""
        budget = self.budget(name)
        with budget._lock:
            budget.limit = limit

    def send(self, klass: str, send: Callable[[], httpx.Response], label: RequestLabel,
             endpoint: str | None = None, final: frozenset[int] = frozenset()) -> httpx.Response:
        """Send until an answer that is neither 429 nor retryable, or raise after the retries.
        `final`: statuses returned as they are, never retried (nor waited for at the gate)."""
        budget = self.budget(klass)
        name = endpoint or urlsplit(label.url).path

        def timed() -> httpx.Response:
            started = self._clock()
            try:
                answer = send()
            except Exception:
                budget.note_answer(name, self._clock() - started, False)
                raise
            budget.note_answer(name, self._clock() - started, answer.status_code == 429)
            return answer

        attempts = Attempts(self.policy, label, budget, clock=self._clock, wall=self._clock,
                            rng=self._rng, scrub=self._scrub, describe=lambda r: self._scrub(r.text), final=final)
        return send_with_retries(timed, attempts, self._sleep)

    def usage(self) -> dict[str, dict[str, Any]]:
        """`RateBudget.usage()` of every class that sent something."""
        with self._lock:
            budgets = list(self._budgets.values())
        return {b.name: b.usage() for b in budgets if b.sent or b.endpoints}
