"""Running the ledger app under uvicorn: in the foreground (`reconcile ledger serve`) or
in a background thread (tests, benchmarks).

TLS is terminated by a reverse proxy in front (README "Ketch webhook ledger"): the app
listens on `ledger.host:ledger.port` (loopback by default) over plain HTTP, reads no
proxy headers, and keeps uvicorn's access log off (the app logs its own, without
identities).
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import uvicorn


def uvicorn_config(app: Any, host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="off",
                          proxy_headers=False, server_header=False, timeout_keep_alive=5,
                          limit_concurrency=256, h11_max_incomplete_event_size=16 * 1024)


def run_forever(app: Any, host: str, port: int) -> None:
    uvicorn.Server(uvicorn_config(app, host, port)).run()


@dataclass
class Running:
    url: str
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def __enter__(self) -> Running:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def start_in_thread(app: Any, host: str = "127.0.0.1", port: int = 0) -> Running:
    """Serve `app` on loopback in a daemon thread; returns once it accepts connections."""
    if not port:
        with socket.socket() as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn_config(app, host, port))
    thread = threading.Thread(target=server.run, name=f"ledger-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"the ledger did not start on {host}:{port}")
        time.sleep(0.01)
    return Running(f"http://{host}:{port}", server, thread)
