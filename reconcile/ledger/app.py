"""The ASGI app behind `reconcile ledger serve` (Starlette).

    POST {ledger.path}   a Ketch Forwarder message (ketch-api.md §3.3)
    GET  /healthz        200 while the process serves (liveness)
    GET  /readyz         200 when the state store answers, 503 otherwise (readiness)
    GET  /openapi.json   the OpenAPI 3.1 description of these endpoints

Every POST is authenticated first (the configured token in `ledger.auth_header`, alone or
after `ledger.auth_scheme`, or basic auth; compared in constant time), then read up to
`ledger.max_body_bytes` (413 beyond), validated (400 in the spec's Error shape) and
recorded in the state store with the answer given, keyed by `metadata.uid`: a replay is
answered the same and stored once. Unknown kinds are answered 400 and kept for inspection.
The access log names method, path, status, kind and time, never an identity, a uid or a
header.
"""

from __future__ import annotations

import base64
import hmac
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Mapping

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from reconcile.config import Config, secret
from reconcile.engine.identity import subject_key
from reconcile.errors import ConfigError, ConfigProblem
from reconcile.ledger import messages as m
from reconcile.ledger import mirror
from reconcile.ledger.callbacks import url_problem
from reconcile.store.ledger import LedgerStore, Received, stored_body

log = logging.getLogger("reconcile.ledger.access")
MAX_IDENTITY = 1024  # longer values are invalid identities anyway; the engine rejects them


class TooLarge(Exception):
    pass


@dataclass(frozen=True)
class Credentials:
    """What a message must carry in `header`: the token, alone or after `scheme` (any case),
    and/or HTTP Basic credentials. Every configured form is compared, in constant time."""

    bearer: bytes | None
    basic: bytes | None  # the expected "user:password"
    header: str = "Authorization"
    scheme: str = "Bearer"

    @classmethod
    def from_config(cls, cfg: Config, environ: Mapping[str, str] | None = None) -> Credentials:
        lc = cfg.ledger
        token = secret(lc.bearer_token_env, environ)
        user, password = secret(lc.basic_user_env, environ), secret(lc.basic_password_env, environ)
        problems = [ConfigProblem(f"ledger.{key}", f"environment variable {name} is not set",
                                  f"export {name}=<the value configured in Ketch's webhook>")
                    for key, name, value in (("bearer_token_env", lc.bearer_token_env, token),
                                             ("basic_user_env", lc.basic_user_env, user),
                                             ("basic_password_env", lc.basic_password_env, password))
                    if name and not value]
        if not (lc.bearer_token_env or lc.basic_user_env):
            problems.append(ConfigProblem("ledger.bearer_token_env", "no authentication is configured",
                                          'set ledger.bearer_token_env = "KETCH_WEBHOOK_TOKEN"'))
        if problems:
            raise ConfigError(problems)
        return cls(token.encode() if token else None, f"{user}:{password}".encode() if user else None,
                   lc.auth_header, lc.auth_scheme)

    def accepts(self, header: str | None) -> bool:
        """Whether the value of the auth header holds the secret. Each form is compared
        whatever the others gave, so the time taken does not say which one came close."""
        text = (header or "").strip()
        scheme, _, rest = text.partition(" ")
        scheme, rest = scheme.lower(), rest.strip()
        ok = False
        if self.bearer is not None:
            bare = hmac.compare_digest(text.encode(), self.bearer)
            schemed = hmac.compare_digest(rest.encode(), self.bearer)
            ok |= bare or (bool(self.scheme) and scheme == self.scheme.lower() and schemed)
        if self.basic is not None:
            try:
                given = base64.b64decode(rest, validate=True) if scheme == "basic" else b""
            except ValueError:
                given = b""
            ok |= hmac.compare_digest(given, self.basic) and scheme == "basic"
        return ok

    def challenge(self) -> str:
        if self.bearer is None:
            return 'Basic realm="ketch-ledger"'
        return f'{self.scheme or "Token"} realm="ketch-ledger"'

    def refusal(self) -> str:
        form = f"{self.scheme} <token>" if self.scheme and self.bearer is not None else "the token"
        if self.basic is not None:
            form = f"{form} or Basic credentials" if self.bearer is not None else "Basic credentials"
        return f"missing or wrong credentials: expected {form} in the {self.header} header"


def create_app(cfg: Config, store: Any, *, environ: Mapping[str, str] | None = None,
               clock: Callable[[], datetime] | None = None) -> Starlette:
    """The ledger app over `store` (a `Store`); credentials are read from the environment now."""

    creds = Credentials.from_config(cfg, environ)
    ledger = LedgerStore.of(store)
    now = clock or (lambda: datetime.now(timezone.utc))
    limit = cfg.ledger.max_body_bytes

    async def receive(request: Request) -> Response:
        started = time.monotonic()
        status, kind = 500, "-"
        try:
            status, kind, response = await _handle(request)
            return response
        finally:
            log.info("%s %s %d %s %.1fms", request.method, request.url.path, status, kind,
                     (time.monotonic() - started) * 1000)

    async def _handle(request: Request) -> tuple[int, str, Response]:
        if not creds.accepts(request.headers.get(creds.header)):
            body = m.error_body(401, "forbidden", creds.refusal())
            return 401, "-", JSONResponse(body, 401, headers={"WWW-Authenticate": creds.challenge()})
        try:
            raw = await _body(request, limit)
        except TooLarge:
            body = m.error_body(413, "invalid", f"the body is larger than {limit} bytes")
            return 413, "-", JSONResponse(body, 413, headers={"Connection": "close"})
        rec = _received(raw, now(), cfg)
        status, reply, _replayed = await run_in_threadpool(ledger.receive, rec)
        kind = rec.kind if rec.outcome != "unknown_kind" else "unknown"
        if reply is None:
            return status, kind or "-", Response(status_code=status)
        return status, kind or "-", JSONResponse(reply, status)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def openapi(request: Request) -> Response:
        from reconcile.ledger.openapi import description

        return JSONResponse(description(cfg.ledger.path))

    async def readyz(request: Request) -> Response:
        try:
            await run_in_threadpool(ledger.ping)
        except Exception:  # noqa: BLE001 - any store failure means not healthy
            return JSONResponse({"status": "unavailable"}, 503)
        return JSONResponse({"status": "ok"})

    return Starlette(routes=[Route(cfg.ledger.path, receive, methods=["POST"]),
                             Route("/healthz", healthz, methods=["GET"]),
                             Route("/readyz", readyz, methods=["GET"]),
                             Route("/openapi.json", openapi, methods=["GET"])])


async def _body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge
    parts, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge
        parts.append(chunk)
    return b"".join(parts)


def _received(raw: bytes, at: datetime, cfg: Config) -> Received:
    """What to record for a body, and the answer to give."""
    keep = cfg.ledger.max_body_bytes
    try:
        msg = m.parse(raw)
    except m.Invalid as exc:
        doc = None if m.too_deep(raw) else _json_or_none(raw)
        outcome = "unknown_kind" if exc.unknown_kind else "invalid"
        uid = exc.metadata.get("uid") if exc.unknown_kind else None
        return Received(outcome, exc.status, exc.reply(), stored_body(raw, doc, keep), len(raw), at, uid=uid,
                        api_version=_str(doc, "apiVersion"), kind=exc.kind, tenant=exc.metadata.get("tenant"),
                        error=str(exc)[:1000])
    wrong = _scope_problem(msg, cfg)
    if wrong:
        return Received("invalid", 400, m.error_body(400, "invalid", wrong, msg.metadata),
                        stored_body(raw, msg.document, keep), len(raw), at, api_version=msg.api_version,
                        kind=msg.kind, tenant=msg.tenant, error=wrong)
    rec = Received("accepted", 204, None, stored_body(raw, msg.document, keep), len(raw), at, uid=msg.uid,
                   api_version=msg.api_version, kind=msg.kind, tenant=msg.tenant)
    identity = m.subject_identity(msg, cfg.identity.ketch_space, cfg.identity.braze_key)
    if msg.kind in m.CHANGE_KINDS:
        rec.reply_status = 204 if msg.kind == m.CONSENT else 202
        if identity is not None:
            rec.changes = [{"kind": msg.kind, "identity": identity[:MAX_IDENTITY], "changed_at": msg.changed_at()}]
            rec.mirror = _mirror_change(msg, identity, cfg)
    elif msg.kind == m.DELETE:
        rec.reply_status, rec.reply = 200, m.delete_response(msg, at, cfg.ledger.expected_completion_hours)
        rec.request = _request_row(msg, identity, cfg)
        rec.callbacks = [_callback_row(i, cb, cfg) for i, cb in enumerate(msg.request.get("callbacks") or [])]
    else:
        rec.reply_status, rec.reply = 200, m.other_dsr_response(msg, at, cfg.ledger.expected_completion_hours)
    return rec


def _mirror_change(msg: m.Message, identity: str, cfg: Config) -> list[tuple[str, Any]]:
    """The Ketch mirror's change for an accepted consent or subscription message."""
    change = mirror.message_change(msg)
    key = subject_key(identity, cfg.identity.braze_key) if change is not None else None
    return [(key, change)] if key is not None else []


def _scope_problem(msg: m.Message, cfg: Config) -> str | None:
    """Why a message is not for this job: another Ketch organization (`metadata.tenant`) or
    another property (`request.property`) than the configured ones; None when it is."""
    org, prop = cfg.ketch.organization, cfg.ketch.property
    if msg.tenant is not None and org and msg.tenant != org:
        return (f"metadata.tenant: {msg.tenant[:80]!r} is not this ledger's Ketch organization ({org!r}); send the "
                "organization's messages to its own ledger")
    given = msg.request.get("property")
    if isinstance(given, str) and prop and given != prop:
        return (f"request.property: {given[:80]!r} is not this ledger's Ketch property ({prop!r}); send the "
                "property's messages to its own ledger")
    return None


def _request_row(msg: m.Message, identity: str | None, cfg: Config) -> dict[str, Any]:
    r = msg.request
    return {"uid": msg.uid, "tenant": msg.tenant, "identity": identity[:MAX_IDENTITY] if identity else None,
            "identities": m.stored_identities(msg),
            "regulation": r.get("regulation"), "jurisdiction": r.get("jurisdiction"),
            "submitted_at": m.timestamp(r.get("submittedTimestamp")), "due_at": m.timestamp(r.get("dueTimestamp")),
            "status": "in_progress", "reason": None}


def _callback_row(position: int, cb: dict[str, Any], cfg: Config) -> dict[str, Any]:
    problem = url_problem(cb["url"], cfg)
    return {"position": position, "url": cb["url"], "headers": cb.get("headers") or {},
            **({"refused": problem} if problem else {})}


def _json_or_none(raw: bytes) -> Any:
    import json

    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None


def _str(doc: Any, key: str) -> str | None:
    value = doc.get(key) if isinstance(doc, dict) else None
    return value[:80] if isinstance(value, str) else None
