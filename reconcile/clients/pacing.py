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
from typing import Any, Callable, Mapping

import httpx

from reconcile.clients.resilience import (Attempts, RequestLabel, RetryPolicy, header, retry_after_seconds,
                                          send_with_retries)
from reconcile.config import RateLimit

__all__ = ["Clock", "Pacer", "RateBudget", "RateInfo", "RequestLabel", "RetryPolicy", "Sleep",
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


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def parse_rate_headers(headers: Mapping[str, str] | httpx.Headers) -> RateInfo:
    """Read `X-RateLimit-Limit/Remaining/Reset` whatever the letter case of the names."""
    limit = _number(header(headers, "x-ratelimit-limit"))
    remaining = _number(header(headers, "x-ratelimit-remaining"))
    return RateInfo(
        limit=int(limit) if limit is not None else None,
        remaining=int(remaining) if remaining is not None else None,
        reset=_number(header(headers, "x-ratelimit-reset")),
    )


def reset_epoch(reset: float | None, now: float) -> float | None:
    """Reset as an epoch time; small values from an epoch-like clock are seconds from now."""
    if reset is None:
        return None
    if reset < _EPOCH_FLOOR <= now:
        return now + reset
    return reset


class RateBudget:
    """The send allowance of one endpoint class; thread-safe."""

    def __init__(self, name: str, limit: RateLimit | None, clock: Clock):
        self.name = name
        self.limit = limit
        self._clock = clock
        self._lock = threading.Lock()
        self._window_start = -math.inf
        self._window_used = 0
        self._server_remaining: int | None = None
        self._server_reset = -math.inf
        self._blocked_until = -math.inf
        self.sent = 0

    def reserve(self) -> float:
        """Take one send slot and return 0, or return the seconds to wait before asking again."""
        with self._lock:
            now = self._clock()
            wait = self._wait_at(now)
            if wait > 0:
                return wait
            self._take(now)
            return 0.0

    def _wait_at(self, now: float) -> float:
        waits = [self._blocked_until - now]
        if self._server_remaining is not None and self._server_remaining <= 0:
            waits.append(self._server_reset - now)
        if self.limit is not None:
            start = self._window(now)
            if start == self._window_start and self._window_used >= self.limit.requests:
                waits.append(start + self.limit.per_seconds - now)
        return max(0.0, *waits)

    def _window(self, now: float) -> float:
        assert self.limit is not None
        return math.floor(now / self.limit.per_seconds) * self.limit.per_seconds

    def _take(self, now: float) -> None:
        self.sent += 1
        if self.limit is not None:
            start = self._window(now)
            if start != self._window_start:
                self._window_start, self._window_used = start, 0
            self._window_used += 1
        if self._server_remaining is not None and self._server_reset > now:
            self._server_remaining -= 1

    def observe(self, info: RateInfo | Mapping[str, str] | Any) -> None:
        """Fold one response's rate-limit headers (or their RateInfo) into the budget."""
        if not isinstance(info, RateInfo):
            info = parse_rate_headers(info)
        with self._lock:
            now = self._clock()
            reset = reset_epoch(info.reset, now)
            if info.remaining is None or reset is None or reset <= now:
                return
            if reset != self._server_reset or self._server_remaining is None:
                self._server_reset, self._server_remaining = reset, info.remaining
            else:
                self._server_remaining = min(self._server_remaining, info.remaining)

    def block_until(self, until: float) -> None:
        """Send nothing in this class before `until` (after a 429)."""
        with self._lock:
            self._blocked_until = max(self._blocked_until, until)


    def rate_limited_until(self, headers: Any, now: float) -> float | None:
        """`X-RateLimit-Reset` of a 429 as an epoch time, if it has one."""
        return reset_epoch(parse_rate_headers(headers).reset, now)


class Pacer:
    """Sends through per-class budgets, retrying per `RetryPolicy`."""

    def __init__(
        self,
        limits: Mapping[str, RateLimit],
        policy: RetryPolicy = RetryPolicy(),
        *,
        clock: Clock = time.time,
        sleep: Sleep = time.sleep,
        rng: random.Random | None = None,
        scrub: Callable[[str], str] = lambda text: text,
    ):
        self.policy = policy
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._scrub = scrub
        self._lock = threading.Lock()
        self._budgets = {name: RateBudget(name, limit, clock) for name, limit in limits.items()}

    def budget(self, name: str) -> RateBudget:
        with self._lock:
            if name not in self._budgets:
                self._budgets[name] = RateBudget(name, None, self._clock)
            return self._budgets[name]

    def send(self, klass: str, send: Callable[[], httpx.Response], label: RequestLabel) -> httpx.Response:
        """Send until an answer that is neither 429 nor retryable, or raise after the retries."""
        attempts = Attempts(self.policy, label, self.budget(klass), clock=self._clock, wall=self._clock,
                            rng=self._rng, scrub=self._scrub, describe=lambda r: self._scrub(r.text))
        return send_with_retries(send, attempts, self._sleep)
