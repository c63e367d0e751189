"""Client for the public Ketch Web API (docs/ketch-api.md §1, §3.1).

The API has no authentication and answers one identity per call, so a reconciliation
run reads each subject with `consent/get` and `subscriptions/get`. `KetchClient` is
async at its core with a sync facade (`fetch_many`, `run`, `close`).

Connections: on the real network (no injected transport), the native path: per event
loop one `ketch_transport.NativeSession`, HTTP/1.1 keep-alive connections on asyncio
protocols with the httptools parser, about a tenth of httpx's CPU per request (see that
module for what it supports). With an injected httpx transport (tests, the in-process sandbox), when a proxy
variable applies to the API's URL, or with `http_backend="httpx"`: `concurrency`
keep-alive lanes per event loop, each a long-lived `httpx.AsyncClient` holding one
connection (sharing one SSL context), handed out last in, first out. httpcore's pool
re-checks every idle connection with a socket poll on each request, which costs more
than the request itself once the pool is large; single-connection lanes keep that check
to one socket. An injected transport is shared by one client for all lanes.

Every request is paced by a token bucket (`requests_per_second`, bursts of at most a
tenth of a second's worth), limited to `concurrency` in flight, and retried on 429,
5xx, timeouts and connection errors with capped exponential backoff and jitter. A
`Retry-After` is honoured and pauses every request of the client until it has passed.
Other 4xx answers raise FatalApiError subclasses at once.
"""

from __future__ import annotations

import asyncio
import json
import random
import ssl
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Awaitable, Callable, Iterator, TypeVar
from urllib.parse import quote

import httpx

from reconcile.clients import ketch_transport
from reconcile.clients.ketch_parse import (ConsentState, KetchRecord, SubscriptionState, load_body,
                                           parse_consent, parse_subscriptions)
from reconcile.config import KetchConfig
from reconcile.errors import (ApiError, AuthError, DataError, FatalApiError, NotFound, PermissionDenied,
                              RateLimited, TransientApiError)
from reconcile.redact import sanitize_url

__all__ = ["ConsentState", "KetchClient", "KetchRecord", "SubscriptionState", "normalize_base_url"]

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[Any]]
Progress = Callable[[int, int], Any]
OnError = Callable[[str, Exception], Any]

_HEADERS = {"Accept": "application/json", "Content-Type": "application/json"}
_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_RETRYABLE_EXC = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)
_BACKOFF_BASE = 0.25
_BACKOFF_CAP = 10.0
_RETRY_AFTER_CAP = 300.0
_FATAL_BY_STATUS: dict[int, type[FatalApiError]] = {401: AuthError, 403: PermissionDenied, 404: NotFound}
_BACKENDS = ("auto", "native", "httpx")

# An HTTP answer: httpx.Response, or ketch_transport.Reply on the native path (same attributes used).
Answer = Any


def normalize_base_url(url: str) -> str:
    """The API base ends in /web/v2 or /web/v3; like the Ketch tag, append /web/v2 otherwise."""
    base = url.rstrip("/")
    if base.endswith(("/web/v2", "/web/v3")):
        return base
    return base + "/web/v2"


def _epoch(when: datetime) -> int:
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return int(when.timestamp())


def _cache_missing_sniffio() -> None:
    """httpcore imports sniffio on every lock it creates; when sniffio is not installed each
    failed import searches sys.path again. Record the absence once so it fails fast."""
    try:
        import sniffio  # noqa: F401
    except ImportError:
        sys.modules.setdefault("sniffio", None)  # type: ignore[arg-type]


_cache_missing_sniffio()


class _LoopState:
    """What belongs to one event loop: the lanes (httpx) or the native session, and the
    queue of free lane numbers that bounds the requests in flight."""

    def __init__(self, size: int, session: ketch_transport.NativeSession | None = None):
        self.free: asyncio.LifoQueue[int] = asyncio.LifoQueue()
        for index in reversed(range(size)):
            self.free.put_nowait(index)
        self.lanes: list[httpx.AsyncClient | None] = [None] * size
        self.session = session

    async def aclose(self) -> None:
        for http in {id(h): h for h in self.lanes if h is not None}.values():
            await http.aclose()
        if self.session is not None:
            session, self.session = self.session, None
            await session.aclose()


class KetchClient:
    """Reads and writes Ketch consent, subscriptions and rights requests."""

    service = "ketch"

    def __init__(self, cfg: KetchConfig, *, transport: httpx.AsyncBaseTransport | None = None,
                 sleep: Sleep = asyncio.sleep, clock: Callable[[], float] = time.monotonic,
                 http_backend: str = "auto"):
        """`http_backend`: "auto" (native on the real network when usable, else httpx),
        "httpx", or "native" (refused with an injected transport or a proxied URL)."""
        if http_backend not in _BACKENDS:
            raise ValueError(f"http_backend must be one of {', '.join(_BACKENDS)}, got {http_backend!r}")
        self.cfg = cfg
        self._transport = transport
        self._sleep = sleep
        self._clock = clock
        self._base = normalize_base_url(cfg.base_url)
        self._org_path = quote(cfg.organization, safe="")
        self._concurrency = max(1, int(cfg.concurrency))
        self._rps = float(cfg.requests_per_second or 0.0)
        self._burst = max(1.0, self._rps / 10.0)
        self._tokens = self._burst
        self._last_refill = clock()
        self._pause_until = 0.0
        self._rng = random.Random()
        self._loops: dict[asyncio.AbstractEventLoop, _LoopState] = {}
        self._ssl: ssl.SSLContext | None = None
        self._urls: dict[str, tuple[httpx.URL, str]] = {}  # path -> (URL, its text)
        self._runner: asyncio.Runner | None = None
        self._runner_lock = threading.Lock()
        self._native = self._pick_native(http_backend)
        self._retryable = ketch_transport.RETRYABLE_EXC if self._native else _RETRYABLE_EXC
        self._fatal_exc = ketch_transport.FATAL_EXC if self._native else (httpx.HTTPError,)

    def _pick_native(self, backend: str) -> bool:
        if backend == "httpx":
            return False
        usable = self._transport is None and ketch_transport.native_usable(self._base)
        if backend == "native" and not usable:
            raise ValueError("http_backend='native' needs no injected transport and no proxy for the API's URL")
        return usable

    @property
    def http_backend(self) -> str:
        """What this client sends with: "native" or "httpx"."""
        return "native" if self._native else "httpx"

    # -- public async API --------------------------------------------------------------
    async def get_consent(self, identities: dict[str, str],
                          purposes: dict[str, str] | None = None) -> ConsentState | None:
        """Consent for one identity set; purposes: code -> legalBasisCode. None = no record."""
        body = self._body(identities)
        if purposes:
            body["purposes"] = {code: {"legalBasisCode": basis} for code, basis in purposes.items()}
        resp = await self._post("consent/get", f"/consent/{self._org_path}/get", body)
        return parse_consent(_load(resp, "consent/get"), "consent/get")

    async def get_subscriptions(self, identities: dict[str, str]) -> SubscriptionState | None:
        """Subscription topics and controls for one identity set. None = no record."""
        resp = await self._post("subscriptions/get", f"/subscriptions/{self._org_path}/get", self._body(identities))
        return parse_subscriptions(_load(resp, "subscriptions/get"), "subscriptions/get")

    async def update_consent(self, identities: dict[str, str], purposes: dict[str, tuple[bool, str]],
                             collected_at: datetime) -> None:
        """Write consent; purposes: code -> (allowed, legalBasisCode)."""
        body = self._body(identities)
        body["purposes"] = {code: {"allowed": "true" if allowed else "false", "legalBasisCode": basis}
                            for code, (allowed, basis) in purposes.items()}
        body["collectedAt"] = _epoch(collected_at)
        body["context"] = {"source": "headless"}
        await self._post("consent/update", f"/consent/{self._org_path}/update", body)

    async def update_subscriptions(self, identities: dict[str, str], topics: dict[tuple[str, str | None], str],
                                   controls: dict[str, str], collected_at: datetime) -> None:
        """Write topics ((topic, channel or None) -> status) and controls (code -> status)."""
        body = self._body(identities)
        body["topics"] = _topics_body(topics)
        body["controls"] = {code: {"status": status} for code, status in controls.items()}
        body["collectedAt"] = _epoch(collected_at)
        body["context"] = {"source": "headless"}
        await self._post("subscriptions/update", f"/subscriptions/{self._org_path}/update", body)

    async def invoke_right(self, identities: dict[str, str], right_code: str, user: dict[str, Any],
                           invoked_at: datetime) -> None:
        """Submit a data subject request (the answer body is undocumented and ignored)."""
        body = self._body(identities)
        body.update(rightCode=right_code, user=user, invokedAt=_epoch(invoked_at))
        await self._post("rights/invoke", f"/rights/{self._org_path}/invoke", body)

    async def fetch_record(self, space: str, value: str, purposes: dict[str, str] | None = None) -> KetchRecord:
        """Consent and subscriptions of one identity."""
        ids = {space: value}
        consent = await self.get_consent(ids, purposes)
        subscriptions = await self.get_subscriptions(ids)
        return KetchRecord(value, consent, subscriptions)

    async def afetch_many(self, space: str, values: list[str], purposes: dict[str, str] | None = None, *,
                          progress: Progress | None = None, on_error: OnError | None = None) -> dict[str, KetchRecord]:
        """Records for many identities of one space, `concurrency` lookups at a time.

        The first failure cancels the rest and is raised, unless `on_error(value, exc)` is
        given: then ApiError/DataError of one identity are reported to it and that identity
        is left out of the result."""
        unique = list(dict.fromkeys(values))
        results: dict[str, KetchRecord] = {}
        pending = iter(unique)
        counter = _Counter(len(unique), progress)
        workers = [asyncio.create_task(self._worker(space, pending, purposes, results, counter, on_error))
                   for _ in range(min(self._concurrency, len(unique)))]
        await _join_all(workers)
        return {v: results[v] for v in unique if v in results}

    async def _worker(self, space: str, pending: Iterator[str], purposes: dict[str, str] | None,
                      results: dict[str, KetchRecord], counter: "_Counter", on_error: OnError | None) -> None:
        for value in pending:
            try:
                results[value] = await self.fetch_record(space, value, purposes)
            except (ApiError, DataError) as exc:
                if on_error is None:
                    raise
                on_error(value, exc)
            counter.tick()

    async def aclose(self) -> None:
        """Close the HTTP client of the running event loop."""
        state = self._loops.pop(asyncio.get_running_loop(), None)
        if state is not None:
            await state.aclose()

    async def __aenter__(self) -> "KetchClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    # -- sync facade -------------------------------------------------------------------
    def fetch_many(self, space: str, values: list[str], purposes: dict[str, str] | None = None, *,
                   progress: Progress | None = None, on_error: OnError | None = None) -> dict[str, KetchRecord]:
        """Sync `afetch_many`: consent and subscriptions for each value, keyed by value."""
        return self.run(self.afetch_many(space, values, purposes, progress=progress, on_error=on_error))

    def run(self, awaitable: Awaitable[T]) -> T:
        """Run one of this client's coroutines to completion from sync code."""
        return _off_loop(lambda: self._run_on_runner(awaitable))

    def _run_on_runner(self, awaitable: Awaitable[T]) -> T:
        with self._runner_lock:
            if self._runner is None:
                self._runner = asyncio.Runner()
            return self._runner.run(_as_coro(awaitable))

    def close(self) -> None:
        """Close the sync facade's HTTP clients and event loop."""
        if self._runner is not None:
            _off_loop(self._close_runner)

    def _close_runner(self) -> None:
        with self._runner_lock:
            if self._runner is None:
                return
            self._runner.run(self.aclose())
            self._runner.close()
            self._runner = None

    def __enter__(self) -> "KetchClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- requests ----------------------------------------------------------------------
    def _body(self, identities: dict[str, str]) -> dict[str, Any]:
        if not identities:
            raise ValueError("identities must name at least one identity space and value")
        body: dict[str, Any] = {"organizationCode": self.cfg.organization}
        for key, value in (("propertyCode", self.cfg.property), ("environmentCode", self.cfg.environment),
                           ("jurisdictionCode", self.cfg.jurisdiction)):
            if value:
                body[key] = value
        body["identities"] = dict(identities)
        return body

    def _state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        state = self._loops.get(loop)
        if state is None:
            self._loops = {lp: st for lp, st in self._loops.items() if not lp.is_closed()}
            state = self._loops[loop] = _LoopState(self._concurrency, self._new_session())
        return state

    def _new_session(self) -> ketch_transport.NativeSession | None:
        if not self._native:
            return None
        return ketch_transport.NativeSession(
            limit=self._concurrency, timeout_seconds=self.cfg.timeout_seconds, headers=_HEADERS,
            ssl_context=self._ssl_context() if self._base.startswith("https:") else None)

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = httpx.create_ssl_context()
        return self._ssl

    def _lane(self, state: _LoopState, index: int) -> httpx.AsyncClient:
        http = state.lanes[index]
        if http is None:
            shared = self._transport is not None and index != 0
            http = state.lanes[index] = self._lane(state, 0) if shared else self._new_http()
        return http

    def _new_http(self) -> httpx.AsyncClient:
        timeout = httpx.Timeout(self.cfg.timeout_seconds)
        if self._transport is not None:
            return httpx.AsyncClient(transport=self._transport, timeout=timeout, headers=_HEADERS)
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        return httpx.AsyncClient(limits=limits, timeout=timeout, headers=_HEADERS, verify=self._ssl_context())

    async def _post(self, op: str, path: str, body: dict[str, Any]) -> Answer:
        """POST with pacing, the in-flight limit and retries; returns a 2xx response."""
        target = self._urls.get(path)
        if target is None:
            full = httpx.URL(self._base + path)
            target = self._urls[path] = (full, str(full))
        url, text = target
        content = json.dumps(body, separators=(",", ":")).encode()
        attempt, waited = 0, False
        while True:
            await self._before_send(skip_pause=waited)
            result = await self._attempt(url, text, content)
            if not isinstance(result, Exception) and result.status_code < 300:
                return result
            if not isinstance(result, Exception) and result.status_code not in _RETRY_STATUSES:
                raise self._fatal(op, url, result)
            if attempt >= self.cfg.max_retries:
                raise self._exhausted(op, url, result, attempt + 1)
            await self._sleep(self._retry_delay(attempt, result))
            attempt, waited = attempt + 1, True

    async def _attempt(self, url: httpx.URL, text: str, content: bytes) -> Answer | Exception:
        state = self._state()
        index = await state.free.get()
        try:
            if state.session is not None:
                return await state.session.post(text, content)
            return await self._lane(state, index).post(url, content=content)
        except self._retryable as exc:
            return exc
        except self._fatal_exc as exc:
            raise FatalApiError(f"request failed: {type(exc).__name__}", service=self.service,
                                method="POST", url=sanitize_url(str(url))) from None
        finally:
            state.free.put_nowait(index)

    async def _before_send(self, skip_pause: bool) -> None:
        """Wait out a server-requested pause, then take a token from the rate bucket."""
        if not skip_pause:
            pause = self._pause_until - self._clock()
            if pause > 0:
                await self._sleep(pause)
        if self._rps <= 0:
            return
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._last_refill) * self._rps) - 1.0
        self._last_refill = now
        if self._tokens < 0:
            await self._sleep(-self._tokens / self._rps)

    def _retry_delay(self, attempt: int, result: Answer | Exception) -> float:
        after = None if isinstance(result, Exception) else retry_after_seconds(result)
        if after is not None:
            self._pause_until = max(self._pause_until, self._clock() + after)
            return after
        ceiling = min(_BACKOFF_CAP, _BACKOFF_BASE * (2 ** attempt))
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    # -- errors ------------------------------------------------------------------------
    def _fatal(self, op: str, url: httpx.URL, resp: Answer) -> FatalApiError:
        cls = _FATAL_BY_STATUS.get(resp.status_code, FatalApiError)
        return cls(f"{op} refused", service=self.service, status_code=resp.status_code, method="POST",
                   url=sanitize_url(str(url)), body=error_text(resp))

    def _exhausted(self, op: str, url: httpx.URL, result: Answer | Exception, attempts: int) -> TransientApiError:
        where = {"service": self.service, "method": "POST", "url": sanitize_url(str(url))}
        if isinstance(result, Exception):
            return TransientApiError(f"{op} failed after {attempts} attempt(s): {type(result).__name__}", **where)
        message = f"{op} failed after {attempts} attempt(s)"
        if result.status_code == 429:
            after = retry_after_seconds(result)
            reset_at = time.time() + after if after is not None else None
            return RateLimited(message, reset_at=reset_at, status_code=429, body=error_text(result), **where)
        return TransientApiError(message, status_code=result.status_code, body=error_text(result), **where)


class _Counter:
    """Counts finished lookups and reports progress(done, total)."""

    def __init__(self, total: int, progress: Progress | None):
        self.done, self.total, self.progress = 0, total, progress

    def tick(self) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.total)


async def _join_all(tasks: list[asyncio.Task[Any]]) -> None:
    """Wait for every task; on the first failure cancel the others and raise it."""
    if not tasks:
        return
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
    # Read every finished task's exception (several can fail in one loop turn), so none is
    # logged as "never retrieved"; raise the first.
    errors = [exc for exc in (task.exception() for task in done) if exc is not None]
    if errors:
        raise errors[0]


def _off_loop(func: Callable[[], T]) -> T:
    """Call `func` here, or on a helper thread when this thread is running an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return func()
    with ThreadPoolExecutor(1, thread_name_prefix="ketch-client") as pool:
        return pool.submit(func).result()


async def _as_coro(awaitable: Awaitable[T]) -> T:
    return await awaitable


def _load(resp: Answer, what: str) -> dict[str, Any] | None:
    if resp.status_code == 204:
        return None
    return load_body(resp.content, what)


def _topics_body(topics: dict[tuple[str, str | None], str]) -> dict[str, Any]:
    out: dict[str, dict[str, Any]] = {}
    for (topic, channel), status in topics.items():
        entry = out.setdefault(topic, {})
        if channel is None:
            entry["status"] = status
        else:
            entry[channel] = {"status": status}
    for topic, entry in out.items():
        if "status" in entry and len(entry) > 1:
            raise ValueError(f"topic {topic!r} mixes a channel-less status with per-channel statuses")
    return out


def retry_after_seconds(resp: Answer) -> float | None:
    """Retry-After as seconds (delta-seconds or HTTP-date), capped; None when absent or unreadable."""
    raw = resp.headers.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        seconds = float(raw)
    except ValueError:
        try:
            seconds = (parsedate_to_datetime(raw) - datetime.now(timezone.utc)).total_seconds()
        except (TypeError, ValueError):
            return None
    if seconds != seconds:  # NaN
        return None
    return min(_RETRY_AFTER_CAP, max(0.0, seconds))


def error_text(resp: Answer) -> str:
    """`code: message` from a Ketch error body, else the start of the body text."""
    try:
        err = resp.json().get("error")
        if isinstance(err, dict):
            return f"{err.get('code', '')}: {err.get('message', '')}".strip(": ")
    except (ValueError, AttributeError):
        pass
    return resp.text[:200]
