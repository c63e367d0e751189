"""The native HTTP path of KetchClient's real-network requests: HTTP/1.1 keep-alive on
asyncio protocols, answers parsed by httptools (the C parser uvicorn uses).

Why: every Ketch lookup is two small POSTs. httpx costs about a millisecond of CPU per
request here (request/response models, anyio locks and cancel scopes, the pure-python h11
parser) and aiohttp about 0.3 ms; this path costs 0.1-0.15 ms, which is what lets one
client sustain thousands of lookups per second (benchmarks/ketch_lookups.py,
benchmarks/RESULTS.md). KetchClient uses it when it owns the network (no injected
transport) and no proxy variable applies to the API's URL; otherwise httpx.

It does only what the Ketch client needs and keeps httpx's behaviour where the client
depends on it: one POST at a time per connection; idle connections reused last in,
first out and dropped after 5 s (httpx's keep-alive expiry) or when the server closes
them; TLS with the SSL context it is given (the client passes httpx's: certifi,
SSL_CERT_FILE); Content-Length, chunked and read-until-close bodies; gzip and deflate
decoded; informational (1xx) answers skipped; redirects not followed; credentials in the
URL sent as Basic auth; no cookies; the connect timeout and the answer timeout each the
configured seconds. A connection whose answer was cut short, malformed, followed by
stray bytes, timed out or cancelled is closed, never reused, so one request's answer can
never be read as another's.

Errors: ConnectTimeout/ReadTimeout (TimeoutError), refused or reset connections (OSError,
including TLS failures) and ProtocolError (a ConnectionError) are worth a retry; an
undecodable body (DecodingError) or a URL it cannot send to (InvalidURL) is not.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import urllib.request
import zlib
from typing import Any, Mapping
from urllib.parse import unquote, urlsplit

import httptools

__all__ = ["ConnectTimeout", "DecodingError", "FATAL_EXC", "InvalidURL", "NativeSession", "ProtocolError",
           "RETRYABLE_EXC", "ReadTimeout", "Reply", "env_proxy_for", "native_usable"]

KEEPALIVE_EXPIRY = 5.0  # seconds an idle connection is kept (httpx's default)
_CLOSE_WAIT = 1.0  # seconds aclose() waits for closed connections to be gone
_USER_AGENT = "reconcile-ketch-client"


class ProtocolError(ConnectionError):
    """The answer could not be read as HTTP/1.1, or the connection broke before it was whole."""


class ConnectTimeout(TimeoutError):
    """No connection within the timeout."""


class ReadTimeout(TimeoutError):
    """No whole answer within the timeout."""


class DecodingError(ValueError):
    """The body's Content-Encoding is unknown or the compressed body is corrupt."""


class InvalidURL(ValueError):
    """A URL this transport cannot send to."""


RETRYABLE_EXC: tuple[type[BaseException], ...] = (TimeoutError, OSError)  # ProtocolError is an OSError
FATAL_EXC: tuple[type[BaseException], ...] = (DecodingError, InvalidURL)


class Reply:
    """An HTTP answer as the Ketch client reads it: status_code, headers (lower-case names),
    content, json() and text, like the httpx.Response it stands in for."""

    __slots__ = ("status_code", "headers", "content")

    def __init__(self, status_code: int, headers: Mapping[str, str], content: bytes):
        self.status_code = status_code
        self.headers = headers
        self.content = content

    def json(self) -> Any:
        return json.loads(self.content)

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def __repr__(self) -> str:
        return f"<Reply [{self.status_code}]>"


def env_proxy_for(url: str) -> str | None:
    """The proxy that HTTP(S)_PROXY / ALL_PROXY / NO_PROXY name for `url`, as httpx reads them."""
    proxies = urllib.request.getproxies_environment()
    if not proxies:
        return None
    parts = urlsplit(url)
    if proxies.get("no") and urllib.request.proxy_bypass_environment(parts.hostname or "", proxies):
        return None
    return proxies.get(parts.scheme) or proxies.get("all")


def native_usable(url: str) -> bool:
    """The URL is http(s) and reached directly (proxied URLs stay with httpx, which honours them)."""
    return urlsplit(url).scheme in ("http", "https") and env_proxy_for(url) is None


class _Target:
    """What one URL means on the wire: the origin to connect to and the request's head."""

    __slots__ = ("origin", "host", "port", "tls", "head")

    def __init__(self, url: str, headers: Mapping[str, str]):
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            raise InvalidURL("invalid port in the URL") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidURL("only http:// and https:// URLs with a host are supported")
        self.tls = parts.scheme == "https"
        self.host = parts.hostname
        self.port = port or (443 if self.tls else 80)
        self.origin = (self.tls, self.host, self.port)
        host = f"[{self.host}]" if ":" in self.host else self.host
        if port is not None and port != (443 if self.tls else 80):
            host = f"{host}:{port}"
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        lines = [f"POST {target} HTTP/1.1", f"Host: {host}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        lines += ["Accept-Encoding: gzip, deflate", "Connection: keep-alive", f"User-Agent: {_USER_AGENT}"]
        if parts.username is not None or parts.password is not None:
            userinfo = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}".encode()
            lines.append("Authorization: Basic " + base64.b64encode(userinfo).decode("ascii"))
        self.head = ("\r\n".join(lines) + "\r\n").encode("latin-1")


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.lost: asyncio.Future[None] = loop.create_future()
        self.idle_since = 0.0
        self._waiter: asyncio.Future[None] | None = None
        self._parser: Any = None
        self._reset()

    def _reset(self) -> None:
        self._status = 0
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._headers_done = self._framed = self._done = False
        self._keep = False

    # -- asyncio.Protocol ----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._waiter is None or self._waiter.done():
            self._fail(ProtocolError("bytes from the server with no request waiting"))
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ProtocolError(f"malformed HTTP answer: {type(exc).__name__}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.lost.done():
            self.lost.set_result(None)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            if self._headers_done and not self._framed:  # a body that ends when the connection does
                self._keep = False
                waiter.set_result(None)
            else:
                waiter.set_exception(ProtocolError("the server closed the connection before answering in full"))

    def _fail(self, exc: Exception) -> None:
        self.closed = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)
        if self.transport is not None:
            self.transport.close()

    # -- httptools callbacks ---------------------------------------------------------------
    def on_message_begin(self) -> None:
        if self._done:  # a second answer to one request: never reuse this connection
            self._keep = False
            self.closed = True

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        prev = self._headers.get(key)
        self._headers[key] = text if prev is None else f"{prev}, {text}"

    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()
        self._headers_done = True
        self._framed = ("content-length" in self._headers
                        or "chunked" in self._headers.get("transfer-encoding", "").lower())

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._done:
            return
        if 100 <= self._status < 200 and self._status != 101:  # informational: the answer follows
            self._reset()
            return
        self._done = True
        self._keep = self._parser.should_keep_alive() and not self.closed
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # -- use -------------------------------------------------------------------------------
    async def request(self, raw: bytes) -> tuple[int, dict[str, str], bytes, bool]:
        """Send one request; (status, headers, raw body, reusable)."""
        self._reset()
        self._parser = httptools.HttpResponseParser(self)
        self._waiter = self.loop.create_future()
        self.transport.write(raw)  # type: ignore[union-attr]
        try:
            await self._waiter
        finally:
            self._waiter = None
        return self._status, self._headers, b"".join(self._body), self._keep and not self.closed


def _decode(body: bytes, encoding: str | None) -> bytes:
    if not encoding or not body:
        return body
    for coding in reversed([c.strip().lower() for c in encoding.split(",") if c.strip()]):
        try:
            if coding in ("gzip", "x-gzip"):
                body = zlib.decompress(body, 16 + zlib.MAX_WBITS)
            elif coding == "deflate":
                try:
                    body = zlib.decompress(body)
                except zlib.error:
                    body = zlib.decompress(body, -zlib.MAX_WBITS)
            elif coding != "identity":
                raise DecodingError(f"unsupported Content-Encoding {coding!r}")
        except zlib.error:
            raise DecodingError(f"corrupt {coding} body") from None
    return body


class NativeSession:
    """Keep-alive connections for one event loop; at most `limit` kept idle.

    Create it inside the loop that will use it and `await aclose()` it there."""

    def __init__(self, *, limit: int, timeout_seconds: float, ssl_context: ssl.SSLContext | None,
                 headers: Mapping[str, str]):
        self._limit = max(1, limit)
        self._timeout = timeout_seconds
        self._ssl = ssl_context
        self._headers = dict(headers)
        self._targets: dict[str, _Target] = {}
        self._idle: dict[tuple[bool, str, int], list[_Connection]] = {}
        self._all: set[_Connection] = set()
        self._closing: list[_Connection] = []  # closed here, connection_lost not seen yet
        self._loop = asyncio.get_running_loop()

    def _target(self, url: str) -> _Target:
        target = self._targets.get(url)
        if target is None:
            target = self._targets[url] = _Target(url, self._headers)
        return target

    async def post(self, url: str, content: bytes) -> Reply:
        """POST `content`; the whole answer, whatever its status."""
        target = self._target(url)
        raw = target.head + b"Content-Length: %d\r\n\r\n" % len(content) + content
        conn = self._take_idle(target.origin) or await self._connect(target)
        try:
            async with asyncio.timeout(self._timeout):
                status, headers, body, reusable = await conn.request(raw)
        except TimeoutError:
            self._discard(conn)
            raise ReadTimeout(f"no whole answer within {self._timeout:g} s") from None
        except BaseException:
            self._discard(conn)
            raise
        if reusable:
            self._put_idle(target.origin, conn)
        else:
            self._discard(conn)
        return Reply(status, headers, _decode(body, headers.get("content-encoding")))

    def _take_idle(self, origin: tuple[bool, str, int]) -> _Connection | None:
        idle = self._idle.get(origin)
        now = self._loop.time()
        while idle:
            conn = idle.pop()
            if not conn.closed and now - conn.idle_since <= KEEPALIVE_EXPIRY:
                return conn
            self._discard(conn)
        return None

    def _put_idle(self, origin: tuple[bool, str, int], conn: _Connection) -> None:
        idle = self._idle.setdefault(origin, [])
        if len(idle) >= self._limit:
            self._discard(conn)
            return
        conn.idle_since = self._loop.time()
        idle.append(conn)

    async def _connect(self, target: _Target) -> _Connection:
        tls: Any = None
        if target.tls:
            tls = self._ssl if self._ssl is not None else ssl.create_default_context()
        try:
            async with asyncio.timeout(self._timeout):
                _, conn = await self._loop.create_connection(
                    lambda: _Connection(self._loop), target.host, target.port, ssl=tls,
                    server_hostname=target.host if target.tls else None)
        except TimeoutError:
            raise ConnectTimeout(f"no connection within {self._timeout:g} s") from None
        self._all.add(conn)
        return conn

    def _discard(self, conn: _Connection) -> None:
        conn.closed = True
        self._all.discard(conn)
        if conn.transport is not None and not conn.transport.is_closing():
            conn.transport.close()
        if not conn.lost.done():
            if len(self._closing) >= 64:
                self._closing = [c for c in self._closing if not c.lost.done()]
            self._closing.append(conn)

    async def aclose(self) -> None:
        """Close every connection and wait (briefly) until they are gone."""
        for idle in self._idle.values():
            for conn in idle:
                self._discard(conn)
        self._idle.clear()
        for conn in list(self._all):
            self._discard(conn)
        waiting = [c.lost for c in self._closing if not c.lost.done()]
        if waiting:
            await asyncio.wait(waiting, timeout=_CLOSE_WAIT)
        self._closing.clear()
