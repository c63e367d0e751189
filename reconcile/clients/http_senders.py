"""The two ways KetchClient puts a POST on the wire, behind one small interface.

    sender = AiohttpSender(...) or HttpxSender(...)     # inside the event loop using it
    reply = await sender.post(url, body_bytes)          # resilience.Reply, body read whole
    await sender.aclose()

* `AiohttpSender`: one `aiohttp.ClientSession` on a keep-alive connector holding at
  most `limit` connections; proxies from the environment and credentials from `~/.netrc`,
  as aiohttp's `trust_env` reads them, but read once per origin and session: `trust_env`
  reads both again on every request, through two thread hops (about 60 % of the Ketch
  read's CPU at 10,000 subjects, benchmarks/RESULTS.md); TLS verified with the SSL
  context it is given; no redirects followed; no cookies kept. The real network's path:
  about a fifth of httpx's CPU per request (benchmarks/RESULTS.md).
* `HttpxSender`: an `httpx.AsyncClient`, on an injected transport (tests, the in-process
  sandbox) or on the network.

Both ask for `gzip, deflate` only and decode the body themselves, so an answer is never
more than `max_body_bytes` as sent or decompressed (`resilience.AnswerTooLarge`).
Neither applies the overall deadline: the caller wraps `post` in `resilience.with_deadline`.
"""

from __future__ import annotations

import ssl
from contextlib import suppress
from typing import Any, Mapping

import aiohttp
import httpx
from aiohttp.helpers import basicauth_from_netrc, get_env_proxy_for_url, netrc_from_env
from yarl import URL

from reconcile.clients.tls import verified_context
from reconcile.clients.resilience import (Reply, aread_capped, asend_bounded, check_declared_length,
                                          decode_body)

ACCEPT_ENCODING = "gzip, deflate"
_CHUNK = 64 * 1024


def env_route(url: URL) -> dict[str, Any]:
    """What aiohttp's `trust_env` adds to a request for `url`: Basic credentials from
    `~/.netrc` (or `$NETRC`) for the host, and `proxy`/`proxy_auth` from the `*_PROXY` variables unless
    `NO_PROXY` bypasses the host. Empty when the environment names neither."""
    route: dict[str, Any] = {}
    if url.host is not None:
        with suppress(LookupError):
            route["headers"] = {"Authorization": basicauth_from_netrc(netrc_from_env(), url.host).encode()}
    with suppress(LookupError):
        route["proxy"], route["proxy_auth"] = get_env_proxy_for_url(url)
    return route


class AiohttpSender:
    """POSTs through one aiohttp session (create it inside the loop that will use it)."""

    name = "aiohttp"

    def __init__(self, *, limit: int, timeout_seconds: float, headers: Mapping[str, str], max_body_bytes: int,
                 ssl_context: ssl.SSLContext | None):
        self._limit = max_body_bytes
        connector = aiohttp.TCPConnector(limit=limit, ssl=ssl_context if ssl_context is not None else True)
        self._session = aiohttp.ClientSession(
            connector=connector, headers={**headers, "Accept-Encoding": ACCEPT_ENCODING}, trust_env=False,
            auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=timeout_seconds, sock_read=timeout_seconds))

        self._routes: dict[tuple[str, str | None, int | None], dict[str, Any]] = {}

    def _route(self, url: str) -> dict[str, Any]:
        parsed = URL(url)
        origin = (parsed.scheme, parsed.host, parsed.port)
        route = self._routes.get(origin)
        if route is None:
            route = self._routes[origin] = env_route(parsed)
        return route

    async def post(self, url: str, content: bytes) -> Reply:
        async with self._session.post(url, data=content, allow_redirects=False, **self._route(url)) as resp:
            check_declared_length(resp.headers, self._limit)
            raw = await aread_capped(resp.content.iter_chunked(_CHUNK), self._limit)
            return Reply(resp.status, resp.headers, decode_body(raw, resp.headers.get("Content-Encoding"), self._limit))

    async def aclose(self) -> None:
        await self._session.close()


class HttpxSender:
    """POSTs through one httpx.AsyncClient, on `transport` when given."""

    name = "httpx"

    def __init__(self, *, limit: int, timeout_seconds: float, headers: Mapping[str, str], max_body_bytes: int,
                 ssl_context: ssl.SSLContext | None, transport: httpx.AsyncBaseTransport | None = None):
        self._limit = max_body_bytes
        timeout = httpx.Timeout(timeout_seconds)
        sent_headers = {**headers, "Accept-Encoding": ACCEPT_ENCODING}
        if transport is not None:
            self._http = httpx.AsyncClient(transport=transport, timeout=timeout, follow_redirects=False,
                                           headers=sent_headers)
        else:
            pool = httpx.Limits(max_connections=limit, max_keepalive_connections=limit)
            self._http = httpx.AsyncClient(limits=pool, verify=ssl_context or verified_context(), trust_env=True,
                                           timeout=timeout,
                                           follow_redirects=False, headers=sent_headers)

    async def post(self, url: str, content: bytes) -> Reply:
        request = self._http.build_request("POST", url, content=content)
        return await asend_bounded(self._http, request, limit=self._limit)

    async def aclose(self) -> None:
        await self._http.aclose()
