"""The scheduler daemon's health endpoints (`reconcile scheduler --health-port PORT`).

    GET /healthz   200 while the process answers (liveness): a run of hours in the main
                   thread still answers, so an orchestrator never kills a run mid-apply
    GET /readyz    200 while the scheduler thread runs with its jobs loaded and no stop
                   was asked; 503 otherwise, with the reason

Both answer JSON: the daemon's state, each job's next fire, the job running now and the
last fire's outcome per job. Nothing else is served (404), nothing is written, and the
bodies carry no identity, URL or secret. The server is the standard library's threaded
HTTP server in a daemon thread: two read-only routes need no framework, and the daemon
must not depend on the `server` extra the ledger uses.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

log = logging.getLogger("reconcile.scheduling")

Snapshot = Callable[[], dict[str, Any]]


class HealthServer:
    """Serves `/healthz` and `/readyz` from `snapshot()` (see the module doc)."""

    def __init__(self, host: str, port: int, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        handler = _handler(snapshot)
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="health", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host if isinstance(host, str) else host.decode()}:{port}"

    def start(self) -> "HealthServer":
        self._thread.start()
        log.info("health endpoints on %s (/healthz, /readyz)", self.url)
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)


def _handler(snapshot: Snapshot) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "reconcile-scheduler"
        sys_version = ""

        def do_GET(self) -> None:  # noqa: N802 - the standard library's name
            path = self.path.split("?", 1)[0]
            if path not in ("/healthz", "/readyz"):
                self._send(404, {"error": f"not found: use /healthz or /readyz, not {path[:100]!r}"})
                return
            state = snapshot()
            if path == "/healthz":
                self._send(200, {"status": "alive", **state})
                return
            ready = state.get("reason") is None
            self._send(200 if ready else 503, {"status": "ready" if ready else "not ready", **state})

        def _send(self, status: int, body: dict[str, Any]) -> None:
            raw = json.dumps(body, default=_iso).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the standard library's name
            log.debug("health: " + format, *args)

    return Handler


def _iso(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat()
    raise TypeError(f"not JSON: {type(value).__name__}")
