"""Keep secrets and identities out of logs, errors, reports and the state database.

* `redact_text` masks known secret values, and their escaped forms (as `repr`, JSON
  and URL encoding show them), in any text.
* `SecretFilter` does that to every log record.
* `QueryFilter` masks the values of URL query strings in every log record (HTTP
  libraries log whole URLs, and Braze reads put emails in them), keeping only
  parameters that identify nobody (`SAFE_QUERY_PARAMS`).
"""

from __future__ import annotations

import json
import logging
import re
from functools import lru_cache
from urllib.parse import parse_qsl, quote, quote_plus, urlencode, urlsplit, urlunsplit

SECRET_WORDS = re.compile(r"(key|token|secret|password|passwd|auth|credential)", re.IGNORECASE)
REDACTED = "***"


def sanitize_url(url: str) -> str:
    """Drop user-info and mask secret-looking query parameters."""
    parts = urlsplit(str(url))
    netloc = parts.hostname or ""
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    query = urlencode(
        [(k, REDACTED if SECRET_WORDS.search(k) else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def is_secret_name(name: str) -> bool:
    return bool(SECRET_WORDS.search(name)) and not name.endswith("_env")


def _escaped(text: str) -> set[str]:
    return {repr(text)[1:-1], json.dumps(text)[1:-1], text.encode("unicode_escape").decode("ascii"),
            repr(text.encode("utf-8"))[2:-1]}


@lru_cache(maxsize=64)
def secret_forms(secret: str) -> tuple[str, ...]:
    """`secret` as written; as repr (of the text or its bytes), JSON and URL encoding escape
    it; and escaped twice (the repr of an exception quoting it). Longest first."""
    once = _escaped(secret)
    forms = {secret, quote(secret, safe=""), quote_plus(secret), *once, *(f for o in once for f in _escaped(o))}
    return tuple(sorted((f for f in forms if f), key=len, reverse=True))


def redact_text(text: str, secrets: list[str]) -> str:
    for s in secrets:
        if s and len(s) >= 4:
            for form in secret_forms(s):
                text = text.replace(form, REDACTED)
    return text


# Query parameters whose values identify nobody: kept in logs, every other value masked.
SAFE_QUERY_PARAMS = frozenset({"limit", "offset", "start_date", "end_date", "sort_direction",
                               "subscription_group_id", "page"})
_URL_QUERY = re.compile(r"(?P<head>\b[a-z][a-z0-9+.-]*://[^\s?#\"'<>]+)\?(?P<query>[^\s#\"'<>]*)", re.IGNORECASE)


def _mask_query(match: re.Match[str]) -> str:
    pairs = []
    for part in match.group("query").split("&"):
        name, sep, _value = part.partition("=")
        safe = name.lower() in SAFE_QUERY_PARAMS and not SECRET_WORDS.search(name)
        pairs.append(part if safe or not sep else f"{name}={REDACTED}")
    return f"{match.group('head')}?{'&'.join(pairs)}"


def redact_queries(text: str) -> str:
    """Every URL in `text` with its query values masked, but for `SAFE_QUERY_PARAMS`."""
    return _URL_QUERY.sub(_mask_query, text) if "?" in text else text


class QueryFilter(logging.Filter):
    """A logging filter that masks URL query values in every record (see `redact_queries`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is left to logging's own error path
            return True
        masked = redact_queries(msg)
        if masked != msg:
            record.msg, record.args = masked, None
        return True


HTTP_LOGGERS = ("httpx", "httpcore", "aiohttp", "aiohttp.client", "urllib3", "urllib3.connectionpool")


def install_query_filter(handlers: list[logging.Handler]) -> None:
    """Add a `QueryFilter` to `handlers` and to the HTTP libraries' loggers, once each."""
    targets: list[logging.Filterer] = [*handlers, *(logging.getLogger(n) for n in HTTP_LOGGERS)]
    for target in targets:
        if not any(isinstance(f, QueryFilter) for f in target.filters):
            target.addFilter(QueryFilter())


class SecretFilter(logging.Filter):
    """A logging filter that masks known secret values in every record."""

    def __init__(self, secrets: list[str]):
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            msg = record.getMessage()
            record.msg = redact_text(msg, self.secrets)
            record.args = None
        return True
