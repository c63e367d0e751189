"""Serve a simulator over real HTTP on loopback (uvicorn in a background thread)."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs

import uvicorn

from reconcile.sandbox.core import SimRequest, SimTimeout, Simulator, content_headers
from reconcile.serving import RunningServer, free_port, start_in_thread


def asgi_app(sim: Simulator, timeout_hold_seconds: float = 30.0):
    """An ASGI application answering with `sim`. Injected timeouts hold the connection."""

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        msg = await receive()
        body = msg.get("body", b"")
        if msg.get("more_body"):
            parts = [body]
            while msg.get("more_body"):
                msg = await receive()
                parts.append(msg.get("body", b""))
            body = b"".join(parts)
        raw_query = scope.get("query_string", b"")
        req = SimRequest(
            method=scope["method"],
            path=scope["path"],
            query=parse_qs(raw_query.decode(), keep_blank_values=True) if raw_query else {},
            headers={k.decode().lower(): v.decode() for k, v in scope.get("headers", ())},
            body=body,
            scheme=scope.get("scheme", "http"),
        )
        try:
            resp = sim.handle(req)
        except SimTimeout:
            await asyncio.sleep(timeout_hold_seconds)
            return
        if sim.faults.latency_seconds:
            await asyncio.sleep(sim.faults.latency_seconds)
        content = resp.content()
        headers = [(k.encode(), str(v).encode()) for k, v in content_headers(resp).items()]
        headers.append((b"content-length", b"%d" % len(content)))
        await send({"type": "http.response.start", "status": resp.status, "headers": headers})
        await send({"type": "http.response.body", "body": content})

    return app


def serve(sim: Simulator, host: str = "127.0.0.1", port: int = 0, *, timeout_hold_seconds: float = 30.0,
          http: str = "auto", loop: str = "auto") -> RunningServer:
    """Start `sim` on host:port in a daemon thread and wait until it accepts connections.

    `http` and `loop` are uvicorn's: "auto" picks httptools (a dependency: about half the
    CPU per request of h11, benchmarks/RESULTS.md) and uvloop when installed. No
    proxy-header middleware: the sandbox is reached directly on loopback."""
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError("the sandbox serves on loopback only")
    port = port or free_port(host)
    config = uvicorn.Config(asgi_app(sim, timeout_hold_seconds), host=host, port=port, log_level="warning",
                            lifespan="off", access_log=False, http=http, loop=loop,
                            proxy_headers=False)
    return start_in_thread(config, f"sandbox {sim.name}")
