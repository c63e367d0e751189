"""Turn Ketch Web API response bodies into typed consent and subscription state.

Pure functions, tolerant of every shape docs/ketch-api.md allows:

* consent purposes as objects `{"allowed": "true", "legalBasisCode": ...}` or bare
  strings `"true"`; `allowed` as the strings "true"/"false" or real booleans;
* subscription topics with a channel level `{topic: {channel: {status}}}` or without one
  `{topic: {status}}` (channel None); statuses "granted"/"denied";
* `collectedAt` as epoch seconds (int, float or numeric string) or ISO-8601.

An empty answer (HTTP 204, empty body, `{}`, no `purposes`, or purposes that carry no
`allowed` value) is "no record" (None). A 2xx body carrying an error (`error_in_body`:
`{"error": {...}}` as the iOS SDK decodes it, `{"message": "error"}`, or any error or
message field without the state fields) is not a record at all: the caller fails the
lookup. The request is never echoed back as state: a
get request carries no `allowed` values, so an echoed request parses as no record.
A body of the wrong shape raises DataError naming the field.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from reconcile.errors import DataError

_TRUE = frozenset({"true", "granted", "yes", "1"})
_FALSE = frozenset({"false", "denied", "no", "0"})
_MS_THRESHOLD = 1e11  # epoch values above this are milliseconds (1e11 s is the year 5138)


@dataclass(frozen=True)
class ConsentState:
    purposes: dict[str, bool]
    collected_at: datetime | None  # tz-aware UTC
    legal_bases: dict[str, str] = field(default_factory=dict, compare=False, repr=False)  # as answered


@dataclass(frozen=True)
class SubscriptionState:
    topics: dict[tuple[str, str | None], str]  # (topic, channel or None) -> "granted" | "denied"
    controls: dict[str, str]  # control code -> "granted" | "denied"
    collected_at: datetime | None


@dataclass(frozen=True)
class KetchRecord:
    identity: str
    consent: ConsentState | None
    subscriptions: SubscriptionState | None

    @property
    def has_record(self) -> bool:
        return self.consent is not None or self.subscriptions is not None


def _fail(what: str, field: str, problem: str) -> DataError:
    return DataError(f"ketch {what}: {field}: {problem}")


_ERROR_FIELDS = ("error", "errors", "errorCode", "errorMessage", "error_description")
_STATE_FIELDS = ("purposes", "topics", "controls")
_SUCCESS_WORDS = frozenset({"ok", "success", "accepted"})
_EMAIL = re.compile(r"[^\s\"'<>(),;:@]+@[^\s\"'<>(),;:@]+")


def mask_identities(text: str) -> str:
    """Text with anything that looks like an email address masked."""
    return _EMAIL.sub("***@***", text)


def error_in_body(body: Any) -> str | None:
    """The error a 2xx body carries (`code: message`, identities masked), or None.

    An error field (`error`, `errors`, `errorCode`, ...) with a value is an error whatever
    else the body holds; a `message` is one when no state field (purposes, topics,
    controls) is there and it is not a success word."""
    if not isinstance(body, dict):
        return None
    for name in _ERROR_FIELDS:
        value = body.get(name)
        if value not in (None, "", [], {}, False):
            return mask_identities(_error_text(name, value))[:200]
    message = body.get("message")
    if message in (None, "") or any(body.get(k) is not None for k in _STATE_FIELDS):
        return None
    if isinstance(message, str) and message.strip().lower() in _SUCCESS_WORDS:
        return None
    return mask_identities(_error_text("message", message))[:200]


def _error_text(name: str, value: Any) -> str:
    if isinstance(value, dict):
        parts = [str(value[k]) for k in ("code", "message", "status") if value.get(k) not in (None, "")]
        return ": ".join(parts) if parts else name
    if isinstance(value, list):
        return "; ".join(_error_text(name, v) for v in value[:3])
    return f"{name}: {value}" if not isinstance(value, str) else value


def load_body(content: bytes, what: str) -> dict[str, Any] | None:
    """The JSON object in a response body, or None for an empty body or `null`."""
    if not content or not content.strip():
        return None
    try:
        body = json.loads(content)
    except ValueError:
        raise _fail(what, "body", "not valid JSON") from None
    if body is None:
        return None
    if not isinstance(body, dict):
        raise _fail(what, "body", f"expected a JSON object, got {type(body).__name__}")
    return body


def parse_collected_at(value: Any, field: str = "collectedAt", what: str = "response") -> datetime | None:
    """Epoch seconds (int/float/numeric string; milliseconds tolerated) or ISO-8601 -> UTC datetime."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise _fail(what, field, f"expected a timestamp, got {value!r}")
    if isinstance(value, str):
        return _parse_time_text(value.strip(), field, what)
    if isinstance(value, (int, float)):
        return _from_epoch(value, field, what)
    raise _fail(what, field, f"expected a timestamp, got {type(value).__name__}")


def _parse_time_text(text: str, field: str, what: str) -> datetime | None:
    if not text:
        return None
    try:
        return _from_epoch(float(text), field, what)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise _fail(what, field, f"not epoch seconds or ISO-8601: {text[:40]!r}") from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def _from_epoch(value: float, field: str, what: str) -> datetime:
    if not math.isfinite(value):
        raise _fail(what, field, f"not a finite number: {value!r}")
    seconds = value / 1000.0 if abs(value) > _MS_THRESHOLD else value
    try:
        return datetime.fromtimestamp(seconds, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        raise _fail(what, field, f"timestamp out of range: {value!r}") from None


def parse_allowed(value: Any, field: str, what: str = "consent/get") -> bool | None:
    """"true"/"false" (any case), real booleans, 1/0; None means no value."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        if not text:
            return None
    raise _fail(what, field, f"expected \"true\" or \"false\", got {_short(value)}")


def parse_status(value: Any, field: str, what: str = "subscriptions/get") -> str | None:
    """"granted"/"denied" (booleans and "true"/"false" tolerated); None means no value."""
    if value is None:
        return None
    if isinstance(value, str) and value.strip().lower() in ("granted", "denied"):
        return value.strip().lower()
    try:
        allowed = parse_allowed(value, field, what)
    except DataError:
        raise _fail(what, field, f"expected \"granted\" or \"denied\", got {_short(value)}") from None
    return None if allowed is None else ("granted" if allowed else "denied")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def parse_consent(body: dict[str, Any] | None, what: str = "consent/get") -> ConsentState | None:
    """A consent get/update body -> ConsentState, or None when it holds no consent values."""
    if not body:
        return None
    raw = body.get("purposes")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise _fail(what, "purposes", f"expected an object, got {type(raw).__name__}")
    purposes, bases = {}, {}
    for code, item in raw.items():
        allowed = _purpose_allowed(code, item, what)
        if allowed is not None:
            purposes[code] = allowed
            basis = item.get("legalBasisCode") if isinstance(item, dict) else None
            if isinstance(basis, str) and basis:
                bases[code] = basis
    if not purposes:
        return None
    return ConsentState(purposes, parse_collected_at(body.get("collectedAt"), "collectedAt", what), bases)


def _purpose_allowed(code: str, item: Any, what: str) -> bool | None:
    if isinstance(item, dict):
        return parse_allowed(item.get("allowed"), f"purposes.{code}.allowed", what)
    if item is None or isinstance(item, (str, bool, int)):
        return parse_allowed(item, f"purposes.{code}", what)
    raise _fail(what, f"purposes.{code}", f"expected an object or \"true\"/\"false\", got {type(item).__name__}")


def parse_subscriptions(body: dict[str, Any] | None, what: str = "subscriptions/get") -> SubscriptionState | None:
    """A subscriptions get body -> SubscriptionState, or None when it holds no topics or controls."""
    if not body:
        return None
    topics = _parse_topics(body.get("topics"), what)
    controls = _parse_controls(body.get("controls"), what)
    if not topics and not controls:
        return None
    return SubscriptionState(topics, controls, parse_collected_at(body.get("collectedAt"), "collectedAt", what))


def _parse_topics(raw: Any, what: str) -> dict[tuple[str, str | None], str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise _fail(what, "topics", f"expected an object, got {type(raw).__name__}")
    out: dict[tuple[str, str | None], str] = {}
    for topic, item in raw.items():
        for channel, status in _topic_settings(topic, item, what):
            if status is not None:
                out[(topic, channel)] = status
    return out


def _topic_settings(topic: str, item: Any, what: str) -> list[tuple[str | None, str | None]]:
    """(channel, status) pairs of one topic, with or without the channel level."""
    if item is None or isinstance(item, (str, bool)):
        return [(None, parse_status(item, f"topics.{topic}", what))]
    if not isinstance(item, dict):
        raise _fail(what, f"topics.{topic}", f"expected an object, got {type(item).__name__}")
    if "status" in item and not isinstance(item["status"], dict):
        flat = [(None, parse_status(item["status"], f"topics.{topic}.status", what))]
        channels = {k: v for k, v in item.items() if isinstance(v, dict)}
        return flat + [(ch, _setting_status(s, f"topics.{topic}.{ch}", what)) for ch, s in channels.items()]
    return [(ch, _setting_status(s, f"topics.{topic}.{ch}", what)) for ch, s in item.items()]


def _setting_status(setting: Any, field: str, what: str) -> str | None:
    """A `{status, impact?}` setting or a bare status string."""
    if isinstance(setting, dict):
        return parse_status(setting.get("status"), f"{field}.status", what)
    if setting is None or isinstance(setting, (str, bool)):
        return parse_status(setting, field, what)
    raise _fail(what, field, f"expected an object with a status, got {type(setting).__name__}")


def _parse_controls(raw: Any, what: str) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise _fail(what, "controls", f"expected an object, got {type(raw).__name__}")
    out = {}
    for code, setting in raw.items():
        status = _setting_status(setting, f"controls.{code}", what)
        if status is not None:
            out[code] = status
    return out
