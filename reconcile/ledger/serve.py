"""Running the ledger app under uvicorn: in the foreground (`reconcile ledger serve`) or
in a background thread (tests, benchmarks).

TLS is terminated by a reverse proxy in front (README "Ketch webhook ledger"): the app
listens on `ledger.host:ledger.port` (loopback by default) over plain HTTP, reads no
proxy headers, and keeps uvicorn's access log off (the app logs its own, without
identities).
"""

from __future__ import annotations

from typing import Any

import uvicorn

from reconcile.ledger.connections import ConnectionLimits, InFlightLimit, guarded_protocol
from reconcile.serving import RunningServer, free_port
from reconcile.serving import start_in_thread as start_server


def uvicorn_config(app: Any, host: str, port: int, limits: ConnectionLimits | None = None) -> uvicorn.Config:
    """uvicorn for the ledger: its h11 protocol with a request timeout and a per-client
    connection budget, requests in flight bounded in the app (ledger/connections.py), a
    5 s keep-alive, headers at most 16 KiB."""
    limits = limits or ConnectionLimits()
    return uvicorn.Config(InFlightLimit(app, limits.max_requests_in_flight), host=host, port=port,
                          http=guarded_protocol(limits), log_level="warning", access_log=False, lifespan="off",
                          proxy_headers=False, server_header=False, timeout_keep_alive=5,
                          h11_max_incomplete_event_size=16 * 1024)


def run_forever(app: Any, host: str, port: int, limits: ConnectionLimits | None = None) -> None:
    uvicorn.Server(uvicorn_config(app, host, port, limits)).run()


def start_in_thread(app: Any, host: str = "127.0.0.1", port: int = 0,
                    limits: ConnectionLimits | None = None) -> RunningServer:
    """Serve `app` on `host` in a daemon thread; returns once it accepts connections."""
    return start_server(uvicorn_config(app, host, port or free_port(host), limits), "the ledger")


def ledger_limits(cfg: Any) -> ConnectionLimits:
    """The `[ledger]` section's connection limits."""
    lc = cfg.ledger
    return ConnectionLimits(lc.request_timeout_seconds, lc.max_connections_per_client, lc.max_requests_in_flight)
