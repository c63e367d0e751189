"""The HTTP resilience layer both API clients send through.

One place decides, for Braze and Ketch alike:

* **What is retried** (`is_retryable_status`, `classify_failure`): 408, 429 and every
  5xx answer, timeouts and connection errors (httpx's and aiohttp's). A certificate that
  fails verification, an answer over the size limit, an undecodable body and any other
  transport error are final: `FatalApiError`, with the reason kept
  ("certificate verify failed: self-signed certificate").
* **How long to wait** (`RetryPolicy`): exponential backoff with full jitter under a cap
  for failed tries; `Retry-After` (seconds or an HTTP date, `retry_after_seconds`)
  clamped to `max_retry_after_seconds` when the server sends one. A 429 is a rate-limit
  wait, not a failed try: it is bounded by `max_rate_limited` answers and
  `max_rate_wait_seconds` of waiting per call, then `RateLimited` is raised.
* **Who waits** (`RateGate`): a 429 blocks the gate, so every request sharing it waits
  the pause out. `PauseGate` does only that; Braze plugs in its clock-window budgets
  (`pacing.RateBudget`), which also read `X-RateLimit-*`.
* **How fast, where no limit is documented** (`AdaptiveRate`): additive increase while
  answers stay fast and clean, halving on 429, 5xx, failed tries or latency growth,
  under a ceiling (Ketch's pace).

`Attempts` holds one call's bookkeeping and makes those decisions; `send_with_retries`
(sync) and `asend_with_retries` (async) are the two drivers. Clock, sleep and random
source are injected.

Bounded answers: `read_capped`/`aread_capped` read a body of at most `limit` bytes and
stop at a deadline, `decode_body` decompresses gzip/deflate to at most `limit` bytes, and
`send_bounded`/`asend_bounded` do both for an httpx client. A larger answer raises
`AnswerTooLarge` instead of filling memory.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import ssl
import threading
import time
import zlib
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, AsyncIterator, Awaitable, Callable, Iterator, Mapping, Protocol, TypedDict, TypeVar, cast

import aiohttp
import httpx

from reconcile.errors import FatalApiError, RateLimited, TransientApiError

log = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], None]
AsyncSleep = Callable[[float], Awaitable[Any]]
T = TypeVar("T")

DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
_CHUNK = 64 * 1024


# -- what is retried ----------------------------------------------------------------------
def is_retryable_status(status: int) -> bool:
    """429 (rate limited), 408 (request timeout) and every 5xx are worth another try."""
    return status in (408, 429) or 500 <= status <= 599


class AnswerTooLarge(Exception):
    """The answer's body (as sent, or decompressed) is over the configured limit."""


class UndecodableBody(Exception):
    """The body's Content-Encoding is unknown, or the compressed body is corrupt."""


class DeadlineExceeded(TimeoutError):
    """The whole request (connect, send, read every byte) took longer than its deadline."""


_RETRYABLE: tuple[type[BaseException], ...] = (
    httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError,
    aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, aiohttp.ClientResponseError,
    TimeoutError, ConnectionError, OSError,
)


def _cert_failure(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        inner = getattr(current, "certificate_error", None)  # aiohttp keeps the ssl error here
        if isinstance(inner, ssl.SSLCertVerificationError):
            return inner
        if isinstance(current, ssl.SSLCertVerificationError):
            return current
        current = current.__cause__ or current.__context__
    return None


def classify_failure(exc: BaseException, scrub: Callable[[str], str] = lambda t: t) -> tuple[bool, str]:
    """(retryable, reason) for an exception raised while sending or reading an answer."""
    cert = _cert_failure(exc)
    if cert is not None:
        detail = getattr(cert, "verify_message", None) or getattr(cert, "reason", None) or str(cert)
        return False, f"certificate verify failed: {detail}"
    if isinstance(exc, (AnswerTooLarge, UndecodableBody)):
        return False, f"{type(exc).__name__}: {exc}"
    if isinstance(exc, DeadlineExceeded):
        return True, f"DeadlineExceeded: {exc}"
    if isinstance(exc, (httpx.UnsupportedProtocol, httpx.DecodingError, httpx.TooManyRedirects)):
        return False, f"{type(exc).__name__}: {scrub(str(exc))}"
    if isinstance(exc, (aiohttp.InvalidURL, aiohttp.ContentTypeError)):
        return False, f"{type(exc).__name__}: {scrub(str(exc))}"
    if isinstance(exc, _RETRYABLE):
        text = scrub(str(exc))
        return True, f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return False, f"{type(exc).__name__}: {scrub(str(exc))}"


# -- how long to wait -------------------------------------------------------------------
def header_number(value: str | None) -> float | None:
    """A header's value as a finite number, or None."""
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def header(headers: Mapping[str, str] | Any, name: str) -> str | None:
    """One header's value whatever the letter case of its name."""
    getter = getattr(headers, "getall", None)  # aiohttp/multidict: case-insensitive already
    if getter is not None or isinstance(headers, httpx.Headers):
        return headers.get(name)
    lowered = name.lower()
    for key, value in headers.items():
        if str(key).lower() == lowered:
            return str(value)
    return None


def retry_after_seconds(headers: Mapping[str, str] | Any, now: float | None = None, *,
                        cap: float | None = None) -> float | None:
    """`Retry-After` as seconds from `now` (epoch seconds, default the wall clock), given as
    delta-seconds or an HTTP date; never negative, at most `cap`; None when absent or unreadable."""
    value = header(headers, "retry-after")
    if value is None:
        return None
    seconds = header_number(value)
    if seconds is None:
        try:
            when = parsedate_to_datetime(value.strip())
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    seconds = max(0.0, seconds)
    return min(cap, seconds) if cap is not None else seconds


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try. Rate-limit waits are bounded separately from failed tries."""

    max_retries: int = 5
    backoff_base_seconds: float = 0.5
    backoff_cap_seconds: float = 60.0
    max_retry_after_seconds: float = 3600.0
    max_rate_wait_seconds: float = 7200.0
    max_rate_limited: int = 50

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Full-jitter exponential backoff for the attempt-th failure (0-based)."""
        ceiling = min(self.backoff_cap_seconds, self.backoff_base_seconds * (2 ** min(attempt, 62)))
        return rng.uniform(0.0, max(0.0, ceiling))


class Where(TypedDict):
    """The keyword arguments an `ApiError` takes to say which request failed."""

    service: str
    method: str
    url: str


class Answered(Where):
    """`Where`, with the status and the (scrubbed) text of the answer."""

    status_code: int
    body: str


@dataclass(frozen=True)
class RequestLabel:
    """What a request is called in logs and errors (sanitized URL, no secrets)."""

    service: str
    method: str
    url: str

    def where(self) -> Where:
        return {"service": self.service, "method": self.method, "url": self.url}


# -- who is told ------------------------------------------------------------------------
_observers: list[Any] = []


def add_observer(observer: Any) -> Callable[[], None]:
    """Tell `observer` of every answer, `request(service, url, status)` (status None for a
    transport failure), and every rate-limit wait, `rate_wait(service, url, seconds)`.
    URLs are the requests' sanitized labels. Returns a function that removes the observer."""
    _observers.append(observer)
    return lambda: _observers.remove(observer) if observer in _observers else None


def _tell(method: str, *args: Any) -> None:
    for observer in list(_observers):
        try:
            getattr(observer, method)(*args)
        except Exception:  # noqa: BLE001 - an observer must never change a request's outcome
            log.debug("observer %r failed on %s", observer, method, exc_info=True)


# -- who waits --------------------------------------------------------------------------
class RateGate(Protocol):
    """A shared send allowance: what a service's rate policy plugs into the retry loop."""

    def reserve(self) -> float:
        """Take a send slot and return 0, or return the seconds to wait before asking again."""

    def observe(self, headers: Any) -> None:
        """Fold one answer's headers into the allowance."""

    def block_until(self, until: float) -> None:
        """Send nothing before `until` (clock time), after a 429."""

    def rate_limited_until(self, headers: Any, now: float) -> float | None:
        """When a 429 without Retry-After says the limit resets (clock time), if it says."""


class PauseGate:
    """No budget of its own: only a 429 pauses every request sharing the gate."""

    def __init__(self, clock: Clock):
        self._clock = clock
        self._lock = threading.Lock()
        self._until = -math.inf

    def reserve(self) -> float:
        with self._lock:
            return max(0.0, self._until - self._clock())

    def observe(self, headers: Any) -> None:
        return None

    def block_until(self, until: float) -> None:
        with self._lock:
            self._until = max(self._until, until)

    def rate_limited_until(self, headers: Any, now: float) -> float | None:
        return None


class AdaptiveRate:
    """A request rate found by AIMD for an API that documents no limits (Ketch).

    Starts at `start` requests per second. Every epoch (at least `epoch_seconds` and
    `min_answers` answers) that was clean (no 429, no 5xx, no transport failure), used at
    least `busy_fraction` of the rate and kept its mean latency within `latency_factor`
    times the best epoch's (plus `latency_margin_seconds`) raises the rate by `step`, up
    to `ceiling`. A 429, 5xx or failed try halves it at once, at most once per epoch, and
    an epoch whose latency grew halves it at its end; never below `floor`. `start` <= 0
    means no pacing; `ceiling` <= `start` keeps the rate at `start`. Thread-safe."""

    def __init__(self, start: float, ceiling: float, clock: Clock, *, step: float | None = None,
                 floor: float = 1.0, epoch_seconds: float = 1.0, min_answers: int = 10,
                 busy_fraction: float = 0.8, latency_factor: float = 2.0, latency_margin_seconds: float = 0.05,
                 growth: float = 0.0):
        """`growth` > 0: a cautious start that climbs fast on measured success: until the
        first decrease, a clean busy epoch multiplies the rate by (1 + growth) (at least
        `step` more); after it, the additive `step` applies (probing near a found limit)."""
        self.growth = max(0.0, float(growth))
        self.start = float(start)
        self.ceiling = max(float(ceiling), self.start)
        self.floor = min(float(floor), self.start) if self.start > 0 else 0.0
        self.step = float(step) if step is not None else max(1.0, self.start / 10)
        self._clock = clock
        self._epoch_seconds, self._min_answers = epoch_seconds, min_answers
        self._busy, self._factor, self._margin = busy_fraction, latency_factor, latency_margin_seconds
        self._lock = threading.Lock()
        self.rate = self.start
        self.peak = self.start
        self.increases = self.decreases = 0
        self.answers = self.throttled = self.errors = 0
        self._best_latency: float | None = None
        self._decreased_at = -math.inf
        self._new_epoch(clock())

    @property
    def adaptive(self) -> bool:
        return self.start > 0 and self.ceiling > self.start

    def _new_epoch(self, now: float) -> None:
        self._epoch_start, self._epoch_answers, self._epoch_latency, self._epoch_clean = now, 0, 0.0, True

    def record(self, seconds: float, outcome: str) -> None:
        """One try's answer: `outcome` "ok", "throttled" (429) or "error" (5xx, timeout, connection)."""
        with self._lock:
            now = self._clock()
            self.answers += 1
            self.throttled += outcome == "throttled"
            self.errors += outcome == "error"
            if not self.adaptive:
                return
            if outcome != "ok":
                self._epoch_clean = False
                if now - self._decreased_at >= self._epoch_seconds:
                    self._decrease(now)
                return
            self._epoch_answers += 1
            self._epoch_latency += max(0.0, seconds)
            elapsed = now - self._epoch_start
            if elapsed >= self._epoch_seconds and self._epoch_answers >= self._min_answers:
                self._end_epoch(now, elapsed)

    def _end_epoch(self, now: float, elapsed: float) -> None:
        mean = self._epoch_latency / self._epoch_answers
        best = self._best_latency
        if best is not None and mean > best * self._factor + self._margin:
            self._decrease(now)
            return
        self._best_latency = mean if best is None else min(best, mean)
        if self._epoch_clean and self._epoch_answers >= self._busy * self.rate * elapsed:
            rise = max(self.step, self.rate * self.growth) if self.growth and not self.decreases else self.step
            self.rate = min(self.ceiling, self.rate + rise)
            self.peak = max(self.peak, self.rate)
            self.increases += 1
        self._new_epoch(now)

    def _decrease(self, now: float) -> None:
        self.rate = max(self.floor, self.rate / 2)
        self.decreases += 1
        self._decreased_at = now
        self._new_epoch(now)

    def usage(self) -> dict[str, Any]:
        with self._lock:
            return {"requests": self.answers, "rate_limited": self.throttled, "failed": self.errors,
                    "rate_start": self.start, "rate_now": round(self.rate, 3), "rate_max": round(self.peak, 3),
                    "rate_ceiling": self.ceiling, "increases": self.increases, "decreases": self.decreases}


class Attempts:
    """One call's tries: decides after each answer or exception whether it is final, how
    long to wait before the next try, or which error ends the call."""

    def __init__(self, policy: RetryPolicy, label: RequestLabel, gate: RateGate, *, clock: Clock,
                 rng: random.Random, wall: Clock = time.time, scrub: Callable[[str], str] = lambda t: t,
                 describe: Callable[[Any], str] = lambda answer: "", final: frozenset[int] = frozenset(),
                 throttled: Callable[[Any], bool] | None = None):
        """`final`: statuses that end the call as they are (the caller reads them), e.g. a
        429 that means "busy", not "slow down". `throttled(answer)`: whether an answer
        that is not a 429 is a rate limit all the same (an edge's 403 page)."""
        self.policy, self.label, self.gate = policy, label, gate
        self._clock, self._wall, self._rng = clock, wall, rng
        self._scrub, self._describe = scrub, describe
        self._final, self._throttled = final, throttled
        self.failures = 0
        self.rate_limited = 0
        self.rate_waited = 0.0
        self.reset_at: float | None = None  # wall-clock epoch seconds

    @property
    def tries(self) -> int:
        return self.failures + self.rate_limited + 1

    def gate_wait(self) -> float:
        """0 once a send slot is taken; else the seconds to sleep first (bounded in total)."""
        wait = self.gate.reserve()
        if wait <= 0:
            return 0.0
        if self.rate_waited + wait > self.policy.max_rate_wait_seconds:
            raise RateLimited(
                f"rate limit needs {wait:.1f}s more after {self.rate_waited:.1f}s waited",
                reset_at=self._wall() + wait, status_code=429 if self.rate_limited else None, **self.label.where())
        log.debug("%s rate gate: waiting %.3fs", self.label.service, wait)
        self.rate_waited += wait
        _tell("rate_wait", self.label.service, self.label.url, wait)
        return wait

    def judge(self, result: Any) -> float | None:
        """None: `result` is the final answer. A number: sleep that long, then try again.
        Raises the error that ends the call."""
        if isinstance(result, BaseException):
            _tell("request", self.label.service, self.label.url, None)
            retryable, reason = classify_failure(result, self._scrub)
            if not retryable:
                raise FatalApiError(reason, **self.label.where()) from None
            return self._failed(reason, None)
        self.gate.observe(result.headers)
        status = result.status_code
        _tell("request", self.label.service, self.label.url, status)
        log.debug("%s %s %s -> %d", self.label.service, self.label.method, self.label.url, status)
        if status in self._final:
            return None
        if status == 429 or (self._throttled is not None and self._throttled(result)):
            return self._rate_limited(result)
        if is_retryable_status(status):
            return self._failed(f"server answered {status}", result)
        return None

    def _failed(self, reason: str, answer: Any) -> float:
        self.failures += 1
        if self.failures > self.policy.max_retries:
            raise TransientApiError(
                f"failed after {self.tries - 1} attempt(s): {reason}",
                status_code=answer.status_code if answer is not None else None,
                body=self._describe(answer) if answer is not None else "", **self.label.where())
        wait = None if answer is None else retry_after_seconds(
            answer.headers, self._wall(), cap=self.policy.max_retry_after_seconds)
        if wait is None:
            wait = self.policy.backoff(self.failures - 1, self._rng)
        log.debug("%s %s %s failed (%s); retry %d in %.3fs", self.label.service, self.label.method,
                  self.label.url, reason, self.failures, wait)
        return wait

    def _rate_limited(self, answer: Any) -> float:
        now = self._clock()
        self.rate_limited += 1
        wait = retry_after_seconds(answer.headers, self._wall(), cap=self.policy.max_retry_after_seconds)
        if wait is None:
            until = self.gate.rate_limited_until(answer.headers, now)
            if until is not None and until > now:
                wait = until - now
        if wait is None or wait <= 0:
            wait = self.policy.backoff(self.rate_limited - 1, self._rng)
        self.reset_at = self._wall() + wait
        if self.rate_limited > self.policy.max_rate_limited:
            kind = "429" if answer.status_code == 429 else f"{answer.status_code} (a rate limit at the edge)"
            raise RateLimited(f"still rate limited after {self.rate_limited} answers of {kind} "
                              f"({self.tries - 1} attempt(s))", reset_at=self.reset_at, status_code=answer.status_code,
                              body=self._describe(answer), **self.label.where())
        self.gate.block_until(now + wait)
        return 0.0  # the wait happens at the gate, shared with every other request


def send_with_retries(send: Callable[[], T], attempts: Attempts, sleep: Sleep) -> T:
    """Send until a final answer (sync driver)."""
    wait: float | None
    while True:
        while (wait := attempts.gate_wait()) > 0:
            sleep(wait)
        try:
            result: T | Exception = send()
        except Exception as exc:  # judged below: retried, or mapped to a FatalApiError
            result = exc
        wait = attempts.judge(result)
        if wait is None:  # a final answer: `judge` raises for every failure it does not retry
            return cast(T, result)
        if wait > 0:
            sleep(wait)


async def asend_with_retries(send: Callable[[], Awaitable[T]], attempts: Attempts, sleep: AsyncSleep,
                             before_send: Callable[[], Awaitable[Any]] | None = None) -> T:
    """Send until a final answer (async driver); `before_send` runs before every try
    (e.g. a token bucket's acquire)."""
    wait: float | None
    while True:
        while (wait := attempts.gate_wait()) > 0:
            await sleep(wait)
        if before_send is not None:
            await before_send()
        try:
            result: T | Exception = await send()
        except (asyncio.CancelledError, KeyboardInterrupt):
            raise
        except Exception as exc:
            result = exc
        wait = attempts.judge(result)
        if wait is None:
            return cast(T, result)
        if wait > 0:
            await sleep(wait)


# -- bounded answers ----------------------------------------------------------------------
class Reply:
    """An HTTP answer read whole: status_code, headers, content (decoded), text, json()."""

    __slots__ = ("status_code", "headers", "content")

    def __init__(self, status_code: int, headers: Any, content: bytes):
        self.status_code = status_code
        self.headers = headers
        self.content = content

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        import json
        return json.loads(self.content)


def _too_large(limit: int, what: str = "body") -> AnswerTooLarge:
    return AnswerTooLarge(f"answer {what} is over the {limit}-byte limit (max_body_bytes)")


def check_declared_length(headers: Any, limit: int) -> None:
    """Refuse before reading when Content-Length already says the body is too large."""
    declared = header_number(header(headers, "content-length"))
    if declared is not None and declared > limit:
        raise _too_large(limit)


def read_capped(chunks: Iterator[bytes], limit: int, deadline: float | None = None,
                clock: Clock = time.monotonic) -> bytes:
    """Join `chunks` into at most `limit` bytes, stopping at `deadline` (clock time)."""
    parts, size = [], 0
    for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        if deadline is not None and clock() > deadline:
            raise DeadlineExceeded("the answer was still arriving at the request's deadline")
        parts.append(chunk)
    return b"".join(parts)


async def aread_capped(chunks: AsyncIterator[bytes], limit: int) -> bytes:
    """Join `chunks` into at most `limit` bytes (run it under `with_deadline` for a deadline)."""
    parts, size = [], 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        parts.append(chunk)
    return b"".join(parts)


async def with_deadline(awaitable: Awaitable[T], seconds: float) -> T:
    """Await `awaitable`, raising DeadlineExceeded once `seconds` have passed."""
    try:
        async with asyncio.timeout(seconds):
            return await awaitable
    except TimeoutError:
        raise DeadlineExceeded(f"no whole answer within {seconds:g}s") from None


def decode_body(raw: bytes, encoding: str | None, limit: int) -> bytes:
    """`raw` decoded per Content-Encoding (identity, gzip, deflate; several in order), at most `limit` bytes."""
    codings = [c.strip().lower() for c in (encoding or "").split(",") if c.strip()]
    data = raw
    for coding in reversed(codings):
        if coding == "identity":
            continue
        if coding in ("gzip", "x-gzip"):
            data = _inflate(data, 16 + zlib.MAX_WBITS, limit)
        elif coding == "deflate":
            try:
                data = _inflate(data, zlib.MAX_WBITS, limit)
            except UndecodableBody:
                data = _inflate(data, -zlib.MAX_WBITS, limit)  # raw deflate, as some servers send
        else:
            raise UndecodableBody(f"unsupported Content-Encoding {coding!r}")
    if len(data) > limit:
        raise _too_large(limit)
    return data


def _inflate(data: bytes, wbits: int, limit: int) -> bytes:
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(data, limit + 1)
        if len(out) > limit or inflater.unconsumed_tail:
            raise _too_large(limit, "decompressed body")
        out += inflater.flush()
    except zlib.error as exc:
        raise UndecodableBody(f"corrupt compressed body: {exc}") from None
    if len(out) > limit:
        raise _too_large(limit, "decompressed body")
    if not inflater.eof:
        raise UndecodableBody("compressed body is cut short")
    return out


def _plain_headers(headers: httpx.Headers) -> httpx.Headers:
    out = httpx.Headers(headers)
    for name in ("content-encoding", "content-length"):
        if name in out:
            del out[name]
    return out


def send_bounded(client: httpx.Client, request: httpx.Request, *, limit: int = DEFAULT_MAX_BODY_BYTES,
                 deadline_seconds: float | None = None) -> httpx.Response:
    """Send with a sync httpx client; the answer is read whole, at most `limit` bytes as
    sent and decompressed, within `deadline_seconds` overall. Returns a read Response."""
    deadline = None if deadline_seconds is None else time.monotonic() + deadline_seconds
    response = client.send(request, stream=True)
    try:
        loaded = _loaded(response, limit)
        if loaded is not None:
            return response
        check_declared_length(response.headers, limit)
        raw = read_capped(response.iter_raw(), limit, deadline)  # each read as it arrives
    finally:
        response.close()
    content = decode_body(raw, response.headers.get("content-encoding"), limit)
    return httpx.Response(response.status_code, headers=_plain_headers(response.headers), content=content,
                          request=request)


async def asend_bounded(client: httpx.AsyncClient, request: httpx.Request, *,
                        limit: int = DEFAULT_MAX_BODY_BYTES) -> Reply:
    """Send with an async httpx client; the answer read whole, at most `limit` bytes as
    sent and decompressed (wrap in `with_deadline` for an overall deadline)."""
    response = await client.send(request, stream=True)
    try:
        loaded = _loaded(response, limit)
        if loaded is not None:
            return Reply(response.status_code, response.headers, loaded)
        check_declared_length(response.headers, limit)
        raw = await aread_capped(response.aiter_raw(_CHUNK), limit)
    finally:
        await response.aclose()
    return Reply(response.status_code, response.headers,
                 decode_body(raw, response.headers.get("content-encoding"), limit))


def _loaded(response: httpx.Response, limit: int) -> bytes | None:
    """The body of an answer already in memory and decoded (a mock transport's), else None."""
    try:
        content = response.content
    except httpx.ResponseNotRead:
        return None
    if len(content) > limit:
        raise _too_large(limit)
    return content
