"""The ledger's defences against slow and greedy clients, on uvicorn's own h11 protocol.

uvicorn 0.55 has a keep-alive timeout between requests but none for a request still
arriving: a client that connects and sends nothing, or a header a byte a minute, keeps its
connection for ever, and `limit_concurrency` counts such idle connections, so 300 of them
turned genuine Ketch messages into 503. `GuardedH11Protocol` adds, per connection:

* a **request timeout**: the request line, headers and body must all arrive within
  `ledger.request_timeout_seconds` of the connection (or, on a kept-alive connection, of
  the request's first byte); otherwise the connection is closed. The app's own work is not
  timed.
* a **per-client budget**: a peer address holding `ledger.max_connections_per_client`
  connections has its next one closed at once (0: no budget; behind a reverse proxy every
  connection comes from the proxy, so set 0 there and let the proxy budget its clients).

The number of requests the app handles at once is bounded separately, by
`InFlightLimit` (503 with Retry-After beyond `ledger.max_requests_in_flight`), which counts
requests, not connections.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from reconcile.ledger.messages import error_body

log = logging.getLogger("reconcile.ledger.access")

TELL_EVERY = 10.0  # seconds between two warnings of one kind
RECEIVING = (h11.IDLE, h11.SEND_BODY)  # the client's side while a request is still arriving
BUSY = json.dumps(error_body(503, "unavailable", "too many requests in flight; retry later")).encode()


@dataclass(frozen=True)
class ConnectionLimits:
    request_timeout_seconds: float = 10.0
    max_connections_per_client: int = 32
    max_requests_in_flight: int = 64


def guarded_protocol(limits: ConnectionLimits) -> type[H11Protocol]:
    """uvicorn's `http=` protocol class enforcing `limits` (see the module doc)."""

    told = Throttled(log, TELL_EVERY)

    class GuardedH11Protocol(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            budget = limits.max_connections_per_client
            peer = self.client[0] if self.client else None
            if budget and peer is not None:
                held = sum(1 for c in self.connections if _peer(c) == peer)
                if held > budget:
                    told.warn("over_budget", "connection(s) refused: the client held %d connections "
                              "(ledger.max_connections_per_client = %d)", held - 1, budget)
                    transport.close()
                    return
            self._arm()

        def data_received(self, data: bytes) -> None:
            if self._deadline is None and self.conn.their_state in RECEIVING:
                self._arm()  # the first byte of a request on a kept-alive connection
            super().data_received(data)
            if self.conn.their_state not in RECEIVING:
                self._disarm()  # the whole request is in: the app's time is its own

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def on_response_complete(self) -> None:
            self._disarm()
            super().on_response_complete()

        def _arm(self) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(limits.request_timeout_seconds, self._too_slow)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _too_slow(self) -> None:
            self._deadline = None
            if self.conn.their_state in RECEIVING and not self.transport.is_closing():
                told.warn("too_slow", "connection(s) closed: no complete request within %ss "
                          "(ledger.request_timeout_seconds)", limits.request_timeout_seconds)
                self.transport.close()

    return GuardedH11Protocol


class Throttled:
    """A warning per kind at most every `every` seconds, with the count of those held back:
    a flood of slow clients must not flood the log as well."""

    def __init__(self, logger: logging.Logger, every: float) -> None:
        self.logger, self.every = logger, every
        self.last: dict[str, float] = {}
        self.held: dict[str, int] = {}

    def warn(self, kind: str, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self.last.get(kind, -self.every) < self.every:
            self.held[kind] = self.held.get(kind, 0) + 1
            return
        held = self.held.pop(kind, 0)
        self.last[kind] = now
        self.logger.warning(message + (f" (and {held} more in the last {self.every:.0f}s)" if held else ""), *args)


def _peer(connection: Any) -> str | None:
    client = getattr(connection, "client", None)
    return str(client[0]) if client else None


class InFlightLimit:
    """ASGI middleware: at most `limit` HTTP requests handled at once; the next is answered
    503 with Retry-After (Ketch retries a 5xx) instead of queueing without bound."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit
        self.active = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.active >= self.limit:
            log.warning("503: %d requests in flight (ledger.max_requests_in_flight)", self.active)
            await send({"type": "http.response.start", "status": 503,
                        "headers": [(b"content-type", b"application/json"), (b"retry-after", b"5")]})
            await send({"type": "http.response.body", "body": BUSY})
            return
        self.active += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1
