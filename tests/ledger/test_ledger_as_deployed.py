"""The ledger as it is deployed: `reconcile ledger serve` and `reconcile run` in their own
processes, one job file and one SQLite state database, the simulators and a callback
receiver on loopback. Ketch's webhook is set up with a custom header carrying the bare
token, and sends a DeleteRequest naming its subject only by `subject.email`, for an
address two Braze profiles share."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx

from reconcile.config import load_config
from reconcile.sandbox.ketch_webhooks import KetchWebhooks
from reconcile.serving import free_port
from tests.ledger.conftest import Receiver
from reconcile.ledger.serve import start_in_thread

TOKEN = "deployed-hook-secret-31c9"


def _env() -> dict[str, str]:
    return {**os.environ, "BRAZE_API_KEY": "test-braze-key-4711", "KETCH_HOOK": TOKEN, "PYTHONUNBUFFERED": "1"}


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"ledger serve exited {proc.returncode}: {proc.communicate()}")
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("ledger serve never became healthy")


def _ledger_job(world, tmp_path, port: int, ledger: str):
    """The job file of a ledger on `port` with the KETCH_HOOK token and the `ledger` lines
    (more sections may follow them), with empty identity lists; (path, loaded config)."""
    cfg_path = tmp_path / "job.toml"
    cfg_path.write_text(world.toml(extra=f'\n[ledger]\nenabled = true\nport = {port}\n'
                                         f'bearer_token_env = "KETCH_HOOK"\n{ledger}'))
    for name in ("universe.csv", "deletions.csv"):
        (tmp_path / name).write_text("identity\n")
    return cfg_path, load_config(cfg_path, _env())


def test_a_custom_header_and_an_email_only_delete_request_end_to_end(world, tmp_path):
    port = free_port()
    cfg_path, cfg = _ledger_job(world, tmp_path, port, 'auth_header = "X-Ketch-Token"\nauth_scheme = ""\n'
                                'callback_backoff_seconds = 0\ncallback_loopback_for_tests = true\n'
                                'callback_hosts = ["127.0.0.1"]\n[guards]\nmax_deletion_fraction = 1.0\n')
    world.seed(cfg, subjects=30, drift=0.0)
    (tmp_path / "deletions.csv").write_text("identity,requested_at\n")
    email = "family.shared@example.com"
    world.braze.add_profile(external_id="fam-1", email=email, email_subscribe="subscribed")
    world.braze.add_profile(external_id=None, email=email.upper(), email_subscribe="subscribed")
    receiver = Receiver()
    receiver.running = start_in_thread(receiver)
    server = subprocess.Popen([sys.executable, "-m", "reconcile", "--config", str(cfg_path), "ledger", "serve"],
                              env=_env(), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_healthy(base, server)
        hooks = KetchWebhooks(base + cfg.ledger.path, TOKEN, auth_header="X-Ketch-Token", auth_value="{token}",
                              delete_identity="email_only", timestamps="none")
        assert KetchWebhooks(base + cfg.ledger.path, TOKEN).send(
            hooks.dsr("DeleteRequest", email=email)).status_code == 401  # the token in the wrong header
        doc = hooks.dsr("DeleteRequest", email=email, callbacks=[{"url": receiver.url, "headers": {"A": "b"}}])
        reply = hooks.send(doc)
        assert reply.status_code == 200, reply.text
        assert isinstance(reply.json()["response"]["expectedCompletionTimestamp"], int)
        run = subprocess.run([sys.executable, "-m", "reconcile", "--config", str(cfg_path), "run"], env=_env(),
                             cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, (run.stdout, run.stderr)
    finally:
        server.terminate()
        server.communicate(timeout=30)
        receiver.running.stop()
    assert world.braze.profiles_by_email(email) == []
    deletes = [c["body"] for c in world.braze.calls if c["path"] == "/users/delete"]
    assert sum(len(b.get("braze_ids", [])) for b in deletes) == 2
    (got,) = receiver.received
    assert got["body"]["event"] == {**got["body"]["event"], "status": "completed", "reason": "executed"}
    assert got["body"]["metadata"]["uid"] == doc["metadata"]["uid"]


def _slow_client(source: str, port: int) -> socket.socket:
    """A connection from `source` that starts a request and never finishes its headers."""
    s = socket.socket()
    s.bind((source, 0))
    s.settimeout(5)
    s.connect(("127.0.0.1", port))
    try:
        s.sendall(b"POST /ketch/events HTTP/1.1\r\nHost: ledger\r\n")
    except OSError:
        pass  # closed at once: the client was over its budget
    return s


def _closed(s: socket.socket) -> bool:
    """Whether the server closed `s` (a non-blocking peek: an open, silent one would block)."""
    s.setblocking(False)
    try:
        return s.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def test_three_hundred_slow_clients_leave_genuine_messages_answered(world, tmp_path):
    """`ledger serve` as deployed, under 300 half-open connections (150 from one address,
    150 from as many addresses): a genuine DeleteRequest is answered 200 while they hang;
    the one address is held to its connection budget at once; every slow connection is
    closed after request_timeout_seconds."""
    port = free_port()
    cfg_path, cfg = _ledger_job(world, tmp_path, port, "request_timeout_seconds = 8\nmax_connections_per_client = 8\n")
    server = subprocess.Popen([sys.executable, "-m", "reconcile", "--config", str(cfg_path), "ledger", "serve"],
                              env=_env(), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    slow: list[socket.socket] = []
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_healthy(base, server)
        started = time.monotonic()
        greedy = [_slow_client("127.0.0.2", port) for _ in range(150)]
        spread = [_slow_client(f"127.0.1.{i}", port) for i in range(1, 151)]
        slow = greedy + spread
        time.sleep(0.5)
        assert sum(_closed(s) for s in greedy) == 150 - 8  # the budget: 8 kept, the rest closed at once
        assert not any(_closed(s) for s in spread)
        hooks = KetchWebhooks(base + cfg.ledger.path, TOKEN)
        for n in range(5):
            reply = hooks.send(hooks.dsr("DeleteRequest", email=f"genuine{n}@example.com"))
            assert reply.status_code == 200, reply.text
        assert time.monotonic() - started < 8, "answered while the slow clients hang"
        time.sleep(max(0.0, started + 9.5 - time.monotonic()))
        assert all(_closed(s) for s in slow), "every slow connection is closed after the request timeout"
        assert hooks.send(hooks.dsr("DeleteRequest", email="after@example.com")).status_code == 200
    finally:
        for s in slow:
            s.close()
        server.terminate()
        _, err = server.communicate(timeout=30)
    assert "no complete request within 8.0s" in err and "ledger.max_connections_per_client = 8" in err
    assert err.count("connection(s) refused") == 1  # one line for the 142, not one each
