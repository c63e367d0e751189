"""Client for the public Ketch Web API (docs/ketch-api.md §1, §3.1).

The API has no authentication and answers one identity per call, so a reconciliation
run reads each subject with `consent/get` and `subscriptions/get`, both in flight at
once. `KetchClient` is async at its core with a sync facade (`fetch_many`, `run`, `close`).

Connections (`http_senders`): on the real network one aiohttp session per event loop,
keep-alive connections limited to `concurrency`, proxies from the environment, TLS
verified (certifi, or `SSL_CERT_FILE`), no redirects followed. With an injected httpx
transport (tests, the in-process sandbox) or `http_backend="httpx"`: httpx.

Every request goes through `resilience`: at most `concurrency` in flight, paced by a
token bucket (bursts of a tenth of a second's worth, aiolimiter) whose rate adapts
(`resilience.AdaptiveRate`): Ketch publishes no limit and sits behind a public CDN, so
it starts cautiously at `requests_per_second` (20), grows by a quarter for every clean,
busy second until the first sign of pressure, then probes additively; it halves on 429,
5xx, failed tries, latency growth or an edge block, and never exceeds
`max_requests_per_second` (`usage()` reports the rate reached). Tries are retried on
429, 408, 5xx, timeouts and connection errors with full-jitter backoff under a cap; a
`Retry-After` (clamped to `max_retry_after_seconds`) pauses every request of the client.
A 403 or 429 without Ketch's JSON error body (`{"error": {...}}`) comes from the CDN or a
web firewall in front of the API (Ketch has no authentication, so no permission can be
missing): it is a rate limit, waited out like a 429. Each try has an overall deadline of
`timeout_seconds` (connect, send, and the last byte of the answer), and an answer over
`max_body_bytes` (as sent or decompressed) is refused. Other 4xx answers, redirects and
certificate failures raise FatalApiError subclasses at once (the run decides which stop
it: see `engine/extract.py`). A 2xx answer whose body carries an error raises
`ErrorAnswer`: a failed lookup, never "no record".
"""

from __future__ import annotations

import asyncio
import json
import random
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, Iterator, Sequence, TypeVar
from urllib.parse import quote

import httpx
from aiolimiter import AsyncLimiter

from reconcile.clients.tls import verified_context
from reconcile.clients.http_senders import AiohttpSender, HttpxSender
from reconcile.clients.ketch_parse import (ConsentState, KetchRecord, SubscriptionState, error_in_body, load_body,
                                           mask_identities, parse_consent, parse_subscriptions)
from reconcile.clients.resilience import (AdaptiveRate, Attempts, PauseGate, Reply, RequestLabel, RetryPolicy,
                                          asend_with_retries, with_deadline)
from reconcile.config import KetchConfig
from reconcile.errors import ApiError, AuthError, DataError, FatalApiError, NotFound, PermissionDenied
from reconcile.redact import sanitize_url

__all__ = ["ConsentState", "ErrorAnswer", "KetchClient", "KetchRecord", "SubscriptionState", "normalize_base_url"]

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[Any]]
Progress = Callable[[int, int], Any]
OnError = Callable[[str, Exception], Any]

_HEADERS = {"Accept": "application/json", "Content-Type": "application/json"}
_BACKOFF_BASE = 0.25
_BACKOFF_CAP = 10.0
_FATAL_BY_STATUS: dict[int, type[FatalApiError]] = {401: AuthError, 403: PermissionDenied, 404: NotFound}
_BACKENDS = ("auto", "aiohttp", "httpx", "native")  # "native": deprecated name of "aiohttp"
RATE_GROWTH = 0.25  # per clean busy second, until the first sign of pressure
DEFAULT_CHANNEL = "email"


class ErrorAnswer(ApiError):
    """Ketch answered 2xx with an error in the body: the lookup (or write) failed."""


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


class _LoopState:
    """What belongs to one event loop: the sender, the in-flight limit, the token bucket
    (rebuilt at the adaptive rate's current value whenever it moved)."""

    def __init__(self, sender: AiohttpSender | HttpxSender, concurrency: int, rate: AdaptiveRate):
        self.sender = sender
        self.slots = asyncio.Semaphore(concurrency)
        self._rate = rate
        self._rps = 0.0
        self.limiter: AsyncLimiter | None = None

    async def pace(self) -> None:
        rps = self._rate.rate
        if rps <= 0:
            return
        if self.limiter is None or rps != self._rps:
            burst = max(1.0, rps / 10.0)
            moved = self.limiter is not None
            self.limiter, self._rps = AsyncLimiter(burst, burst / rps), rps
            if moved:  # a new rate continues the old one's pace: no fresh burst
                await self.limiter.acquire(burst)
        await self.limiter.acquire()

    async def aclose(self) -> None:
        await self.sender.aclose()


class KetchClient:
    """Reads and writes Ketch consent, subscriptions and rights requests."""

    service = "ketch"

    def __init__(self, cfg: KetchConfig, *, transport: httpx.AsyncBaseTransport | None = None,
                 sleep: Sleep = asyncio.sleep, clock: Callable[[], float] = time.monotonic,
                 http_backend: str = "auto", rng: random.Random | None = None, pace: AdaptiveRate | None = None):
        """`http_backend`: "auto" (aiohttp unless a transport is injected, then httpx),
        "aiohttp" (refused with an injected transport; "native" is its old name) or "httpx".
        `pace`: the adaptive rate to use instead of one built from the config."""
        if http_backend not in _BACKENDS:
            raise ValueError(f"http_backend must be one of auto, aiohttp, httpx, got {http_backend!r}")
        if http_backend in ("aiohttp", "native") and transport is not None:
            raise ValueError("http_backend='aiohttp' sends on the network; an injected transport needs "
                             "http_backend='httpx' or 'auto'")
        self.cfg = cfg
        self._transport = transport
        self._backend = "httpx" if transport is not None or http_backend == "httpx" else "aiohttp"
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()
        self._base = normalize_base_url(cfg.base_url)
        self._org_path = quote(cfg.organization, safe="")
        self._concurrency = max(1, int(cfg.concurrency))
        self._rate = pace or AdaptiveRate(float(cfg.requests_per_second or 0.0),
                                          float(cfg.max_requests_per_second or 0.0), clock, growth=RATE_GROWTH)
        self._max_body = int(cfg.max_body_bytes)
        cap = float(cfg.max_retry_after_seconds)
        self._policy = RetryPolicy(max_retries=cfg.max_retries, backoff_base_seconds=_BACKOFF_BASE,
                                   backoff_cap_seconds=_BACKOFF_CAP, max_retry_after_seconds=cap,
                                   max_rate_limited=cfg.max_retries,
                                   max_rate_wait_seconds=cap * (cfg.max_retries + 1))
        self._gate = PauseGate(clock)
        self._loops: dict[asyncio.AbstractEventLoop, _LoopState] = {}
        self._ssl: ssl.SSLContext | None = None
        self._targets: dict[str, tuple[str, RequestLabel]] = {}
        self._runner: asyncio.Runner | None = None
        self._runner_lock = threading.Lock()
        self._running: tuple[asyncio.AbstractEventLoop, asyncio.Task[Any]] | None = None

    def usage(self) -> dict[str, Any]:
        """Tries sent, 429 and failed answers, and the pace: the starting rate, where the
        adaptive rate is now, the highest it reached and its ceiling (requests per second)."""
        return self._rate.usage()

    @property
    def http_backend(self) -> str:
        """What this client sends with: "aiohttp" or "httpx"."""
        return self._backend

    # -- public async API --------------------------------------------------------------
    async def get_consent(self, identities: dict[str, str],
                          purposes: dict[str, str] | None = None) -> ConsentState | None:
        """Consent for one identity set; purposes: code -> legalBasisCode. None = no record.
        The request always carries `purposes` (`{}` when none is asked about)."""
        body = self._body(identities)
        body["purposes"] = {code: {"legalBasisCode": basis} for code, basis in (purposes or {}).items()}
        answer = await self._get("consent/get", f"/consent/{self._org_path}/get", body)
        return parse_consent(answer, "consent/get")

    async def get_subscriptions(self, identities: dict[str, str]) -> SubscriptionState | None:
        """Subscription topics and controls for one identity set. None = no record."""
        answer = await self._get("subscriptions/get", f"/subscriptions/{self._org_path}/get", self._body(identities))
        return parse_subscriptions(answer, "subscriptions/get")

    async def update_consent(self, identities: dict[str, str], purposes: dict[str, tuple[bool, str]],
                             collected_at: datetime) -> None:
        """Write consent; purposes: code -> (allowed, legalBasisCode)."""
        await self._write_consent(identities, {
            code: {"allowed": "true" if allowed else "false", "legalBasisCode": basis}
            for code, (allowed, basis) in purposes.items()}, collected_at)

    async def update_subscriptions(self, identities: dict[str, str], topics: dict[tuple[str, str | None], str],
                                   controls: dict[str, str], collected_at: datetime) -> None:
        """Write topics ((topic, channel or None) -> status) and controls (code -> status).
        Always in the channel shape `{topic: {channel: {"status"}}}`; no channel means email."""
        await self._write_subscriptions(identities, _topics_body(topics),
                                        {code: {"status": status} for code, status in controls.items()},
                                        collected_at)

    async def write_back_optout(self, identities: dict[str, str], topics: dict[tuple[str, str | None], str],
                                purposes: dict[str, str], at: datetime,
                                known_bases: dict[str, str] | None = None) -> list[str]:
        """Write an opt-out that started in Braze back to Ketch, right whether Ketch merges
        or replaces what an update names.

        topics: (topic, channel or None) -> "denied"; purposes: code -> legalBasisCode, to
        become allowed "false". Reads the subject's subscriptions (and consent when
        purposes are given), then sends every topic and control read, with only the given
        ones denied. A topic without a channel is denied on every channel the read returned
        for it, else on email. Ketch requires a `legalBasisCode` with every purpose an update
        names: the other purposes read are sent again (kept under the replace reading) only
        with the basis Ketch answered or `known_bases` gives; returns the codes of those
        left out for want of one."""
        for key, status in topics.items():
            if status != "denied":
                raise ValueError(f"write_back_optout writes opt-outs only; topic {key!r} asks for {status!r}")
        if not topics and not purposes:
            return []
        reads: list[Awaitable[Any]] = []
        if topics:
            reads.append(self.get_subscriptions(identities))
        if purposes:
            reads.append(self.get_consent(identities, purposes))
        current = await _all(reads)
        subs = current.pop(0) if topics else None
        consent = current.pop(0) if purposes else None
        writes: list[Awaitable[Any]] = []
        left_out: list[str] = []
        if topics:
            body_topics, body_controls = _optout_topics(subs, topics)
            writes.append(self._write_subscriptions(identities, body_topics, body_controls, at))
        if purposes:
            body_purposes, left_out = _optout_purposes(consent, purposes, known_bases or {})
            writes.append(self._write_consent(identities, body_purposes, at))
        await _all(writes)
        return left_out

    async def invoke_right(self, identities: dict[str, str], right_code: str, user: dict[str, Any],
                           invoked_at: datetime) -> None:
        """Submit a data subject request (the answer body is undocumented; only an error in it counts)."""
        body = self._body(identities)
        body.update(rightCode=right_code, user=user, invokedAt=_epoch(invoked_at))
        await self._write("rights/invoke", f"/rights/{self._org_path}/invoke", body)

    async def fetch_record(self, space: str, value: str, purposes: dict[str, str] | None = None) -> KetchRecord:
        """Consent and subscriptions of one identity, both requests in flight together."""
        ids = {space: value}
        consent, subscriptions = await _all([self.get_consent(ids, purposes), self.get_subscriptions(ids)])
        return KetchRecord(value, consent, subscriptions)

    async def afetch_many(self, space: str, values: list[str], purposes: dict[str, str] | None = None, *,
                          progress: Progress | None = None, on_error: OnError | None = None) -> dict[str, KetchRecord]:
        """Records for many identities of one space, `concurrency` requests in flight.

        The first failure cancels the rest and is raised, unless `on_error(value, exc)` is
        given: then ApiError/DataError of one identity (including `ErrorAnswer`) are
        reported to it and that identity is left out of the result; whatever on_error
        raises stops the lookups and is raised."""
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
        """Close the HTTP session of the running event loop."""
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
            return self._runner.run(self._tracked(awaitable))

    async def _tracked(self, awaitable: Awaitable[T]) -> T:
        task = asyncio.current_task()
        self._running = (asyncio.get_running_loop(), task) if task is not None else None
        try:
            return await awaitable
        finally:
            self._running = None

    def cancel(self) -> None:
        """Stop the sync facade's call in progress from any thread: that call raises
        `asyncio.CancelledError` once its requests in flight are cancelled. No-op when idle."""
        running = self._running
        if running is not None:
            loop, task = running
            loop.call_soon_threadsafe(task.cancel)

    def close(self) -> None:
        """Close the sync facade's HTTP session and event loop."""
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

    async def _write_consent(self, identities: dict[str, str], purposes: dict[str, Any], at: datetime) -> None:
        body = self._body(identities)
        body["purposes"] = purposes
        body["collectedAt"] = _epoch(at)
        body["context"] = {"source": "headless"}
        await self._write("consent/update", f"/consent/{self._org_path}/update", body)

    async def _write_subscriptions(self, identities: dict[str, str], topics: dict[str, Any],
                                   controls: dict[str, Any], at: datetime) -> None:
        body = self._body(identities)
        body["topics"] = topics
        body["controls"] = controls
        body["collectedAt"] = _epoch(at)
        body["context"] = {"source": "headless"}
        await self._write("subscriptions/update", f"/subscriptions/{self._org_path}/update", body)

    def _state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        state = self._loops.get(loop)
        if state is None:
            self._loops = {lp: st for lp, st in self._loops.items() if not lp.is_closed()}
            state = self._loops[loop] = _LoopState(self._new_sender(), self._concurrency, self._rate)
        return state

    def _new_sender(self) -> AiohttpSender | HttpxSender:
        limit, timeout = self._concurrency, self.cfg.timeout_seconds
        if self._backend == "httpx":
            tls = self._ssl_context() if self._transport is None and self._base.startswith("https:") else None
            return HttpxSender(ssl_context=tls, transport=self._transport, limit=limit, timeout_seconds=timeout,
                               headers=_HEADERS, max_body_bytes=self._max_body)
        return AiohttpSender(ssl_context=self._ssl_context() if self._base.startswith("https:") else None,
                             limit=limit, timeout_seconds=timeout, headers=_HEADERS, max_body_bytes=self._max_body)

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = verified_context()  # certifi, or SSL_CERT_FILE / SSL_CERT_DIR when set
        return self._ssl

    def _target(self, path: str) -> tuple[str, RequestLabel]:
        target = self._targets.get(path)
        if target is None:
            url = self._base + path
            target = self._targets[path] = (url, RequestLabel(self.service, "POST", sanitize_url(url)))
        return target

    async def _send(self, op: str, path: str, body: dict[str, Any]) -> tuple[Reply, RequestLabel]:
        """POST with pacing, the in-flight limit, the deadline and retries; a 2xx answer."""
        url, label = self._target(path)
        content = json.dumps(body, separators=(",", ":")).encode()
        state = self._state()
        deadline = self.cfg.timeout_seconds

        rate = self._rate

        async def send() -> Reply:
            async with state.slots:
                started = self._clock()
                try:
                    answer = await with_deadline(state.sender.post(url, content), deadline)
                except (asyncio.CancelledError, KeyboardInterrupt):
                    raise
                except Exception:
                    rate.record(self._clock() - started, "error")
                    raise
                status = answer.status_code
                rate.record(self._clock() - started,
                            "throttled" if status == 429 or edge_block(answer) else "error" if status >= 500
                            else "ok")
                return answer

        attempts = Attempts(self._policy, label, self._gate, clock=self._clock, rng=self._rng,
                            scrub=mask_identities, describe=error_text, throttled=edge_block)
        reply = await asend_with_retries(send, attempts, self._sleep,
                                         before_send=state.pace if rate.start > 0 else None)
        if reply.status_code >= 300:
            cls = _FATAL_BY_STATUS.get(reply.status_code, FatalApiError)
            raise cls(f"{op} refused", status_code=reply.status_code, body=error_text(reply), **label.where())
        return reply, label

    async def _get(self, op: str, path: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """A read's answer body: None for no content; ErrorAnswer for a body carrying an error."""
        reply, label = await self._send(op, path, body)
        if reply.status_code == 204:
            return None
        answer = load_body(reply.content, op)
        _raise_error_body(answer, reply, op, label)
        return answer

    async def _write(self, op: str, path: str, body: dict[str, Any]) -> None:
        """A write; its answer counts only when it is a JSON object carrying an error."""
        reply, label = await self._send(op, path, body)
        try:
            answer = json.loads(reply.content) if reply.content.strip() else None
        except ValueError:
            return
        _raise_error_body(answer, reply, op, label)


def _raise_error_body(body: Any, reply: Reply, op: str, label: RequestLabel) -> None:
    error = error_in_body(body)
    if error is not None:
        raise ErrorAnswer(f"{op} answered {reply.status_code} with an error in the body, not a record",
                          status_code=reply.status_code, body=error, **label.where())


class _Counter:
    """Counts finished lookups and reports progress(done, total)."""

    def __init__(self, total: int, progress: Progress | None):
        self.done, self.total, self.progress = 0, total, progress

    def tick(self) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.total)


async def _all(awaitables: list[Awaitable[Any]]) -> list[Any]:
    """Results of every awaitable, run together; the first failure cancels the others and is raised."""
    if len(awaitables) == 1:
        return [await awaitables[0]]
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        await _join_all(tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        raise
    return [task.result() for task in tasks]


async def _join_all(tasks: Sequence[asyncio.Future[Any]]) -> None:
    """Wait for every task; on the first failure cancel the others and raise it."""
    if not tasks:
        return
    try:
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    except asyncio.CancelledError:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
    # Read every finished task's exception (several can fail in one loop turn), so none is
    # logged as "never retrieved"; raise the first.
    errors = [exc for exc in (task.exception() for task in done if not task.cancelled()) if exc is not None]
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


def _topics_body(topics: dict[tuple[str, str | None], str]) -> dict[str, dict[str, dict[str, str]]]:
    """(topic, channel or None) -> status as `{topic: {channel: {"status"}}}`; no channel = email."""
    out: dict[str, dict[str, dict[str, str]]] = {}
    for (topic, channel), status in topics.items():
        entry = out.setdefault(topic, {})
        name = channel or DEFAULT_CHANNEL
        if name in entry and entry[name]["status"] != status:
            raise ValueError(f"topic {topic!r} gives channel {name!r} two statuses (a channel-less status "
                             f"means {DEFAULT_CHANNEL!r})")
        entry[name] = {"status": status}
    return out


def _optout_topics(current: SubscriptionState | None, changes: dict[tuple[str, str | None], str]
                   ) -> tuple[dict[str, dict[str, dict[str, str]]], dict[str, dict[str, str]]]:
    """Every topic and control read, with the changed (topic, channel)s denied."""
    topics: dict[str, dict[str, dict[str, str]]] = {}
    read_channels: dict[str, list[str]] = {}
    for (topic, channel), status in (current.topics.items() if current else ()):
        entry = topics.setdefault(topic, {})
        name = channel or DEFAULT_CHANNEL
        if channel is not None:
            read_channels.setdefault(topic, []).append(channel)
        if entry.get(name, {}).get("status") != "denied":  # a flat and a channel status: the stricter
            entry[name] = {"status": status}
    for topic, channel in changes:
        channels = [channel] if channel is not None else (read_channels.get(topic) or [DEFAULT_CHANNEL])
        for name in channels:
            topics.setdefault(topic, {})[name] = {"status": "denied"}
    controls = {code: {"status": status} for code, status in (current.controls.items() if current else ())}
    return topics, controls


def _optout_purposes(current: ConsentState | None, changes: dict[str, str], known: dict[str, str]
                     ) -> tuple[dict[str, dict[str, str]], list[str]]:
    """(purposes to send, codes left out): the changed ones allowed "false" with their
    legal basis, and every other purpose read whose legal basis is known (answered by
    Ketch, else `known`) with its value. A purpose without one cannot be sent: Ketch's
    request type requires a legalBasisCode."""
    out: dict[str, dict[str, str]] = {}
    left_out: list[str] = []
    bases = current.legal_bases if current else {}
    for code, allowed in (current.purposes.items() if current else ()):
        if code in changes:
            continue
        basis = bases.get(code) or known.get(code)
        if basis:
            out[code] = {"allowed": "true" if allowed else "false", "legalBasisCode": basis}
        else:
            left_out.append(code)
    for code, basis in changes.items():
        out[code] = {"allowed": "false", "legalBasisCode": basis}
    return out, left_out


def edge_block(resp: Any) -> bool:
    """A 403 without Ketch's own JSON error body: the CDN or a web firewall refused the
    request (an HTML page, or nothing), which is a rate limit, not a missing permission."""
    if getattr(resp, "status_code", None) != 403:
        return False
    try:
        body = resp.json()
    except (ValueError, AttributeError):
        return True
    return not (isinstance(body, dict) and isinstance(body.get("error"), dict))


def error_text(resp: Any) -> str:
    """`code: message` from a Ketch error body, else the start of the body text; identities masked."""
    try:
        body = resp.json()
    except (ValueError, AttributeError):
        body = None
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            return mask_identities(f"{err.get('code', '')}: {err.get('message', '')}".strip(": "))[:200]
        found = error_in_body(body)
        if found:
            return found
    return mask_identities(resp.text[:200])
