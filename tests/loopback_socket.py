"""Raw TCP servers on 127.0.0.1 for wire-level tests: a listener thread hands each accepted
connection to `_accepted` (by default its own thread running `_serve`); subclasses set their
state before calling `super().__init__()` (the listener starts at once) and implement
`_serve`. Used as context managers: leaving stops the listener and closes the socket."""

from __future__ import annotations

import socket
import ssl
import threading
from typing import Any


def read_request(conn: socket.socket) -> bytes:
    """One HTTP request (head and Content-Length body) from `conn`; b"" when it closes first."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


class SocketServer:
    def __init__(self, *, tls: ssl.SSLContext | Any = None):
        self.tls = tls
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.sock.getsockname()[1]}"
        self.stopped = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            self._accepted(conn)

    def _accepted(self, conn: socket.socket) -> None:
        threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stopped = True
        self.thread.join(timeout=5)
        self.sock.close()
