"""DeleteStatusEvents to a request's callback URLs.

Callback URLs and headers arrive in webhooks, so they are untrusted: https only (plain
http only to a loopback host, or anywhere when the sandbox is enabled), optionally only to
`ledger.callback_hosts`, no redirects followed, every try bounded in time
(`callback_timeout_seconds`) and in the answer read (`callback_max_body_bytes`).
A failed callback is tried `callback_tries_per_run` times in a run (backoff
`callback_backoff_seconds`, doubling), then again by later runs after
`callback_retry_seconds` (doubling per attempt), and given up after
`callback_max_attempts`; its headers are forgotten once delivered or given up.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import time
from datetime import datetime, timedelta
from typing import Any, Callable
from urllib.parse import urlsplit

import httpx

from reconcile.config import Config
from reconcile.store.ledger import LedgerStore

log = logging.getLogger(__name__)
DROPPED_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "content-type", "expect"}


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def url_problem(url: str, cfg: Config) -> str | None:
    """Why a callback URL is refused, or None."""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        return "not a valid URL"
    if parts.scheme not in ("http", "https") or not host:
        return "not an http(s) URL"
    if parts.username or parts.password:
        return "credentials in the URL"
    if parts.scheme == "http" and not (_loopback(host) or cfg.sandbox.enabled):
        return "plain http is refused outside loopback and the sandbox; Ketch's callbacks are https"
    allowed = cfg.ledger.callback_hosts
    if allowed and not _loopback(host) and not any(host == h or host.endswith("." + h) for h in allowed):
        return f"host {host} is not in ledger.callback_hosts"
    return None


def host_of(url: str) -> str:
    try:
        return urlsplit(url).hostname or "?"
    except ValueError:
        return "?"


def post_event(client: httpx.Client, url: str, headers: dict[str, str], event: dict[str, Any],
               cfg: Config) -> str | None:
    """One try: None when the receiver answered 2xx, else why not (no header values)."""
    problem = url_problem(url, cfg)
    if problem:
        return problem
    sent = {k: v for k, v in headers.items() if k.lower() not in DROPPED_HEADERS}
    sent.update({"Content-Type": "application/json", "Accept": "application/json"})
    limit, deadline = cfg.ledger.callback_max_body_bytes, time.monotonic() + cfg.ledger.callback_timeout_seconds
    try:
        with client.stream("POST", url, content=json.dumps(event).encode(), headers=sent) as resp:
            size = 0
            for chunk in resp.iter_raw():
                size += len(chunk)
                if size > limit or time.monotonic() > deadline:
                    break
            status = resp.status_code
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {str(exc)[:200] or 'no answer'}"
    if 200 <= status < 300:
        return None
    if 300 <= status < 400:
        return f"HTTP {status}: redirects are not followed"
    return f"HTTP {status}"


def deliver_due(ledger: LedgerStore, cfg: Config, now: datetime, sleep: Callable[[float], None],
                client: httpx.Client | None = None) -> list[dict[str, Any]]:
    """Send every callback that is due; returns the ones that failed this run
    (request identity, host, attempts, error, next attempt or None when given up)."""
    lc = cfg.ledger
    due = ledger.due_callbacks(now)
    if not due:
        return []
    own = client is None
    client = client or httpx.Client(follow_redirects=False, timeout=httpx.Timeout(lc.callback_timeout_seconds))
    failed = []
    try:
        for cb in due:
            attempts, error = cb["attempts"], None
            for i in range(lc.callback_tries_per_run):
                if i:
                    sleep(lc.callback_backoff_seconds * 2 ** (i - 1))
                attempts += 1
                error = post_event(client, cb["url"], cb["headers"], cb["event"], cfg)
                if error is None:
                    break
            if error is None:
                ledger.callback_delivered(cb["id"], attempts, now)
                ledger.note(cb["request_uid"], "completed", f"DeleteStatusEvent delivered to {host_of(cb['url'])} "
                            f"(attempt {attempts})", now)
                continue
            give_up = attempts >= lc.callback_max_attempts
            next_at = None if give_up else now + timedelta(seconds=lc.callback_retry_seconds * 2 ** max(
                0, attempts // lc.callback_tries_per_run - 1))
            ledger.callback_failed(cb["id"], attempts, error, next_at)
            ledger.note(cb["request_uid"], "completed", f"DeleteStatusEvent to {host_of(cb['url'])} failed "
                        f"(attempt {attempts}): {error}"
                        + ("; given up" if give_up else f"; retried after {next_at}"), now)
            failed.append({"identity": cb.get("identity") or "", "host": host_of(cb["url"]), "attempts": attempts,
                           "error": error, "next_attempt_at": next_at, "request_uid": cb["request_uid"]})
    finally:
        if own:
            client.close()
    if failed:
        log.warning("%d DeleteStatusEvent callback(s) failed; retried by later runs", len(failed))
    return failed
