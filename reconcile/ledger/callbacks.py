"""DeleteStatusEvents to a request's callback URLs.

Callback URLs and headers arrive in webhooks, so they are untrusted:

* https only; plain http only to a loopback address with `ledger.callback_loopback_for_tests`
  (the tests' receivers) or with the sandbox enabled;
* only to hosts under `ledger.callback_hosts`, which is required outside the sandbox (an
  empty list refuses every callback, with that reason);
* the host is resolved once and every address it has must be public: loopback (without the
  test flag), private, link-local (169.254.0.0/16, where cloud metadata answers), shared,
  reserved, multicast and unspecified addresses are refused, and so are the metadata names
  (`metadata.google.internal`, ...). The request goes to the resolved address (TLS still
  checks the certificate against the host name), so a second DNS answer cannot redirect it;
* only the headers named in `ledger.callback_headers` (Authorization) are forwarded;
* no redirects followed, every try bounded in time
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
import socket
import time
from datetime import datetime, timedelta
from typing import Any, Callable
from urllib.parse import urlsplit

import httpx

from reconcile.clients.tls import verified_context
from reconcile.config import Config
from reconcile.config.parsing import is_loopback
from reconcile.store.ledger import LedgerStore

log = logging.getLogger(__name__)
DROPPED_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "content-type", "expect"}


METADATA_HOSTS = frozenset({"metadata", "metadata.google.internal", "metadata.goog", "instance-data",
                            "instance-data.ec2.internal"})


def address_problem(address: str, cfg: Config) -> str | None:
    """Why a callback may not go to this resolved address, or None."""
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return f"resolved to an invalid address {address!r}"
    if ip.is_loopback:
        return None if cfg.ledger.callback_loopback_for_tests or cfg.sandbox.enabled else \
            f"resolves to a loopback address ({ip})"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return address_problem(str(ip.ipv4_mapped), cfg)
    if ip.is_private or ip.is_link_local or ip.is_reserved or ip.is_multicast or ip.is_unspecified \
            or not ip.is_global:
        return f"resolves to a private, link-local or reserved address ({ip}); callbacks go to public hosts only"
    return None


def resolve(host: str, port: int, cfg: Config) -> tuple[str | None, str | None]:
    """(the address to connect to, why not): every address the host resolves to must be allowed."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        return None, f"cannot resolve {host}: {exc}"
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    for address in addresses:
        problem = address_problem(address, cfg)
        if problem:
            return None, problem
    return (addresses[0], None) if addresses else (None, f"{host} has no address")


def url_problem(url: str, cfg: Config) -> str | None:
    """Why a callback URL is refused (before any DNS look-up), or None."""
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
    test_loopback = cfg.ledger.callback_loopback_for_tests and is_loopback(host)
    if parts.scheme == "http" and not (test_loopback or cfg.sandbox.enabled):
        return "plain http is refused (Ketch's callbacks are https)"
    if host.rstrip(".") in METADATA_HOSTS or host.endswith(".internal") or host.endswith(".svc") \
            or host.endswith(".cluster.local"):
        return f"host {host} is an internal or metadata name"
    allowed = cfg.ledger.callback_hosts
    if test_loopback or cfg.sandbox.enabled and not allowed:
        return None
    if not allowed:
        return "ledger.callback_hosts is empty: set it to Ketch's callback hosts (e.g. [\"dsr.ketch.com\"])"
    if not any(host == h or host.endswith("." + h) for h in allowed):
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
    parts = urlsplit(url)
    host = parts.hostname or ""
    address, problem = resolve(host, parts.port or (443 if parts.scheme == "https" else 80), cfg)
    if problem or address is None:
        return problem or f"cannot resolve {host}"
    forwarded = set(cfg.ledger.callback_headers) - DROPPED_HEADERS
    sent = {k: v for k, v in headers.items() if k.lower() in forwarded}
    sent.update({"Content-Type": "application/json", "Accept": "application/json",
                 "Host": parts.netloc.rpartition("@")[2]})
    target = httpx.URL(url).copy_with(host=address)  # connect to the address checked, not a second DNS answer
    limit, deadline = cfg.ledger.callback_max_body_bytes, time.monotonic() + cfg.ledger.callback_timeout_seconds
    try:
        with client.stream("POST", target, content=json.dumps(event).encode(), headers=sent,
                           extensions={"sni_hostname": host}) as resp:
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
    client = client or httpx.Client(follow_redirects=False, timeout=httpx.Timeout(lc.callback_timeout_seconds),
                                    verify=verified_context())
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
