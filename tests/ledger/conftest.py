"""A sandbox world plus the ledger served on loopback, and a callback receiver."""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import httpx
import pytest

from reconcile.config import Config
from reconcile.ledger.app import create_app
from reconcile.ledger.serve import start_in_thread
from reconcile.serving import RunningServer
from reconcile.store.ledger import LedgerStore
from reconcile.pipeline.session import open_session, utc_now
from reconcile.store.store import Store
from tests.pipeline.conftest import KEY, World, world  # noqa: F401  (the world fixture, re-exported)

TOKEN = "ledger-test-token-8d1f"
ENV = {"BRAZE_API_KEY": KEY, "KETCH_WEBHOOK_TOKEN": TOKEN}
LEDGER = {"enabled": True, "bearer_token_env": "KETCH_WEBHOOK_TOKEN", "max_body_bytes": 4096,
          "callback_backoff_seconds": 0.0, "callback_retry_seconds": 0.0, "callback_loopback_for_tests": True,
          "callback_hosts": ["example.com", "ketch.com"]}


def message(kind: str, request: dict[str, Any], uid: str | None = None) -> dict[str, Any]:
    version = {"ConsentRequest": "consent/v1", "SubscriptionTopicRequest": "subscription/v1",
               "SubscriptionControlRequest": "subscription/v1"}.get(kind, "dsr/v1")
    return {"apiVersion": version, "kind": kind, "metadata": {"uid": uid or str(uuid.uuid4()), "tenant": "acme"},
            "request": request}


def identities(email: str) -> list[dict[str, str]]:
    return [{"identitySpace": "email", "identityFormat": "raw", "identityValue": email}]


def now_ts() -> int:
    return int(datetime.now(timezone.utc).timestamp())


def consent(email: str, **purposes: str) -> dict[str, Any]:
    return message("ConsentRequest", {"property": "web", "environment": "production", "regulation": "gdpr",
                                      "jurisdiction": "default", "identities": identities(email),
                                      "purposes": purposes or {"email_marketing": "denied"},
                                      "legalBasis": {"email_marketing": "consent_optin"}, "collectedAt": now_ts()})


def delete(email: str, callbacks: list[dict[str, Any]] | None = None, uid: str | None = None) -> dict[str, Any]:
    return message("DeleteRequest", {
        "property": "web", "environment": "production", "regulation": "gdpr", "jurisdiction": "eugdpr",
        "identities": identities(email), "callbacks": callbacks or [], "subject": {"email": email, "firstName": "T"},
        "submittedTimestamp": now_ts() - 3600, "dueTimestamp": now_ts() + 30 * 86400}, uid)


@dataclass
class Receiver:
    """A callback receiver on loopback: records every POST, answers the first `fail_first`
    of them 500 and the others `answer` (a 3xx points elsewhere)."""

    fail_first: int = 0
    answer: int = 200
    received: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    running: RunningServer | None = None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        with self.lock:
            self.received.append({"path": scope["path"], "body": json.loads(body or b"null"),
                                  "headers": {k.decode().lower(): v.decode() for k, v in scope["headers"]}})
            status = 500 if len(self.received) <= self.fail_first else self.answer
        headers = [(b"content-length", b"0"), (b"location", b"http://127.0.0.1:9/elsewhere")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    @property
    def url(self) -> str:
        assert self.running is not None
        return self.running.url + "/callback"


@dataclass
class LedgerWorld:
    w: World
    cfg: Config
    store: Store
    server: RunningServer
    receivers: list[Receiver] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.server.url + self.cfg.ledger.path

    def post(self, doc: Any = None, *, raw: bytes | None = None, token: str | None = TOKEN,
             headers: dict[str, str] | None = None) -> httpx.Response:
        sent = {"Content-Type": "application/json", **(headers or {})}
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        content = raw if raw is not None else json.dumps(doc).encode()
        return httpx.post(self.url, content=content, headers=sent, timeout=10)

    @property
    def ledger(self) -> LedgerStore:
        return LedgerStore.of(self.store)

    def receiver(self, fail_first: int = 0, answer: int = 200) -> Receiver:
        r = Receiver(fail_first, answer)
        r.running = start_in_thread(r)
        self.receivers.append(r)
        return r

    def runtime(self, cfg: Config | None = None, clock: Any = utc_now):
        return open_session(cfg or self.cfg, ENV, clock=clock, sleep=lambda s: None)


def ledger_config(w: World, **sections: dict[str, Any]) -> Config:
    ledger = {**LEDGER, **sections.pop("ledger", {})}
    return w.config(ledger=ledger, **sections)


@pytest.fixture
def lw(world: World) -> LedgerWorld:  # noqa: F811
    cfg = ledger_config(world)
    store = Store.open(cfg.state.url)
    server = start_in_thread(create_app(cfg, store, environ=ENV))
    out = LedgerWorld(world, cfg, store, server)
    try:
        yield out
    finally:
        server.stop()
        for r in out.receivers:
            r.running.stop()
        store.close()
