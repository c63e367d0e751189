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

from reconcile.serving import RunningServer, free_port
from reconcile.serving import start_in_thread as start_server


def uvicorn_config(app: Any, host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="off",
                          proxy_headers=False, server_header=False, timeout_keep_alive=5,
                          limit_concurrency=256, h11_max_incomplete_event_size=16 * 1024)


def run_forever(app: Any, host: str, port: int) -> None:
    uvicorn.Server(uvicorn_config(app, host, port)).run()


def start_in_thread(app: Any, host: str = "127.0.0.1", port: int = 0) -> RunningServer:
    """Serve `app` on loopback in a daemon thread; returns once it accepts connections."""
    return start_server(uvicorn_config(app, host, port or free_port(host)), "the ledger")
