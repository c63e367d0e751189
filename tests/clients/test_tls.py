"""The shared TLS context: built once, and still following SSL_CERT_FILE."""

from __future__ import annotations

import http.server
import shutil
import ssl
import threading
from pathlib import Path

import httpx
import pytest

from reconcile.clients.tls import verified_context
from tests.reliability.wire import self_signed


def test_every_client_gets_the_same_context():
    assert verified_context() is verified_context()


class _Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_a_ca_named_by_ssl_cert_file_is_trusted_and_the_default_bundle_does_not_trust_it(tmp_path: Path, monkeypatch):
    tls = self_signed(tmp_path)
    assert tls is not None
    server = http.server.HTTPServer(("127.0.0.1", 0), _Ok)
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"https://127.0.0.1:{server.server_address[1]}/"
    try:
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        monkeypatch.delenv("SSL_CERT_DIR", raising=False)
        with httpx.Client(verify=verified_context()) as client, pytest.raises(httpx.ConnectError):
            client.get(url)
        monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "cert.pem"))
        trusting = verified_context()
        with httpx.Client(verify=trusting) as client:
            assert client.get(url).text == "ok"
        assert isinstance(trusting, ssl.SSLContext)
    finally:
        server.shutdown()
        server.server_close()
