"""The small HTTP framework both simulators share.

A simulator is a `Simulator` subclass whose routes take a `SimRequest` and return a
`SimResponse`. The same object serves three ways:

* in-process: `sim.transport()` is an `httpx.MockTransport` (sync and async clients);
* over loopback: `serve(sim)` runs it under uvicorn on 127.0.0.1 (see `server.py`);
* directly: `sim.handle(SimRequest(...))` in unit tests.

Every simulator keeps a call log, answers admin routes under `/_admin/`, applies
fault injection (5xx rate, latency, timeouts, scripted failures, HTML pages instead of
JSON, handled requests whose answers are spoiled: truncated JSON, a wrong content type,
an empty body, unknown or missing fields) and fixed-window rate
limits per endpoint class with `X-RateLimit-*` headers. The clock is injected.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar
from urllib.parse import parse_qs

import httpx

T = TypeVar("T")


@dataclass
class SimRequest:
    method: str
    path: str
    query: dict[str, list[str]] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    body: bytes = b""
    scheme: str = "http"

    def origin(self) -> str:
        """`scheme://host[:port]` the request was sent to (from the Host header)."""
        return f"{self.scheme}://{self.headers.get('host', 'localhost')}"

    def json(self) -> Any:
        """Parsed JSON body; raises ValueError on bad JSON."""
        if not self.body:
            return None
        return json.loads(self.body)

    def arg(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    def args(self, name: str) -> list[str]:
        """A repeated query parameter: `x[]=1&x[]=2`, `x=1&x=2` or `x=1,2`."""
        out: list[str] = []
        for key in (f"{name}[]", name):
            for v in self.query.get(key, []):
                out.extend(p for p in v.split(",") if p != "") if key == name else out.append(v)
        return out


@dataclass
class SimResponse:
    status: int = 200
    body: Any = None  # dict/list -> JSON; bytes -> raw; None -> empty
    headers: dict[str, str] = field(default_factory=dict)

    def content(self) -> bytes:
        if self.body is None:
            return b""
        if isinstance(self.body, bytes):
            return self.body
        return json.dumps(self.body).encode()


class SimTimeout(Exception):
    """Raised by a route (or fault injection) to simulate a request that never answers."""


@dataclass
class Faults:
    """Fault injection. Rates are probabilities per request (admin routes excluded)."""

    error_rate: float = 0.0  # answer 500/502/503 at this rate
    timeout_rate: float = 0.0  # never answer (client times out) at this rate
    latency_seconds: float = 0.0  # added to every answer
    scripted: list[tuple[str, int, int]] = field(default_factory=list)  # (path regex, status, times)
    html: list[tuple[str, int, int]] = field(default_factory=list)  # (path regex, status, times)
    answers: list[tuple[str, str, int]] = field(default_factory=list)  # (path regex, ANSWER_FAULTS kind, times)

    def fail_next(self, path_regex: str, status: int, times: int = 1) -> None:
        self.scripted.append((path_regex, status, times))

    def html_next(self, path_regex: str, status: int = 200, times: int = 1) -> None:
        """Answer the next matching requests with an HTML page (a proxy or maintenance page)
        instead of the API's JSON, without handling them."""
        self.html.append((path_regex, status, times))

    def answer_next(self, path_regex: str, kind: str, times: int = 1) -> None:
        """Handle the next matching requests, then spoil their answers (`ANSWER_FAULTS`)."""
        if kind not in ANSWER_FAULTS:
            raise ValueError(f"unknown answer fault {kind!r}; use one of {', '.join(ANSWER_FAULTS)}")
        self.answers.append((path_regex, kind, times))

    def take_answer(self, path: str) -> str | None:
        return _take(self.answers, path)

    def take_html(self, path: str) -> int | None:
        return _take(self.html, path)

    def take_scripted(self, path: str) -> int | None:
        return _take(self.scripted, path)


# How `Faults.answer_next` spoils an answer the simulator did handle (the write happened).
ANSWER_FAULTS = ("truncated_json", "text_plain", "empty", "unknown_fields", "missing_fields")


def spoil(resp: SimResponse, kind: str) -> SimResponse:
    raw = resp.content()
    if kind == "truncated_json":
        return SimResponse(resp.status, raw[: max(1, len(raw) // 2)],
                           {**resp.headers, "Content-Type": "application/json"})
    if kind == "text_plain":
        return SimResponse(resp.status, raw, {**resp.headers, "Content-Type": "text/plain"})
    if kind == "empty":
        return SimResponse(resp.status, None, resp.headers)
    body = resp.body if isinstance(resp.body, dict) else {}
    if kind == "unknown_fields":
        return SimResponse(resp.status, {**body, "x_new_field": {"nested": [1, 2]}, "schema_version": 99}, resp.headers)
    documented = [k for k in body if k != "message"] or list(body)
    return SimResponse(resp.status, {k: v for k, v in body.items() if k not in documented}, resp.headers)


def _take(table: list[tuple[str, T, int]], path: str) -> T | None:
    for i, (rx, status, times) in enumerate(table):
        if re.search(rx, path):
            if times <= 1:
                table.pop(i)
            else:
                table[i] = (rx, status, times - 1)
            return status
    return None


@dataclass
class Window:
    limit: int
    seconds: float
    start: float = 0.0
    used: int = 0


class RateLimiter:
    """Fixed windows aligned to the clock (Braze resets on the clock hour, not rolling)."""

    def __init__(self, limits: dict[str, tuple[int, float]], clock: Callable[[], float]):
        self.windows = {name: Window(n, s) for name, (n, s) in limits.items()}
        self.clock = clock

    def set_limit(self, name: str, limit: int, seconds: float) -> None:
        self.windows[name] = Window(limit, seconds)

    def take(self, name: str) -> tuple[bool, dict[str, str]]:
        w = self.windows.get(name)
        if w is None:
            return True, {}
        now = self.clock()
        start = (now // w.seconds) * w.seconds
        if start != w.start:
            w.start, w.used = start, 0
        allowed = w.used < w.limit
        if allowed:
            w.used += 1
        reset = w.start + w.seconds
        headers = {
            "X-RateLimit-Limit": str(w.limit),
            "X-RateLimit-Remaining": str(max(0, w.limit - w.used)),
            "X-RateLimit-Reset": str(int(reset) if reset == int(reset) else round(reset, 3)),
        }
        return allowed, headers


Route = Callable[[SimRequest], SimResponse]
HTML_PAGE = (b"<!DOCTYPE html><html><head><title>Maintenance</title></head>"
             b"<body><h1>We'll be right back</h1></body></html>")


class Simulator:
    """Routing, call log, faults, rate limits and admin routes; subclasses add the API."""

    name = "sim"

    def __init__(self, *, clock: Callable[[], float] = time.time, seed: int = 0):
        self.clock = clock
        self.rng = random.Random(seed)
        self.faults = Faults()
        self.limiter = RateLimiter({}, clock)
        self.calls: list[dict[str, Any]] = []
        self.lock = threading.RLock()
        self.lowercase_headers = False  # HTTP/2 style header names
        self._routes: list[tuple[str, re.Pattern[str], Route, str | None]] = []

    # -- registration ------------------------------------------------------------------
    def route(self, method: str, pattern: str, handler: Route, limit_class: str | None = None) -> None:
        self._routes.append((method.upper(), re.compile(f"^{pattern}$"), handler, limit_class))

    # -- hooks for subclasses --------------------------------------------------------------
    def authorize(self, req: SimRequest) -> SimResponse | None:
        return None

    def tick(self) -> None:
        """Advance time-based state (e.g. queued deletions); called before each request."""

    def state(self) -> dict[str, Any]:
        return {}

    def error_body(self, status: int, message: str) -> Any:
        return {"message": message}

    # -- dispatch ----------------------------------------------------------------------
    def handle(self, req: SimRequest) -> SimResponse:
        """Answer one request; may raise SimTimeout."""
        with self.lock:
            if req.path.startswith("/_admin/"):
                return self._admin(req)
            self.tick()
            resp = self._dispatch(req)
            self.calls.append({
                "at": self.clock(), "method": req.method, "path": req.path,
                "query": {k: v for k, v in req.query.items()},
                "body": _safe_json(req.body), "status": resp.status,
            })
        if self.lowercase_headers:
            resp.headers = {k.lower(): v for k, v in resp.headers.items()}
        return resp

    def _dispatch(self, req: SimRequest) -> SimResponse:
        route = next((r for r in self._routes if r[0] == req.method and r[1].match(req.path)), None)
        if route is None:
            return SimResponse(404, self.error_body(404, "404 Not Found"))
        _method, _rx, handler, limit_class = route
        denied = self.authorize(req)
        if denied is not None:
            return denied
        headers: dict[str, str] = {}
        # the rate limit answers first, as a gateway does: a scripted fault waits for a request it lets through
        if limit_class:
            allowed, headers = self.limiter.take(limit_class)
            if not allowed:
                return SimResponse(429, self.error_body(429, "429 Rate Limited - Over rate limit"), headers)
        scripted = self.faults.take_scripted(req.path)
        if scripted == 599:
            raise SimTimeout(req.path)
        if scripted is not None:
            return SimResponse(scripted, self.error_body(scripted, f"injected {scripted}"), headers)
        html = self.faults.take_html(req.path)
        if html is not None:
            return SimResponse(html, HTML_PAGE, {**headers, "Content-Type": "text/html; charset=utf-8"})
        if self.faults.timeout_rate and self.rng.random() < self.faults.timeout_rate:
            raise SimTimeout(req.path)
        if self.faults.error_rate and self.rng.random() < self.faults.error_rate:
            status = self.rng.choice((500, 502, 503))
            return SimResponse(status, self.error_body(status, "injected server error"), headers)
        try:
            resp = handler(req)
        except ValueError as exc:  # bad JSON or bad parameter types
            resp = SimResponse(400, self.error_body(400, f"Bad Request: {exc}"))
        resp.headers = {**headers, **resp.headers}
        spoiled = self.faults.take_answer(req.path)
        return spoil(resp, spoiled) if spoiled else resp

    def _admin(self, req: SimRequest) -> SimResponse:
        op = req.path[len("/_admin/"):]
        if op == "state" and req.method == "GET":
            return SimResponse(200, self.state())
        if op == "calls" and req.method == "GET":
            return SimResponse(200, {"calls": self.calls})
        if op == "calls" and req.method == "DELETE":
            self.calls.clear()
            return SimResponse(204)
        if op == "faults" and req.method == "POST":
            spec = req.json() or {}
            for key in ("error_rate", "timeout_rate", "latency_seconds"):
                if key in spec:
                    setattr(self.faults, key, float(spec[key]))
            for item in spec.get("fail_next", []):
                self.faults.fail_next(item["path"], int(item["status"]), int(item.get("times", 1)))
            for item in spec.get("html_next", []):
                self.faults.html_next(item["path"], int(item.get("status", 200)), int(item.get("times", 1)))
            for item in spec.get("answer_next", []):
                self.faults.answer_next(item["path"], str(item["kind"]), int(item.get("times", 1)))
            for name, lim in spec.get("rate_limits", {}).items():
                self.limiter.set_limit(name, int(lim["requests"]), float(lim["per_seconds"]))
            return SimResponse(200, {"faults": self.faults.__dict__})
        return SimResponse(404, {"message": f"unknown admin route {req.path}"})

    # -- adapters ----------------------------------------------------------------------
    def transport(self, sleep: Callable[[float], None] | None = None) -> httpx.MockTransport:
        """An in-process transport for sync or async httpx clients.

        Latency faults are applied with `sleep` (default: none in-process, to stay fast)."""

        def handler(request: httpx.Request) -> httpx.Response:
            sim_req = from_httpx(request)
            try:
                resp = self.handle(sim_req)
            except SimTimeout:
                raise httpx.ReadTimeout("sandbox injected timeout", request=request) from None
            if sleep and self.faults.latency_seconds:
                sleep(self.faults.latency_seconds)
            return httpx.Response(resp.status, headers=content_headers(resp), content=resp.content())

        return httpx.MockTransport(handler)


def content_headers(resp: SimResponse) -> dict[str, str]:
    """The response's headers, with a JSON content type when its body is not raw bytes."""
    headers = dict(resp.headers)
    if resp.body is not None and not isinstance(resp.body, bytes):
        headers.setdefault(
            "content-type" if resp.headers and all(k.islower() for k in resp.headers) else "Content-Type",
            "application/json")
    return headers


def from_httpx(request: httpx.Request) -> SimRequest:
    query = parse_qs(request.url.query.decode() if isinstance(request.url.query, bytes) else request.url.query,
                     keep_blank_values=True)
    return SimRequest(
        method=request.method,
        path=request.url.path,
        query=query,
        headers={k.lower(): v for k, v in request.headers.items()},
        body=request.read(),
        scheme=request.url.scheme or "http",
    )


def _safe_json(body: bytes) -> Any:
    if not body:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return body[:200].decode("utf-8", "replace")
