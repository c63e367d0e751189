"""Result types of the Braze client and the pure logic that reads Braze's answers.

Only this module and `braze.py` know Braze's JSON. Parsers take decoded bodies and return
plain Python values; a body that lacks what the documentation promises raises
`FatalApiError` naming the endpoint and the field. The batch rules (which items of a
write batch were accepted, which were rejected, which must be re-sent to find out) are
small functions here: `accept_items` for 2xx answers, `refuse_items` for a batch refused with 400.
A 2xx answer to a write counts only when `confirms` finds Braze's success marker in it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping, Sequence, TypedDict

from reconcile.errors import ApiError, DataError, FatalApiError

STATES = ("subscribed", "unsubscribed")
EMAIL_STATES = ("subscribed", "unsubscribed", "opted_in")
_EMAIL = re.compile(r"[^\s@<>\"'(),;:]+@([^\s@<>\"'(),;:]+\.[A-Za-z]{2,})")
_USER_NOT_FOUND = re.compile(r"user[s]?\b.*\bnot\s+found|not\s+found.*\buser", re.IGNORECASE)


class ExportUnavailable(ApiError):
    """A segment export Braze cannot deliver to this job: `kind` "bucket", "busy" or
    "not_ready" (see braze_segment.py). Not a failed run: profiles are read one by one."""

    def __init__(self, kind: str, message: str, **where: object):
        self.kind = kind
        super().__init__(message, **where)  # type: ignore[arg-type]


class GroupRecord(TypedDict):
    """One user's state in one subscription group; `identifier` is None when the answer does
    not say whose state it is."""

    identifier: str | None
    group_id: str
    status: str


@dataclass(frozen=True)
class ResponseSummary:
    """One answered request, for the caller's journal: no identifiers, no secrets."""

    endpoint: str
    status: int
    message: str
    items: int


@dataclass
class WriteResult:
    """What a batched write did: accepted items, rejected items with Braze's reason."""

    endpoint: str
    requests_sent: int = 0
    ok: list[Any] = field(default_factory=list)
    rejected: list[tuple[Any, str]] = field(default_factory=list)
    responses: list[ResponseSummary] = field(default_factory=list)
    deleted: int = 0

    def record(self, status: int, message: str, items: int) -> None:
        self.requests_sent += 1
        self.responses.append(ResponseSummary(self.endpoint, status, message, items))

    @property
    def all_ok(self) -> bool:
        return not self.rejected


@dataclass
class TrackResult(WriteResult):
    """A `/users/track` result; `ok` and `rejected` hold the caller's attribute objects."""

    attributes_processed: int = 0


@dataclass
class ExportResult:
    """`/users/export/ids` answers merged over all chunks."""

    users: list[dict[str, Any]] = field(default_factory=list)
    invalid_user_ids: list[str] = field(default_factory=list)
    requests_sent: int = 0


def body_message(body: Any, text: str = "") -> str:
    """Braze's `message` plus any `errors`, or the raw text when the body is not JSON."""
    if isinstance(body, Mapping):
        parts = [str(body.get("message", "")).strip()]
        errors = body.get("errors")
        if errors:
            parts.append("; ".join(error_text(e) for e in _as_list(errors)))
        return " - ".join(p for p in parts if p) or json.dumps(body)[:200]
    return (text or "").strip()[:200]


def mask_emails(text: str) -> str:
    """Addresses in `text` with the local part masked: `***@example.com`."""
    return _EMAIL.sub(lambda m: f"***@{m.group(1)}", text)


def confirms(endpoint: str, body: Any) -> bool:
    """Whether a 2xx body confirms a write: `"message": "success"`, or for `/users/delete`
    a numeric `deleted`. HTML, non-JSON or JSON without a marker confirms nothing."""
    if not isinstance(body, Mapping):
        return False
    if str(body.get("message", "")).strip().lower() == "success":
        return True
    deleted = body.get("deleted")
    return endpoint == "/users/delete" and isinstance(deleted, (int, float)) and not isinstance(deleted, bool)


def error_text(error: Any) -> str:
    if isinstance(error, Mapping):
        for key in ("type", "message", "error", "code"):
            if error.get(key):
                return str(error[key])
        return json.dumps(error, sort_keys=True)
    return str(error)


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def is_user_not_found(message: str) -> bool:
    return bool(_USER_NOT_FOUND.search(message or ""))


def need(body: Any, key: str, endpoint: str, kind: type | tuple[type, ...]) -> Any:
    """`body[key]` checked for type, or FatalApiError naming endpoint and field."""
    if not isinstance(body, Mapping) or key not in body:
        raise FatalApiError(f"answer has no {key!r} field", service="braze", url=endpoint)
    value = body[key]
    if not isinstance(value, kind):
        raise FatalApiError(f"field {key!r} is {type(value).__name__}, not the documented type",
                            service="braze", url=endpoint)
    return value




class CaselessKeys:
    """Maps answer keys back to the submitted identifiers (emails compare case-insensitively)."""

    def __init__(self, submitted: Iterable[str], caseless: bool):
        self.caseless = caseless
        self.index: dict[str, list[str]] = {}
        for ident in submitted:
            self.index.setdefault(self._key(ident), []).append(ident)

    def _key(self, ident: str) -> str:
        return ident.strip().lower() if self.caseless else ident

    def lookup(self, answered: Any) -> list[str]:
        if answered is None:
            return []
        return self.index.get(self._key(str(answered)), [])


def status_map(body: Any, endpoint: str, submitted: list[str], caseless: bool) -> dict[str, str]:
    """`{"status": {ident: "Subscribed"}}` -> {submitted ident: state}, unknown when absent."""
    if isinstance(body, Mapping) and "status" not in body and is_user_not_found(body_message(body)):
        return {ident: "unknown" for ident in submitted}
    answered = need(body, "status", endpoint, Mapping)
    keys = CaselessKeys(submitted, caseless)
    out = {ident: "unknown" for ident in submitted}
    named = 0
    for key, value in answered.items():
        for ident in keys.lookup(key):
            out[ident] = _group_state(value, endpoint)
            named += 1
    if submitted and not named:
        raise DataError(f"braze {endpoint}: the answer names none of the {len(submitted)} identifier(s) asked "
                        "about; a malformed answer is not read as 'unknown' (it would hide group drift)")
    return out


def _group_state(value: Any, endpoint: str) -> str:
    text = str(value or "").strip().lower()
    if text in STATES or text == "unknown":
        return text
    if is_user_not_found(text):
        return "unknown"
    raise DataError(f"braze {endpoint}: group status {str(value)[:40]!r} is not Subscribed, Unsubscribed or "
                    "Unknown; refusing to guess")


def group_records(groups: Any, identifier: str | None, endpoint: str) -> list[GroupRecord]:
    """Group entries of either documented shape -> {identifier, group_id, status}; a status
    other than Subscribed, Unsubscribed or Unknown is a malformed answer (never a guess)."""
    out: list[GroupRecord] = []
    for g in groups if isinstance(groups, list) else []:
        if not isinstance(g, Mapping):
            raise FatalApiError("a subscription group entry is not an object", service="braze", url=endpoint)
        group_id = g.get("subscription_group_id", g.get("id"))
        status = g.get("subscription_status", g.get("status"))
        if group_id is None:
            raise FatalApiError("a subscription group entry has no 'subscription_group_id'/'id'",
                                service="braze", url=endpoint)
        out.append({"identifier": identifier, "group_id": str(group_id), "status": _group_state(status, endpoint)})
    return out


def group_channels(groups: Any) -> dict[str, str]:
    """group id -> channel (lower case) of the `users[]` group entries that name one."""
    out: dict[str, str] = {}
    for g in groups if isinstance(groups, list) else []:
        if isinstance(g, Mapping) and g.get("channel") and (g.get("id") or g.get("subscription_group_id")):
            out[str(g.get("id") or g.get("subscription_group_id"))] = str(g["channel"]).strip().lower()
    return out


def user_status_page(body: Any, endpoint: str, id_field: str,
                     submitted: list[str]) -> tuple[list[GroupRecord], int, bool]:
    """Records, page size (for pagination) and whether records could be attributed.

    Shape A (Braze docs): {"subscription_groups": [{subscription_group_id, subscription_status}]}
    Shape B (braze-node): {"users": [{external_id, email, subscription_groups: [{id, status}]}]}
    """
    if isinstance(body, Mapping) and isinstance(body.get("users"), list):
        keys = CaselessKeys(submitted, caseless=id_field != "external_id")
        records: list[GroupRecord] = []
        for user in body["users"]:
            user = user if isinstance(user, Mapping) else {}
            idents: Sequence[str | None] = (keys.lookup(user.get(id_field))
                                            or (submitted if len(submitted) == 1 else [None]))
            for ident in dict.fromkeys(idents):
                records.extend(group_records(user.get("subscription_groups"), ident, endpoint))
        return records, len(body["users"]), all(r["identifier"] is not None for r in records)
    groups = need(body, "subscription_groups", endpoint, list)
    single = submitted[0] if len(submitted) == 1 else None
    return group_records(groups, single, endpoint), len(groups), single is not None or not groups


def answer_errors(body: Any) -> list[Any]:
    errors = body.get("errors") if isinstance(body, Mapping) else None
    return _as_list(errors) if errors else []


def error_index(error: Any, size: int) -> int | None:
    """The per-array position an attributes error points at, if it points at one."""
    if not isinstance(error, Mapping):
        return None
    if error.get("input_array", "attributes") != "attributes":
        return None
    index = error.get("index")
    if isinstance(index, bool) or not isinstance(index, (int, str)):
        return None
    try:
        position = int(index)
    except ValueError:
        return None
    return position if 0 <= position < size else None


def parse_timestamp(value: Any, endpoint: str, key: str) -> datetime:
    """An ISO 8601 (or 'YYYY-MM-DD HH:MM:SS.fff UTC', or epoch) time as tz-aware UTC."""
    try:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return datetime.fromtimestamp(value, timezone.utc)
        text = str(value).strip()
        if text.upper().endswith(" UTC"):
            text = text[:-4] + "+00:00"
        parsed = datetime.fromisoformat(text)
    except (TypeError, ValueError, OverflowError, OSError):
        raise FatalApiError(f"field {key!r} is not a timestamp: {str(value)[:40]!r}",
                            service="braze", url=endpoint) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def email_rows(body: Any, endpoint: str, time_key: str) -> list[dict[str, Any]]:
    """`{"emails": [{"email", time_key}]}` -> rows with tz-aware datetimes."""
    rows = []
    for row in need(body, "emails", endpoint, list):
        if not isinstance(row, Mapping) or not row.get("email"):
            raise FatalApiError("an 'emails' entry has no 'email'", service="braze", url=endpoint)
        if row.get(time_key) is None:
            raise FatalApiError(f"an 'emails' entry has no {time_key!r}", service="braze", url=endpoint)
        rows.append({"email": str(row["email"]), time_key: parse_timestamp(row[time_key], endpoint, time_key)})
    return rows


class LimitExceeded(FatalApiError):
    """A 400 saying the request is over a Braze limit (ids per request, track objects)."""


class BatchRefused(FatalApiError):
    """A 400 for a whole request that is not a limit error; `errors` holds Braze's list."""

    def __init__(self, message: str, *, errors: list[Any], **kw: Any):
        self.errors = errors
        super().__init__(message, **kw)


@dataclass
class Answer:
    """A 2xx answer: status, decoded JSON body (None if not JSON), scrubbed message, sanitized URL."""

    status: int
    body: Any
    message: str
    url: str


@dataclass
class Outcome:
    """What to do with a batch after its answer: reject some, resend others."""

    rejected: list[tuple[Any, str]] = field(default_factory=list)
    retry: list[Any] = field(default_factory=list)
    reason: str = ""
    whole: bool = False


def page_size(answer: Answer) -> int:
    body = answer.body if isinstance(answer.body, Mapping) else {}
    for key in ("emails", "users", "subscription_groups"):
        if isinstance(body.get(key), list):
            return len(body[key])
    return 0


def export_users(answer: Answer) -> list[dict[str, Any]]:
    body = answer.body
    if isinstance(body, Mapping) and "users" not in body and "invalid_user_ids" in body:
        return []
    users = need(body, "users", answer.url, list)
    if not all(isinstance(u, Mapping) for u in users):
        raise FatalApiError("a 'users' entry is not an object", service="braze", url=answer.url)
    return [dict(u) for u in users]


def accept_items(chunk: list[Any], answer: Answer, result: WriteResult) -> Outcome:
    tally(result, answer.body)
    bad, unattributed = attribute(answer_errors(answer.body), len(chunk))
    rejected = [(chunk[i], msg) for i, msg in bad.items()]
    rest = [obj for i, obj in enumerate(chunk) if i not in bad]
    if unattributed:
        return Outcome(rejected=rejected, retry=rest, reason="; ".join(unattributed))
    result.ok.extend(rest)
    return Outcome(rejected=rejected)


def refuse_items(chunk: list[Any], exc: BatchRefused) -> Outcome:
    bad, _ = attribute(exc.errors, len(chunk))
    if not bad:
        return Outcome(retry=chunk, reason=exc.body)
    rest = [obj for i, obj in enumerate(chunk) if i not in bad]
    return Outcome(rejected=[(chunk[i], msg) for i, msg in bad.items()], retry=rest, reason=exc.body, whole=True)


def attribute(errors: list[Any], size: int) -> tuple[dict[int, str], list[str]]:
    """Per-array `index` errors -> {position: message}; the rest as plain messages."""
    bad: dict[int, str] = {}
    unattributed: list[str] = []
    for error in errors:
        index = error_index(error, size)
        if index is None:
            unattributed.append(error_text(error))
        else:
            bad[index] = "; ".join(filter(None, (bad.get(index), error_text(error))))
    return bad, unattributed


def tally(result: WriteResult, body: Any) -> None:
    """Add Braze's `deleted` / `attributes_processed` counts to the result."""
    if not isinstance(body, Mapping):
        return
    for key in ("deleted", "attributes_processed"):
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and hasattr(result, key):
            setattr(result, key, getattr(result, key) + value)


def resend_parts(outcome: Outcome, result: WriteResult) -> list[list[Any]]:
    """Batches to send again; a lone suspect is rejected with the reason instead."""
    retry = outcome.retry
    if not retry:
        return []
    if outcome.whole:
        return [retry]
    if len(retry) == 1:
        result.rejected.append((retry[0], outcome.reason))
        return []
    half = len(retry) // 2
    return [retry[:half], retry[half:]]


V2_FIELDS = {"external_ids": "external_id", "emails": "email", "phones": "phone"}


def v2_items(group: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One v2 group object -> one item per identifier (the unit of ok/rejected)."""
    if group.get("emails") and group.get("phones"):
        raise ValueError("a v2 subscription group entry cannot carry both emails and phones")
    check_state(group.get("subscription_state", ""), STATES)
    base = {k: v for k, v in group.items() if k not in V2_FIELDS}
    return [{**base, single: ident} for plural, single in V2_FIELDS.items()
            for ident in dict.fromkeys(group.get(plural) or ())]


def v2_entries(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Items regrouped into v2 group objects (same group, state and options share one)."""
    entries: dict[str, dict[str, Any]] = {}
    singles = {single: plural for plural, single in V2_FIELDS.items()}
    for item in items:
        single = next(k for k in singles if k in item)
        base = {k: v for k, v in item.items() if k != single}
        key = json.dumps([base, single], sort_keys=True, default=str)
        entries.setdefault(key, {**base, singles[single]: []})[singles[single]].append(item[single])
    return list(entries.values())


def check_state(state: str, allowed: Sequence[str]) -> None:
    if state not in allowed:
        raise ValueError(f"subscription state {state!r} is not one of {', '.join(allowed)}")
