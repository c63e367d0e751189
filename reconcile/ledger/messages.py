"""Ketch Forwarder messages (ketch-api.md §3.3): validation, the subject they concern, and
the replies the spec asks for.

`parse(body)` returns a `Message` or raises `Invalid` carrying the HTTP status and the
spec's Error shape. Nothing here does I/O.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from reconcile.engine.times import from_epoch
from reconcile.models.ledger import error_body as error_body  # the webhook's error answer (the store writes one)

CONSENT = "ConsentRequest"
TOPICS = "SubscriptionTopicRequest"
CONTROLS = "SubscriptionControlRequest"
DELETE = "DeleteRequest"
OTHER_DSR = ("AccessRequest", "CorrectionRequest", "RestrictProcessingRequest")
CHANGE_KINDS = (CONSENT, TOPICS, CONTROLS)
API_VERSIONS = {CONSENT: ("consent/v1", "dsr/v1"), TOPICS: ("subscription/v1",), CONTROLS: ("subscription/v1",),
                DELETE: ("dsr/v1",), **{k: ("dsr/v1",) for k in OTHER_DSR}}
IDENTITY_FORMATS = ("raw", "md5", "sha1", "sha256", "sha512")
STATUSES = ("granted", "denied")
MAX_IDENTITIES = 50
MAX_CALLBACKS = 10
MAX_UID = 128
MAX_URL = 2048


class Invalid(Exception):
    """A message the ledger answers with an Error (`status`, `code` as in the spec)."""

    def __init__(self, message: str, *, status: int = 400, code: str = "invalid", kind: str | None = None,
                 metadata: dict[str, Any] | None = None, unknown_kind: bool = False):
        super().__init__(message)
        self.status, self.code, self.kind = status, code, kind
        self.metadata = metadata or {}
        self.unknown_kind = unknown_kind

    def reply(self) -> dict[str, Any]:
        return error_body(self.status, self.code, str(self), self.metadata)


@dataclass(frozen=True)
class Message:
    api_version: str
    kind: str
    uid: str
    tenant: str | None
    request: dict[str, Any]
    document: dict[str, Any] = field(repr=False)

    @property
    def metadata(self) -> dict[str, Any]:
        return {"uid": self.uid, **({"tenant": self.tenant} if self.tenant is not None else {})}

    def identities(self) -> list[dict[str, str]]:
        return list(self.request.get("identities") or [])

    def changed_at(self) -> datetime | None:
        return timestamp(self.request.get("collectedAt" if self.kind == CONSENT else "submittedTimestamp"))


def timestamp(value: Any) -> datetime | None:
    """A UNIX timestamp in seconds (milliseconds are recognised by their size) as UTC, by
    the rules every source time follows (engine/times.py); None when it is not one."""
    return from_epoch(value)


MAX_DEPTH = 32  # Ketch's messages nest 5 deep; deeper is refused before it is parsed


def too_deep(body: bytes, limit: int = MAX_DEPTH) -> bool:
    """Whether the JSON text nests arrays and objects deeper than `limit` (strings skipped),
    judged before parsing: Python's parser and everything that walks the document recurse."""
    depth, in_string, escaped = 0, False, False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            if depth > limit:
                return True
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return False


def parse(body: bytes) -> Message:
    if too_deep(body):
        raise Invalid(f"the body nests deeper than {MAX_DEPTH} levels; Ketch's messages do not")
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Invalid(f"the body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise Invalid("the body must be a JSON object with apiVersion, kind, metadata and request")
    meta = doc.get("metadata")
    metadata = {k: meta[k] for k in ("uid", "tenant") if isinstance(meta, dict) and isinstance(meta.get(k), str)}
    kind = doc.get("kind")
    if not isinstance(kind, str) or not kind:
        raise Invalid("kind: required, a string such as \"DeleteRequest\"", metadata=metadata)
    if kind not in API_VERSIONS:
        raise Invalid(f"kind: {kind[:80]!r} is not a message this endpoint accepts (accepted: "
                      f"{', '.join(API_VERSIONS)})", kind=kind[:80], metadata=metadata, unknown_kind=True)
    version = doc.get("apiVersion")
    if version not in API_VERSIONS[kind]:
        raise Invalid(f"apiVersion: {kind} needs {' or '.join(API_VERSIONS[kind])}, got {version!r}",
                      kind=kind, metadata=metadata)
    if not isinstance(meta, dict):
        raise Invalid("metadata: required, an object with uid and tenant", kind=kind)
    uid = meta.get("uid")
    if not isinstance(uid, str) or not uid.strip() or len(uid) > MAX_UID:
        raise Invalid(f"metadata.uid: required, a non-empty string of at most {MAX_UID} characters", kind=kind,
                      metadata=metadata)
    tenant = meta.get("tenant")
    if tenant is not None and not isinstance(tenant, str):
        raise Invalid("metadata.tenant: must be a string", kind=kind, metadata=metadata)
    request = doc.get("request")
    if not isinstance(request, dict):
        raise Invalid("request: required, an object", kind=kind, metadata=metadata)
    problem = _check_request(kind, request)
    if problem:
        raise Invalid(problem, kind=kind, metadata=metadata)
    return Message(str(version), kind, uid, tenant, request, doc)


def _check_request(kind: str, r: dict[str, Any]) -> str | None:
    checks = [_strings(r, ("property", "environment"), required=True), _strings(r, ("controller",), required=False),
              _identities(r.get("identities"))]
    if kind == CONSENT:
        checks += [_strings(r, ("regulation", "jurisdiction"), required=True),
                   _status_map(r.get("purposes"), "request.purposes", nested=False),
                   _time(r, "collectedAt")]
    elif kind == TOPICS:
        checks += [_topics(r.get("topics")), _time(r, "submittedTimestamp")]
    elif kind == CONTROLS:
        checks += [_status_map(r.get("controls"), "request.controls", nested=True), _time(r, "submittedTimestamp")]
    else:  # a DSR: Ketch's example carries both times, but a request without them is still a request
        checks += [_strings(r, ("regulation", "jurisdiction"), required=True),
                   _time(r, "submittedTimestamp", required=False), _time(r, "dueTimestamp", required=False),
                   _subject(r.get("subject")), _callbacks(r.get("callbacks"))]
    return next((c for c in checks if c), None)


def _strings(r: dict[str, Any], names: tuple[str, ...], *, required: bool) -> str | None:
    for name in names:
        value = r.get(name)
        if value is None and not required:
            continue
        if not isinstance(value, str) or (required and not value):
            return f"request.{name}: {'required, ' if required else ''}a non-empty string"
    return None


def _time(r: dict[str, Any], name: str, *, required: bool = True) -> str | None:
    if not required and r.get(name) is None:
        return None
    if timestamp(r.get(name)) is None:
        return (f"request.{name}: {'required, ' if required else ''}a UNIX timestamp in seconds (a JSON number "
                f"between 2000-01-01 and 2100-01-01), got {str(r.get(name))[:40]!r}")
    return None


def _identities(value: Any) -> str | None:
    if not isinstance(value, list) or not value:
        return "request.identities: required, a non-empty array of {identitySpace, identityFormat, identityValue}"
    if len(value) > MAX_IDENTITIES:
        return f"request.identities: at most {MAX_IDENTITIES} identities"
    for i, ident in enumerate(value):
        where = f"request.identities[{i}]"
        if not isinstance(ident, dict):
            return f"{where}: must be an object"
        for name in ("identitySpace", "identityValue"):
            if not isinstance(ident.get(name), str) or not ident[name]:
                return f"{where}.{name}: required, a non-empty string"
        fmt = ident.get("identityFormat", "raw")
        if fmt not in IDENTITY_FORMATS:
            return f"{where}.identityFormat: must be one of {', '.join(IDENTITY_FORMATS)}, got {fmt!r}"
    return None


def _status(value: Any, where: str) -> str | None:
    if value not in STATUSES:
        return f"{where}: must be \"granted\" or \"denied\", got {value!r}"
    return None


def _status_map(value: Any, where: str, *, nested: bool) -> str | None:
    if not isinstance(value, dict):
        return f"{where}: required, an object keyed by code"
    for code, v in value.items():
        problem = _status(v.get("status") if nested and isinstance(v, dict) else v,
                          f"{where}.{code}{'.status' if nested else ''}")
        if problem:
            return problem
    return None


def _topics(value: Any) -> str | None:
    """Topics as `{topic: {status, contactMethods?}}` (the Forwarder spec) or
    `{topic: {channel: {status}}}` (the Web API's shape)."""
    if not isinstance(value, dict):
        return "request.topics: required, an object keyed by topic code"
    for code, v in value.items():
        where = f"request.topics.{code}"
        if not isinstance(v, dict):
            return f"{where}: must be an object"
        if "status" in v:
            problem = _status(v["status"], f"{where}.status")
        else:
            problem = _status_map(v, where, nested=True)
        if problem:
            return problem
    return None


def _subject(value: Any) -> str | None:
    if not isinstance(value, dict):
        return "request.subject: required, an object (the data subject)"
    email = value.get("email")
    if email is not None and not isinstance(email, str):
        return "request.subject.email: must be a string"
    return None


def _callbacks(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > MAX_CALLBACKS:
        return f"request.callbacks: must be an array of at most {MAX_CALLBACKS} {{url, headers}}"
    for i, cb in enumerate(value):
        where = f"request.callbacks[{i}]"
        if not isinstance(cb, dict) or not isinstance(cb.get("url"), str) or not cb["url"]:
            return f"{where}.url: required, a URL"
        if len(cb["url"]) > MAX_URL:
            return f"{where}.url: longer than {MAX_URL} characters"
        headers = cb.get("headers", {})
        if not isinstance(headers, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                    for k, v in headers.items()):
            return f"{where}.headers: must be an object of string values"
        if any(c in k + v for k, v in headers.items() for c in "\r\n\0"):
            return f"{where}.headers: control characters are not allowed"
    return None


SUBJECT_EMAIL = "subject.email"  # how a request's `subject.email` is kept among its identities


def subject_identity(msg: Message, space: str, key_type: str) -> str | None:
    """The subject's identity in the configured Ketch space (raw format only; hashed values
    cannot be looked up); under email keys a DeleteRequest's `subject.email` stands in."""
    for ident in msg.identities():
        if ident.get("identitySpace") == space and ident.get("identityFormat", "raw") == "raw":
            return ident["identityValue"]
    email = subject_email(msg.request)
    if key_type == "email" and email:
        return email
    return None


def subject_email(request: dict[str, Any]) -> str | None:
    subject = request.get("subject")
    email = subject.get("email") if isinstance(subject, dict) else None
    return email.strip() if isinstance(email, str) and email.strip() else None


def stored_identities(msg: Message) -> list[dict[str, str]]:
    """Every identity a request carries, `subject.email` included (as space `subject.email`)."""
    out = msg.identities()
    email = subject_email(msg.request)
    if email:
        out.append({"identitySpace": SUBJECT_EMAIL, "identityFormat": "raw", "identityValue": email})
    return out


def request_identities(identities: list[dict[str, Any]] | None, space: str) -> tuple[list[str], list[str]]:
    """(values in the configured Ketch space, email addresses) of a stored request, raw
    format only (hashed values cannot be looked up). An email is any identity of a space
    named like email, or the subject's email."""
    keyed: list[str] = []
    emails: list[str] = []
    for ident in identities or []:
        if not isinstance(ident, dict) or ident.get("identityFormat", "raw") != "raw":
            continue
        name, value = str(ident.get("identitySpace") or ""), ident.get("identityValue")
        if not isinstance(value, str) or not value.strip():
            continue
        if name == space:
            keyed.append(value)
        if (name == SUBJECT_EMAIL or "email" in name.lower()) and "@" in value:
            emails.append(value.strip())
    return list(dict.fromkeys(keyed)), list(dict.fromkeys(emails))


def _expected(msg: Message, now: datetime, expected_hours: float) -> int:
    """Now plus the expected hours, at most the request's due time when it is still ahead."""
    expected = int((now + timedelta(hours=expected_hours)).timestamp())
    due = timestamp(msg.request.get("dueTimestamp"))
    if due is not None and int(due.timestamp()) > int(now.timestamp()):
        expected = min(expected, int(due.timestamp()))
    return expected


def delete_response(msg: Message, now: datetime, expected_hours: float) -> dict[str, Any]:
    expected = _expected(msg, now, expected_hours)
    return {"apiVersion": "dsr/v1", "kind": "DeleteResponse", "metadata": msg.metadata,
            "response": {"status": "in_progress", "reason": "other", "expectedCompletionTimestamp": expected,
                         "requestID": msg.uid,
                         "resultMessage": "Accepted: the Braze profile is deleted by the next reconciliation run"}}


def other_dsr_response(msg: Message, now: datetime, expected_hours: float) -> dict[str, Any]:
    """Access, correction and restriction are not carried out here, so they are never
    reported completed: `pending`, saying where they must be handled. No later event is
    sent; Ketch marks the request failed for this system when no `completed` comes."""
    return {"apiVersion": "dsr/v1", "kind": msg.kind.replace("Request", "Response"), "metadata": msg.metadata,
            "response": {"status": "pending", "reason": "other", "requestID": msg.uid,
                         "expectedCompletionTimestamp": _expected(msg, now, expected_hours),
                         "resultMessage": f"{msg.kind} is not processed by this endpoint (it reconciles consent, "
                                          "subscriptions and erasure into Braze only): handle it in the systems "
                                          "that hold the data"}}


def status_event(request: dict[str, Any], reason: str, message: str, now: datetime) -> dict[str, Any]:
    """The DeleteStatusEvent `completed` for a stored request."""
    metadata = {"uid": request["uid"], **({"tenant": request["tenant"]} if request.get("tenant") else {})}
    return {"apiVersion": "dsr/v1", "kind": "DeleteStatusEvent", "metadata": metadata,
            "event": {"status": "completed", "reason": reason, "requestID": request["uid"], "resultMessage": message,
                      "expectedCompletionTimestamp": int(now.timestamp())}}
