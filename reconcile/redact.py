"""Keep secrets out of logs, errors, reports and the state database."""

from __future__ import annotations

import logging
import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

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


def redact_text(text: str, secrets: list[str]) -> str:
    for s in secrets:
        if s and len(s) >= 4:
            text = text.replace(s, REDACTED)
    return text


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
