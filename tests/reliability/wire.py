"""Loopback HTTP servers for the reliability tests: canned raw answers, a trickling
answer, and a self-signed TLS context. All bind 127.0.0.1 on a free port."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from loopback_socket import SocketServer, read_request


def http_answer(status: int, body: bytes = b"", headers: dict[str, str] | None = None, *,
                length: bool = True) -> bytes:
    lines = [f"HTTP/1.1 {status} X"] + [f"{k}: {v}" for k, v in (headers or {}).items()]
    if length and "Transfer-Encoding" not in (headers or {}):
        lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def chunked(body: bytes, size: int = 1000) -> bytes:
    parts = [body[i:i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


class Server(SocketServer):
    """Answers each connection's one request with the next canned answer: raw bytes, None
    (close without answering), or a callable given the socket (it writes what it likes)."""

    def __init__(self, answers: list[Any], *, tls: ssl.SSLContext | None = None):
        self.answers: list[Any] = list(answers)
        self.requests: list[bytes] = []
        super().__init__(tls=tls)

    def _serve(self, conn: socket.socket) -> None:
        try:
            if self.tls:
                conn = self.tls.wrap_socket(conn, server_side=True)
            with conn:
                conn.settimeout(5)
                request = read_request(conn)
                if not request:
                    return
                self.requests.append(request)
                answer = self.answers.pop(0) if self.answers else None
                if callable(answer):
                    answer(conn, self)
                elif answer is not None:
                    conn.sendall(answer)
        except OSError:
            return


def trickle(size: int = 200, gap: float = 0.05):
    """An answer promising `size` bytes, then sending one byte per `gap` seconds."""
    def send(conn: socket.socket, server: Server) -> None:
        conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n".encode())
        for _ in range(size):
            if server.stopped:
                return
            conn.sendall(b" ")
            time.sleep(gap)
    return send


def endless_chunks(piece: bytes = b" " * 4096):
    """A chunked answer that never ends (until the client goes away)."""
    def send(conn: socket.socket, server: Server) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        while not server.stopped:
            conn.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
    return send


def self_signed(tmp_path: Path) -> ssl.SSLContext | None:
    if shutil.which("openssl") is None:
        return None
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    return tls


def _read_response(sock: socket.socket, buffered: bytes = b"") -> tuple[bytes, bytes]:
    """One whole HTTP/1.1 answer with a Content-Length (the sandbox always sends one), and
    whatever came after it."""
    data = buffered
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("upstream closed")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("upstream closed")
        rest += chunk
    return head + b"\r\n\r\n" + rest[:length], rest[length:]


class ResetProxy(SocketServer):
    """A loopback HTTP proxy in front of `upstream` (http://127.0.0.1:port). The next
    `resets` requests whose path matches `path_regex` are forwarded and answered upstream
    (the request is handled), then the client's connection is reset instead of answered."""

    def __init__(self, upstream: str, path_regex: str = r".", resets: int = 0):
        import re

        host, port = upstream.removeprefix("http://").split(":")
        self.upstream = (host, int(port))
        self.pattern, self.resets, self.reset_paths = re.compile(path_regex), resets, []
        self.lock = threading.Lock()
        super().__init__()

    def _serve(self, conn: socket.socket) -> None:
        import struct

        upstream = socket.create_connection(self.upstream, timeout=60)
        buffered = b""
        try:
            conn.settimeout(60)
            while not self.stopped:
                request = read_request(conn)
                if not request:
                    return
                path = request.split(b" ", 2)[1].decode("latin-1") if b" " in request else ""
                upstream.sendall(request)
                answer, buffered = _read_response(upstream, buffered)
                with self.lock:
                    reset = self.resets > 0 and bool(self.pattern.search(path))
                    if reset:
                        self.resets -= 1
                        self.reset_paths.append(path)
                if reset:
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return
                conn.sendall(answer)
        except OSError:
            return
        finally:
            conn.close()
            upstream.close()
