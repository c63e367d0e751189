"""Callback URLs come from webhooks: https only (plain http to loopback only with the
explicit test flag), the host allow-list required, private, link-local and metadata
addresses refused after DNS resolution, and only the Authorization header forwarded.
Through the ledger over loopback HTTP and `run`, as deployed."""

from __future__ import annotations

import socket

from reconcile.config import Config
from reconcile.ledger.callbacks import address_problem, url_problem
from reconcile.pipeline.job import run_job
from tests.ledger.conftest import delete, ledger_config
from tests.ledger.test_erasure_loop import seeded

HOSTILE = {"Authorization": "Bearer ketch-cb", "Cookie": "session=admin", "X-Internal-Admin": "1"}


def test_only_authorization_reaches_the_callback(lw):
    email = seeded(lw)[2]
    receiver = lw.receiver()
    assert lw.post(delete(email, [{"url": receiver.url, "headers": HOSTILE}])).status_code == 200
    with lw.runtime() as rt:
        run_job(rt)
    (got,) = receiver.received
    assert got["headers"]["authorization"] == "Bearer ketch-cb"
    assert "cookie" not in got["headers"] and "x-internal-admin" not in got["headers"]


def test_loopback_http_needs_the_test_flag_and_private_addresses_are_refused_after_resolution(lw, monkeypatch):
    email = seeded(lw)[4]
    receiver = lw.receiver()
    cfg = ledger_config(lw.w, ledger={"callback_loopback_for_tests": False, "callback_hosts": ["example.com"]})
    real = socket.getaddrinfo
    fake = {"internal.example.com": "10.1.2.3", "meta.example.com": "169.254.169.254"}

    def resolver(host, port, *args, **kwargs):
        if host in fake:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (fake[host], port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    callbacks = [{"url": receiver.url, "headers": {}},
                 {"url": "https://internal.example.com/cb", "headers": {}},
                 {"url": "https://meta.example.com/cb", "headers": {}},
                 {"url": "https://elsewhere.org/cb", "headers": {}}]
    assert lw.post(delete(email, callbacks)).status_code == 200
    with lw.runtime(cfg) as rt:
        run_job(rt)
    assert receiver.received == []  # the loopback receiver was never contacted
    errors = {cb["url"]: cb["last_error"] or "" for cb in lw.ledger.callbacks()}
    assert "plain http" in errors[receiver.url]
    assert "private, link-local or reserved" in errors["https://internal.example.com/cb"]
    assert "169.254.169.254" in errors["https://meta.example.com/cb"]
    assert "not in ledger.callback_hosts" in errors["https://elsewhere.org/cb"]


def test_the_allow_list_is_required_outside_the_sandbox(world):
    cfg: Config = ledger_config(world, ledger={"callback_loopback_for_tests": False, "callback_hosts": []})
    assert "callback_hosts is empty" in url_problem("https://dsr.ketch.com/cb", cfg)
    assert "internal or metadata" in url_problem("https://metadata.google.internal/x", cfg)
    assert "internal or metadata" in url_problem("https://kubernetes.default.svc/x", cfg)
    assert address_problem("::ffff:10.0.0.1", cfg) and address_problem("127.0.0.1", cfg)
    assert address_problem("8.8.8.8", cfg) is None
