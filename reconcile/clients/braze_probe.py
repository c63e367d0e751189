"""Which Braze endpoints the job's REST API key may call, found with harmless requests.

Braze checks the key (401) and the endpoint's permission (403 "Access Denied") before it
looks at the request, so a request that is then refused as invalid (400) proves the
permission without any effect. Each probe is one such request:

* writes (`/users/track`, `/subscription/status/set`, `/users/delete`, `/users/alias/new`,
  `/email/status`, `/email/blocklist`, `/users/export/segment`) get an empty body `{}`,
  which names no user, address or segment and is refused with 400;
* reads ask about an identity that does not exist (`reconcile-doctor-<random hex>`,
  `reconcile-doctor@invalid.example`) in a one-day window with `limit=1`.

Answers: 2xx, 400, or 404 "user not found" -> granted; 403 -> not granted; anything else
(other 404s, 429, 5xx) -> unknown with the sanitized message. After a 401 (the key itself
is refused) or when Braze cannot be reached, the remaining endpoints are not probed.
Requests go through `BrazeClient.request`, so they
are paced like the job's own and the key is scrubbed from every message.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, Callable

from reconcile.clients.braze import BrazeClient
from reconcile.clients.braze_results import is_user_not_found
from reconcile.config import Config
from reconcile.errors import ApiError, RateLimited

GRANTED = "granted"
NOT_GRANTED = "not granted"
UNKNOWN = "unknown"
PROBE_EMAIL = "reconcile-doctor@invalid.example"
PLACEHOLDER_GROUP = "reconcile-doctor-no-group"


@dataclass(frozen=True)
class Permission:
    """One endpoint the job may call and the key permission it needs."""

    endpoint: str
    method: str
    permission: str
    required: bool
    lost_without: str


PERMISSIONS: tuple[Permission, ...] = (
    Permission("/users/track", "POST", "users.track", True,
               "global opt-outs by external_id and opt-outs carried on alias profiles are not written"),
    Permission("/subscription/status/get", "GET", "subscription.status.get", True,
               "subscription-group state cannot be read, so group drift cannot be found"),
    Permission("/subscription/status/set", "POST", "subscription.status.set", True,
               "subscription-group opt-outs cannot be corrected"),
    Permission("/users/delete", "POST", "users.delete", True,
               "deletion requests and resurrected profiles cannot be corrected"),
    Permission("/users/alias/new", "POST", "users.alias.new", True,
               "Ketch opt-outs without a Braze profile cannot be kept on an alias profile (policy.alias_unmatched)"),
    Permission("/users/export/ids", "POST", "users.export.ids", True,
               "profiles cannot be read: existence for deletions and tombstones, and every read with external_id keys"),
    Permission("/email/unsubscribes", "GET", "email.unsubscribe", True,
               "Braze's unsubscribe list is not read: global email state and Braze-side opt-outs are missed"),
    Permission("/email/blocklist", "POST", "email.blacklist", True,
               "do-not-contact addresses (and suppress_deleted_emails) cannot be blocklisted"),
    Permission("/email/status", "POST", "email.status", False,
               "no address-level global state writes; global opt-outs go through users/track per profile"),
    Permission("/email/hard_bounces", "GET", "email.hard_bounces", False,
               "hard-bounced addresses are not read, so they neither join the universe nor count as suppressed"),
    Permission("/subscription/user/status", "GET", "subscription.groups.get", False,
               "group states are read one group a request instead of every group of 50 subjects in one, "
               "and under email keys profiles sharing an address are found one address a request"),
    Permission("/users/export/segment", "POST", "users.export.segment", False,
               "full sweeps of large workspaces use batched or one-email exports instead of a bulk segment export"),
)


@dataclass(frozen=True)
class ProbeResult:
    """What one probe found. `http_status` is None when no answer came back."""

    spec: Permission
    status: str
    http_status: int | None
    detail: str
    unreachable: bool = False

    @property
    def key_refused(self) -> bool:
        return self.http_status == 401


@dataclass(frozen=True)
class _Request:
    klass: str
    body: Any = None
    params: list[tuple[str, Any]] | None = None


def _window() -> list[tuple[str, Any]]:
    today = datetime.now(timezone.utc).date()
    start: date = today - timedelta(days=1)
    return [("start_date", start.isoformat()), ("end_date", today.isoformat()), ("email", PROBE_EMAIL),
            ("limit", 1)]


def first_group(cfg: Config) -> str:
    """The first mapped subscription group, or a placeholder Braze will refuse (400) when none is mapped."""
    return cfg.mapping.topics[0].subscription_group_id if cfg.mapping.topics else PLACEHOLDER_GROUP


def _requests(cfg: Config, token: str) -> dict[str, Callable[[], _Request]]:
    xid = f"reconcile-doctor-{token}"
    return {
        "/users/track": lambda: _Request("users_track", {}),
        "/subscription/status/get": lambda: _Request(
            "shared", params=[("subscription_group_id", first_group(cfg)), ("external_id[]", xid)]),
        "/subscription/status/set": lambda: _Request("subscription_set", {}),
        "/users/delete": lambda: _Request("users_identity", {}),
        "/users/alias/new": lambda: _Request("users_identity", {}),
        "/users/export/ids": lambda: _Request("users_export_ids",
                                              {"external_ids": [xid], "fields_to_export": ["external_id"]}),
        "/email/unsubscribes": lambda: _Request("shared", params=_window()),
        "/email/blocklist": lambda: _Request("shared", {}),
        "/email/status": lambda: _Request("shared", {}),
        "/email/hard_bounces": lambda: _Request("shared", params=_window()),
        "/subscription/user/status": lambda: _Request("shared", params=[("external_id[]", xid), ("limit", 1)]),
        "/users/export/segment": lambda: _Request("shared", {}),
    }


def probe_braze(client: BrazeClient, cfg: Config) -> list[ProbeResult]:
    """One harmless request per entry of `PERMISSIONS`, in that order."""
    requests = _requests(cfg, secrets.token_hex(8))
    results: list[ProbeResult] = []
    stop = ""
    for spec in PERMISSIONS:
        if stop:
            results.append(ProbeResult(spec, UNKNOWN, None, f"not probed: {stop}"))
            continue
        result = _probe(client, spec, requests[spec.endpoint]())
        results.append(result)
        if result.key_refused:
            stop = "the key was refused (HTTP 401)"
        elif result.unreachable:
            stop = "Braze could not be reached"
    return results


def _probe(client: BrazeClient, spec: Permission, req: _Request) -> ProbeResult:
    try:
        answer = client.request(req.klass, spec.method, spec.endpoint, body=req.body, params=req.params)
    except RateLimited as exc:
        return ProbeResult(spec, UNKNOWN, 429, _reason(exc))
    except ApiError as exc:
        if exc.status_code is None:
            return ProbeResult(spec, UNKNOWN, None, _reason(exc), unreachable=True)
        return _classify(spec, exc)
    return ProbeResult(spec, GRANTED, answer.status, f"HTTP {answer.status}: a read of a nonexistent identity")


def _classify(spec: Permission, exc: ApiError) -> ProbeResult:
    status = exc.status_code
    if status == 400:
        return ProbeResult(spec, GRANTED, status, f"HTTP 400 (invalid on purpose): {exc.body}")
    if status == 404 and is_user_not_found(exc.body):
        return ProbeResult(spec, GRANTED, status, f"HTTP 404 for a nonexistent user: {exc.body}")
    if status == 403:
        return ProbeResult(spec, NOT_GRANTED, status, f"HTTP 403: {exc.body or 'Forbidden'}")
    if status == 404:
        return ProbeResult(spec, UNKNOWN, status, f"HTTP 404: {exc.body or 'Not Found'}: the endpoint is not served "
                                                  "at braze.rest_endpoint (check that it is your instance's)")
    return ProbeResult(spec, UNKNOWN, status, _reason(exc))


def _reason(exc: ApiError) -> str:
    """The error without its method and URL prefix (already sanitized and key-free)."""
    text = str(exc)
    prefix = f"{exc.service} {exc.method} {exc.url}".strip()
    return text[len(prefix):].lstrip(": ").strip() if text.startswith(prefix) else text
