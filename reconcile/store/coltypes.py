"""Column types shared by the schema: UTC timestamps and secret-free JSON.

`UTCDateTime` accepts only timezone-aware datetimes, stores them in UTC and always returns
aware UTC datetimes, on SQLite (which has no timestamp type) as on PostgreSQL.

`SafeJSON` is JSON that never persists a secret: values under secret-looking keys
(`authorization`, `api_key`, `password`, `*_token`, ...) and bearer strings are replaced
by `***` before they are written. The state store is evidence; credentials are not.
"""

from __future__ import annotations

import json
import re
from datetime import date, datetime, timezone
from decimal import Decimal
from functools import lru_cache
from typing import Any

from sqlalchemy import JSON, DateTime
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

REDACTED = "***"
SECRET_KEY = re.compile(
    r"(^|[-_ .])(authorization|password|passwd|secret|token|api[-_]?key|apikey|cookie|set-cookie)$",
    re.IGNORECASE,
)
BEARER = re.compile(r"^\s*(bearer|basic)\s+\S", re.IGNORECASE)


def scrub_secrets(value: Any) -> Any:
    """Return `value` with secret-looking entries replaced by `***` (recursively)."""
    if isinstance(value, str):
        return REDACTED if BEARER.match(value) else value
    if isinstance(value, dict):
        return {k: REDACTED if _secret_key(k) else scrub_secrets(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub_secrets(v) for v in value]
    return value


@lru_cache(maxsize=4096)
def _secret_key(key: object) -> bool:
    return isinstance(key, str) and bool(SECRET_KEY.search(key))


def json_default(value: Any) -> Any:
    """`json.dumps` fallback: datetimes as ISO 8601, Decimals and sets made plain."""
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


_ENCODER = json.JSONEncoder(default=json_default, ensure_ascii=False)


def dumps(value: Any) -> str:
    """Serialize a JSON column value (the engine's `json_serializer`)."""
    return _ENCODER.encode(value)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp; naive datetimes are refused."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()}: pass a timezone-aware UTC datetime")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class SafeJSON(TypeDecorator[Any]):
    """JSON with secret-looking values scrubbed on the way in."""

    impl = JSON(none_as_null=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        return scrub_secrets(value)
