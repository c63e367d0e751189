"""The aiohttp path of KetchClient's real-network requests.

httpx costs about a millisecond of CPU per request here (request and response models,
anyio locks and cancel scopes, the pure-python h11 parser); aiohttp with its C parser
costs a fifth of that, which is what lets one client sustain thousands of lookups per
second. KetchClient uses this path when it owns the network (no injected transport),
aiohttp is installed and no proxy variable applies to the API's URL; otherwise httpx.

`AiohttpSession` keeps httpx's behaviour where the client depends on it: the same SSL
context (certifi, SSL_CERT_FILE), the timeout for each of connect and read, no
redirects followed, credentials in the URL sent as Basic auth, compressed bodies
decoded, no cookies kept, and the answer handed back whatever its status.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import urllib.request
from typing import Any, Mapping
from urllib.parse import urlsplit

try:
    import aiohttp
    import yarl
except ImportError:  # pragma: no cover - aiohttp is a dependency; httpx is the fallback
    aiohttp = None  # type: ignore[assignment]
    yarl = None  # type: ignore[assignment]

__all__ = ["AiohttpSession", "Reply", "aiohttp_usable", "env_proxy_for"]

if aiohttp is not None:
    # Answered too slowly, connection refused/reset/dropped, body cut short, malformed answer.
    RETRYABLE_EXC: tuple[type[BaseException], ...] = (
        asyncio.TimeoutError, aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, aiohttp.ClientResponseError)
    FATAL_EXC: tuple[type[BaseException], ...] = (aiohttp.ClientError,)
else:  # pragma: no cover
    RETRYABLE_EXC = FATAL_EXC = ()


class Reply:
    """An HTTP answer as the Ketch client reads it: status_code, headers (case-insensitive
    names), content, json() and text, like the httpx.Response it stands in for."""

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


def aiohttp_usable(url: str) -> bool:
    """aiohttp is installed and the URL is reached directly (proxied URLs stay with httpx)."""
    return aiohttp is not None and urlsplit(url).scheme in ("http", "https") and env_proxy_for(url) is None


class AiohttpSession:
    """One aiohttp session for one event loop: a pool of at most `limit` keep-alive connections.

    Create it inside the loop that will use it and `await aclose()` it there."""

    def __init__(self, *, limit: int, timeout_seconds: float, ssl_context: ssl.SSLContext,
                 headers: Mapping[str, str]):
        connector = aiohttp.TCPConnector(limit=limit, limit_per_host=0, ssl=ssl_context)
        timeout = aiohttp.ClientTimeout(total=None, connect=timeout_seconds, sock_connect=timeout_seconds,
                                        sock_read=timeout_seconds)
        self._session = aiohttp.ClientSession(connector=connector, timeout=timeout, headers=dict(headers),
                                              cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=True,
                                              trust_env=False)
        self._urls: dict[str, Any] = {}

    def url(self, url: str) -> Any:
        """A parsed URL, cached (parsing is a measurable share of a request)."""
        parsed = self._urls.get(url)
        if parsed is None:
            parsed = self._urls[url] = yarl.URL(url)
        return parsed

    async def post(self, url: str, content: bytes) -> Reply:
        """POST `content`; the whole answer, whatever its status. Raises aiohttp/timeout errors."""
        async with self._session.post(self.url(url), data=content, allow_redirects=False) as resp:
            body = await resp.read()
            return Reply(resp.status, resp.headers, body)

    async def aclose(self) -> None:
        await self._session.close()
