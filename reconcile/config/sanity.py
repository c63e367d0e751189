"""Checks `config check` adds once the config parses: a Braze endpoint that is not a REST host
(a warning: self-hosted proxies exist) and a universe CSV whose header lacks the identity column
(a problem: every run would stop on it)."""

from __future__ import annotations

import csv
from urllib.parse import urlsplit

from reconcile.config.model import Config
from reconcile.errors import ConfigProblem

REST_HOST_PREFIX = "rest."
BRAZE_DOMAINS = (".braze.com", ".braze.eu")


def endpoint_warnings(cfg: Config) -> list[str]:
    if cfg.sandbox.enabled:
        return []
    host = (urlsplit(cfg.braze.rest_endpoint).hostname or "").lower()
    if host.endswith(BRAZE_DOMAINS) and not host.startswith(REST_HOST_PREFIX):
        return [f"braze.rest_endpoint: {host} is not a Braze REST host (a dashboard URL?); the REST endpoint "
                "looks like https://rest.iad-01.braze.com (Settings > APIs and Identifiers)"]
    return []


def universe_header_problems(cfg: Config) -> list[ConfigProblem]:
    path = cfg.universe.csv
    if path is None or cfg.sandbox.enabled:
        return []
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            header = next(csv.reader(f), [])
    except (OSError, UnicodeDecodeError):
        return []  # unreadable here: the run reports it with the file's own error
    column = cfg.universe.identity_column
    if column in [h.strip() for h in header]:
        return []
    shown = ", ".join(header[:8]) or "(empty)"
    return [ConfigProblem("universe.identity_column", f"{path}: the header has no column {column!r} (columns: {shown})",
                          "rename the column in the file or set universe.identity_column to the one holding "
                          "the identities")]
