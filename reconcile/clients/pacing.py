"""Rate budgets and the retry policy every Braze call goes through.

One `Pacer` owns a `RateBudget` per endpoint class (`users_track`, `shared`, ...):

* **Local pacing.** Each budget counts sends in fixed windows aligned to the clock, the
  way Braze counts them ("rate limits reset on the clock hour"), and never exceeds the
  configured `RateLimit(requests, per_seconds)` in a window.
* **Server pacing.** `X-RateLimit-Limit/Remaining/Reset` are read from every response in
  any letter case. While the server says `Remaining: 0`, nothing is sent before `Reset`
  (UTC epoch seconds). In-flight sends are subtracted so concurrent threads do not
  overshoot the remaining allowance.
* **429.** The budget is blocked until `Retry-After` (seconds or HTTP date) if sent, else
  until `X-RateLimit-Reset`, else for a jittered backoff. Waiting out a rate limit is not
  a failed try; it is bounded by `RetryPolicy.max_rate_wait_seconds` in total and
  `max_rate_limited` answers per call, after which `RateLimited` is raised.
* **Failed tries.** 5xx answers, timeouts and connection errors are retried with
  exponential backoff, full jitter and a cap, at most `max_retries` times; then
  `TransientApiError` is raised.

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
from email.utils import parsedate_to_datetime
from typing import Callable, Mapping

import httpx

from reconcile.config import RateLimit
from reconcile.errors import FatalApiError, RateLimited, TransientApiError

log = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], None]

# A Reset value below this is not an epoch timestamp but a number of seconds from now.
_EPOCH_FLOOR = 1_000_000_000.0
RETRYABLE_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


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


def _lower(headers: Mapping[str, str] | httpx.Headers) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in headers.items()}


def parse_rate_headers(headers: Mapping[str, str] | httpx.Headers) -> RateInfo:
    """Read `X-RateLimit-Limit/Remaining/Reset` whatever the letter case of the names."""
    h = _lower(headers)
    limit = _number(h.get("x-ratelimit-limit"))
    remaining = _number(h.get("x-ratelimit-remaining"))
    return RateInfo(
        limit=int(limit) if limit is not None else None,
        remaining=int(remaining) if remaining is not None else None,
        reset=_number(h.get("x-ratelimit-reset")),
    )


def reset_epoch(reset: float | None, now: float) -> float | None:
    """Reset as an epoch time; small values from an epoch-like clock are seconds from now."""
    if reset is None:
        return None
    if reset < _EPOCH_FLOOR <= now:
        return now + reset
    return reset


def retry_after_seconds(headers: Mapping[str, str] | httpx.Headers, now: float) -> float | None:
    """`Retry-After` in seconds (delta-seconds or an HTTP date), or None."""
    value = _lower(headers).get("retry-after")
    if value is None:
        return None
    seconds = _number(value)
    if seconds is not None:
        return max(0.0, seconds)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError, IndexError):
        return None


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try. Rate-limit waits are bounded separately from failed tries."""

    max_retries: int = 5
    backoff_base_seconds: float = 0.5
    backoff_cap_seconds: float = 60.0
    max_rate_wait_seconds: float = 7200.0
    max_rate_limited: int = 50

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Full-jitter exponential backoff for the attempt-th failure (0-based)."""
        ceiling = min(self.backoff_cap_seconds, self.backoff_base_seconds * (2 ** min(attempt, 62)))
        return rng.uniform(0.0, max(0.0, ceiling))


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

    def observe(self, info: RateInfo) -> None:
        """Fold one response's rate-limit headers into the budget."""
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


@dataclass
class _CallState:
    failures: int = 0
    rate_limited: int = 0
    rate_waited: float = 0.0
    reset_at: float | None = None


@dataclass(frozen=True)
class RequestLabel:
    """What a request is called in logs and errors (sanitized URL, no secrets)."""

    service: str
    method: str
    url: str


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
        """Send until an answer that is neither 429 nor 5xx, or raise after the retries."""
        budget = self.budget(klass)
        state = _CallState()
        while True:
            self._await_budget(budget, state, label)
            try:
                response = send()
            except RETRYABLE_ERRORS as exc:
                self._failed(state, label, f"{type(exc).__name__}: {self._scrub(str(exc))}")
                continue
            except httpx.HTTPError as exc:
                raise FatalApiError(f"{type(exc).__name__}: {self._scrub(str(exc))}", **_where(label)) from None
            if self._settle(budget, response, state, label):
                return response

    def _settle(self, budget: RateBudget, response: httpx.Response, state: _CallState,
                label: RequestLabel) -> bool:
        """Fold the answer into the budget; True when it is final."""
        info = parse_rate_headers(response.headers)
        budget.observe(info)
        status = response.status_code
        log.debug("%s %s %s -> %d (remaining %s)", label.service, label.method, label.url, status, info.remaining)
        if status == 429:
            self._rate_limited(budget, response, info, state, label)
            return False
        if status >= 500:
            self._failed(state, label, f"server error {status}", response)
            return False
        return True

    def _rate_limited(self, budget: RateBudget, response: httpx.Response, info: RateInfo,
                      state: _CallState, label: RequestLabel) -> None:
        now = self._clock()
        state.rate_limited += 1
        reset = reset_epoch(info.reset, now)
        state.reset_at = reset
        if state.rate_limited > self.policy.max_rate_limited:
            raise RateLimited(f"still rate limited after {state.rate_limited} answers of 429",
                              reset_at=reset, status_code=429, **_where(label))
        wait = retry_after_seconds(response.headers, now)
        if wait is None and reset is not None and reset > now:
            wait = reset - now
        if wait is None or wait <= 0:
            wait = self.policy.backoff(state.rate_limited - 1, self._rng)
        budget.block_until(now + wait)

    def _await_budget(self, budget: RateBudget, state: _CallState, label: RequestLabel) -> None:
        while (wait := budget.reserve()) > 0:
            if state.rate_waited + wait > self.policy.max_rate_wait_seconds:
                raise RateLimited(
                    f"rate budget {budget.name!r} needs {wait:.1f}s more after {state.rate_waited:.1f}s waited",
                    reset_at=self._clock() + wait, status_code=429 if state.rate_limited else None, **_where(label))
            log.debug("%s rate budget %s: waiting %.3fs", label.service, budget.name, wait)
            state.rate_waited += wait
            self._sleep(wait)

    def _failed(self, state: _CallState, label: RequestLabel, reason: str,
                response: httpx.Response | None = None) -> None:
        state.failures += 1
        if state.failures > self.policy.max_retries:
            raise TransientApiError(
                f"gave up after {state.failures} tries: {reason}",
                status_code=response.status_code if response is not None else None,
                body=self._scrub(response.text) if response is not None else "", **_where(label))
        wait = self.policy.backoff(state.failures - 1, self._rng)
        log.debug("%s %s %s failed (%s); retry %d in %.3fs", label.service, label.method, label.url,
                  reason, state.failures, wait)
        self._sleep(wait)


def _where(label: RequestLabel) -> dict[str, str]:
    return {"service": label.service, "method": label.method, "url": label.url}
