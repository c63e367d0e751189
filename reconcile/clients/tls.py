"""One verified TLS context per process, shared by every HTTPS client of the job.

    verify=verified_context()

Building a context loads the CA bundle (about 0.1 s each time); a daemon builds its
clients again on every fire, so the context is built once and shared (an `ssl.SSLContext`
is safe to share between clients and threads). It is httpx's own default: certifi's
bundle, or `SSL_CERT_FILE` / `SSL_CERT_DIR` when set, read when a context is first asked
for under those values.
"""

from __future__ import annotations

import os
import ssl
from functools import lru_cache

import httpx


def verified_context() -> ssl.SSLContext:
    """The process's verified client context for the current `SSL_CERT_FILE`/`SSL_CERT_DIR`."""
    return _context(os.environ.get("SSL_CERT_FILE") or None, os.environ.get("SSL_CERT_DIR") or None)


@lru_cache(maxsize=4)
def _context(cert_file: str | None, cert_dir: str | None) -> ssl.SSLContext:
    return httpx.create_ssl_context()  # reads the same two variables
