"""An ASGI app under uvicorn in a background thread (the sandbox simulators, the webhook
ledger in tests and benchmarks): started, waited for until it accepts connections, stopped."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import uvicorn


@dataclass
class RunningServer:
    url: str
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def start_in_thread(config: uvicorn.Config, name: str) -> RunningServer:
    """Run `config`'s app in a daemon thread; returns once it accepts connections."""
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"{name}-{config.port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"{name} did not start on {config.host}:{config.port}")
        time.sleep(0.01)
    return RunningServer(f"http://{config.host}:{config.port}", server, thread)
