"""Configuration: one TOML file loaded into frozen dataclasses.

`load_config(path, environ)` returns a `Config` or raises `ConfigError` listing *every*
problem with its key path and fix. Secrets are never values in the file: only the names
of environment variables (`api_key_env = "BRAZE_API_KEY"`), resolved by `secret()`.
Relative paths are resolved against the config file's folder.
"""

from __future__ import annotations

import ipaddress
import re
import os
import tomllib
from datetime import date
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

import phonenumbers

from reconcile.config.model import (
    CONFIG_ENV, DEFAULT_RATE_LIMITS, api_key_problem, has_control_chars, ApplyConfig, BrazeConfig,
    Config, GuardConfig, IdentityConfig, KetchConfig, LedgerConfig, MappingConfig, PolicyConfig, RateLimit,
    ReportConfig, SandboxConfig, SqlSource, StateConfig, TopicMapping, UniverseConfig)
from reconcile.config.metrics import parse_metrics
from reconcile.config.notify import parse_notify
from reconcile.errors import ConfigError, ConfigProblem


# --------------------------------------------------------------------------- loading


class _Reader:
    """Pulls typed values out of a TOML table, collecting problems instead of raising."""

    def __init__(self, data: Mapping[str, Any], prefix: str, problems: list[ConfigProblem]):
        self.data = data if isinstance(data, Mapping) else {}
        self.prefix = prefix
        self.problems = problems
        self.used: set[str] = set()
        if not isinstance(data, Mapping):
            self.fail("", f"must be a table, got {type(data).__name__}", f"write [{prefix}] as a TOML table")

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def fail(self, name: str, problem: str, fix: str) -> None:
        self.problems.append(ConfigProblem(self.key(name) if name else self.prefix, problem, fix))

    def get(self, name: str, kind: type | tuple[type, ...], default: Any, example: str) -> Any:
        self.used.add(name)
        if name not in self.data:
            return default
        value = self.data[name]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        ok = isinstance(value, kind) and not (kind in (int, float) and isinstance(value, bool))
        if not ok:
            want = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
            self.fail(name, f"must be {want}, got {value!r}", f"set {self.key(name)} = {example}")
            return default
        return value

    def number(self, name: str, default: float, *, lo: float, hi: float | None = None,
               integer: bool = False) -> Any:
        value = self.get(name, int if integer else float, default, str(default))
        if value < lo or (hi is not None and value > hi):
            rng = f"between {lo} and {hi}" if hi is not None else f">= {lo}"
            self.fail(name, f"must be {rng}, got {value}", f"set {self.key(name)} = {default}")
            return default
        return value

    def path(self, name: str, base: Path) -> Path | None:
        value = self.get(name, str, None, '"path/to/file"')
        return (base / value).resolve() if value else None

    def unknown(self) -> None:
        for name in self.data:
            if name not in self.used:
                self.fail(name, "unknown key", "remove it or check its spelling against docs/config.md")


def is_loopback(host: str) -> bool:
    """`localhost` or a loopback IP address (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_url(r: _Reader, name: str, value: str, *, braze: bool) -> None:
    if has_control_chars(value) or any(c.isspace() for c in value):
        r.fail(name, f"contains a line break, control character or space: {value!r}",
               f"set {r.key(name)} to the bare URL on one line")
        return
    parts = urlsplit(value)
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not host:
        r.fail(name, f"not an http(s) URL: {value!r}", f"set {r.key(name)} = \"https://...\"")
        return
    if parts.scheme == "http" and not is_loopback(host):
        r.fail(name, f"plain http is allowed only for loopback hosts, got {host}",
               "use https, or 127.0.0.1/localhost for a local sandbox")
    if parts.username or parts.password:
        r.fail(name, "credentials in the URL", "remove user:password from the URL; keys come from *_env variables")
    if braze and not is_loopback(host) and not (host.endswith(".braze.com") or host.endswith(".braze.eu")):
        r.fail(name, f"{host} is not a Braze REST instance",
               "use your instance's REST endpoint, e.g. https://rest.iad-01.braze.com or https://rest.fra-01.braze.eu")


def _braze(data: Any, problems: list[ConfigProblem]) -> BrazeConfig:
    r = _Reader(data, "braze", problems)
    d = BrazeConfig()
    endpoint = r.get("rest_endpoint", str, d.rest_endpoint, '"https://rest.iad-01.braze.com"').rstrip("/")
    _check_url(r, "rest_endpoint", endpoint, braze=True)
    key_env = r.get("api_key_env", str, d.api_key_env, '"BRAZE_API_KEY"')
    if "api_key" in r.data:
        r.used.add("api_key")
        r.fail("api_key", "secret values are not allowed in the config file",
               "delete it; put the key in an environment variable named by braze.api_key_env")
    limits = dict(DEFAULT_RATE_LIMITS)
    rl = _Reader(r.get("rate_limits", dict, {}, "{}"), "braze.rate_limits", problems)
    for name in list(rl.data):
        rl.used.add(name)
        if name not in DEFAULT_RATE_LIMITS:
            rl.fail(name, "unknown endpoint class", f"use one of {', '.join(DEFAULT_RATE_LIMITS)}")
            continue
        sub = _Reader(rl.data[name], f"braze.rate_limits.{name}", problems)
        limits[name] = RateLimit(
            sub.number("requests", DEFAULT_RATE_LIMITS[name].requests, lo=1, integer=True),
            sub.number("per_seconds", float(DEFAULT_RATE_LIMITS[name].per_seconds), lo=0.001))
        sub.unknown()
    cfg = BrazeConfig(
        rest_endpoint=endpoint,
        api_key_env=key_env,
        timeout_seconds=r.number("timeout_seconds", d.timeout_seconds, lo=0.1),
        max_retries=r.number("max_retries", d.max_retries, lo=0, hi=20, integer=True),
        backoff_cap_seconds=r.number("backoff_cap_seconds", d.backoff_cap_seconds, lo=0.0),
        max_body_bytes=r.number("max_body_bytes", d.max_body_bytes, lo=1024, hi=1 << 31, integer=True),
        export_fast_mode=_fast_mode(r, d.export_fast_mode),
        read_concurrency=r.number("read_concurrency", d.read_concurrency, lo=1, hi=32, integer=True),
        budget_share=_share(r, d.budget_share),
        shared_budget=r.get("shared_budget", bool, d.shared_budget, "true"),
        track_batch_size=r.number("track_batch_size", d.track_batch_size, lo=1, hi=75, integer=True),
        profile_cache_days=r.number("profile_cache_days", d.profile_cache_days, lo=0.0, hi=366.0),
        segment_id=r.get("segment_id", str, d.segment_id, '"<id of a segment of all users>"') or None,
        segment_export_wait_seconds=r.number("segment_export_wait_seconds", d.segment_export_wait_seconds, lo=0.0,
                                             hi=86400.0),
        segment_export_poll_seconds=r.number("segment_export_poll_seconds", d.segment_export_poll_seconds, lo=0.01,
                                             hi=3600.0),
        rate_limits=limits,
    )
    r.unknown()
    return cfg


def _fast_mode(r: _Reader, default: bool | str) -> bool | str:
    value = r.get("export_fast_mode", (bool, str), default, '"auto"')
    if isinstance(value, str) and value != "auto":
        r.fail("export_fast_mode", f"must be \"auto\", true or false, got {value!r}",
               'set braze.export_fast_mode = "auto"')
        return default
    return value


def _share(r: _Reader, default: float) -> float:
    value = r.get("budget_share", float, default, str(default))
    if not 0 < value <= 1:
        r.fail("budget_share", f"must be more than 0 and at most 1, got {value}", f"set braze.budget_share = {default}")
        return default
    return float(value)


def _ketch(data: Any, problems: list[ConfigProblem]) -> KetchConfig:
    r = _Reader(data, "ketch", problems)
    d = KetchConfig()
    base = r.get("base_url", str, d.base_url, '"https://global.ketchcdn.com/web/v3"').rstrip("/")
    _check_url(r, "base_url", base, braze=False)
    codes = {}
    for name in ("organization", "property", "environment", "jurisdiction"):
        codes[name] = r.get(name, str, getattr(d, name), '"code"')
        if not codes[name]:
            r.fail(name, "is required", f"set ketch.{name} to your Ketch {name} code")
    cfg = KetchConfig(
        base_url=base, **codes,
        concurrency=r.number("concurrency", d.concurrency, lo=1, hi=1024, integer=True),
        requests_per_second=r.number("requests_per_second", d.requests_per_second, lo=0.0),
        max_requests_per_second=r.number("max_requests_per_second", d.max_requests_per_second, lo=0.0),
        timeout_seconds=r.number("timeout_seconds", d.timeout_seconds, lo=0.1),
        max_retries=r.number("max_retries", d.max_retries, lo=0, hi=20, integer=True),
        http_backend=r.get("http_backend", str, d.http_backend, '"auto"'),
        max_body_bytes=r.number("max_body_bytes", d.max_body_bytes, lo=1024, hi=1 << 31, integer=True),
        max_retry_after_seconds=r.number("max_retry_after_seconds", d.max_retry_after_seconds, lo=0.0, hi=86400.0),
    )
    if cfg.http_backend == "native":  # the old name of the aiohttp path
        cfg = KetchConfig(**{**cfg.__dict__, "http_backend": "aiohttp"})
    if cfg.http_backend not in ("auto", "aiohttp", "httpx"):
        r.fail("http_backend", f"must be auto, aiohttp or httpx, got {cfg.http_backend!r}",
               'set ketch.http_backend = "auto"')
        cfg = KetchConfig(**{**cfg.__dict__, "http_backend": "auto"})
    r.unknown()
    return cfg


PHONE_SOURCES = ("universe", "braze")
CHANNELS = ("email", "sms")


def _identity(data: Any, problems: list[ConfigProblem]) -> IdentityConfig:
    r = _Reader(data, "identity", problems)
    space = r.get("ketch_space", str, "email", '"email"')
    key = r.get("braze_key", str, "email", '"email"')
    if key not in ("email", "external_id"):
        r.fail("braze_key", f"must be 'email' or 'external_id', got {key!r}", 'set identity.braze_key = "email"')
        key = "email"
    region = r.get("phone_region", str, "US", '"US"').strip().upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        r.fail("phone_region", f"{region!r} is not a region code the phone number library knows",
               'set identity.phone_region to the ISO 3166 code national numbers belong to, e.g. "US" or "GB"')
        region = "US"
    sources = r.get("phone_sources", list, [], '["braze"]')
    if not all(isinstance(s, str) and s in PHONE_SOURCES for s in sources):
        r.fail("phone_sources", f"must list some of {', '.join(PHONE_SOURCES)}, got {sources!r}",
               'set identity.phone_sources = ["braze"] (each Braze profile\'s phone) and/or "universe" '
               "(universe.phone_column)")
        sources = []
    phone_space = r.get("ketch_phone_space", str, None, '"phone"') or None
    r.unknown()
    return IdentityConfig(space, key, region, tuple(dict.fromkeys(sources)), phone_space)


def _legal_bases(r: _Reader) -> tuple[tuple[str, str], ...]:
    raw = r.get("purpose_legal_bases", dict, {}, '{ analytics = "legitimateinterest" }')
    if not all(isinstance(k, str) and k and isinstance(v, str) and v for k, v in raw.items()):
        r.fail("purpose_legal_bases", f"must map purpose codes to legal basis codes, got {raw!r}",
               'set mapping.purpose_legal_bases = { analytics = "legitimateinterest" }')
        return ()
    return tuple(sorted(raw.items()))


def _mapping(data: Any, problems: list[ConfigProblem], sandbox: bool = False) -> MappingConfig:
    """Outside the sandbox the global control's "engaged" status must be stated: read the
    wrong way round it unsubscribes everyone, so it has no silent default."""
    r = _Reader(data, "mapping", problems)
    d = MappingConfig()
    topics = []
    seen: set[str] = set()
    pairs: set[tuple[str, str | None]] = set()
    example = '[{topic = "news", channel = "email", subscription_group_id = "..."}]'
    for i, t in enumerate(r.get("topics", list, [], example)):
        tr = _Reader(t, f"mapping.topics[{i}]", problems)
        topic = tr.get("topic", str, "", '"newsletter"')
        group = tr.get("subscription_group_id", str, "", '"<Braze subscription group id>"')
        channel = tr.get("channel", str, None, '"email"')
        if channel is not None and channel not in CHANNELS:
            tr.fail("channel", f"must be one of {', '.join(CHANNELS)}, got {channel!r}",
                    'set channel = "email" or "sms" (the Ketch contact method the group receives)')
        elif (topic, channel) in pairs:
            tr.fail("channel", f"topic {topic!r} channel {channel!r} is mapped twice",
                    "map each topic's channel to one Braze group")
        pairs.add((topic, channel))
        if not topic:
            tr.fail("topic", "is required", "name the Ketch subscription topic code")
        if not group:
            tr.fail("subscription_group_id", "is required", "copy the group id from Braze > Subscription Groups")
        elif group in seen:
            tr.fail("subscription_group_id", f"group {group} is mapped twice",
                    "map each Braze group from one topic/channel")
        seen.add(group)
        tr.unknown()
        topics.append(TopicMapping(topic, channel, group))
    cfg = MappingConfig(
        email_purpose=r.get("email_purpose", str, d.email_purpose, '"email_marketing"'),
        email_purpose_legal_basis=r.get("email_purpose_legal_basis", str, d.email_purpose_legal_basis,
                                        '"consent_optin"'),
        global_control=r.get("global_control", str, d.global_control, '"global_unsubscribe"'),
        global_control_engaged=r.get("global_control_engaged", str, d.global_control_engaged, '"granted"'),
        blocklist_control=r.get("blocklist_control", str, d.blocklist_control, '"do_not_contact"'),
        topics=tuple(topics),
        purpose_legal_bases=_legal_bases(r),
    )
    if not sandbox and cfg.global_control and "global_control_engaged" not in r.data:
        r.fail("global_control_engaged", "is required: it says which Ketch status of the global control means "
               "\"unsubscribe from everything\" (read inverted, every subscriber would be unsubscribed)",
               'set mapping.global_control_engaged = "granted" (or "denied", as configured in Ketch), and check it '
               "against one known subscriber's Ketch record")
    if cfg.global_control_engaged not in ("granted", "denied"):
        r.fail("global_control_engaged", f"must be 'granted' or 'denied', got {cfg.global_control_engaged!r}",
               'set mapping.global_control_engaged = "granted"')
    if not cfg.topics and not cfg.email_purpose:
        r.fail("topics", "nothing is mapped", "add [[mapping.topics]] entries and/or mapping.email_purpose")
    r.unknown()
    return cfg


def _sql(data: Any, prefix: str, problems: list[ConfigProblem]) -> SqlSource | None:
    if data is None:
        return None
    r = _Reader(data, prefix, problems)
    src = SqlSource(r.get("url", str, None, '"sqlite:///users.db"'), r.get("url_env", str, None, '"WAREHOUSE_URL"'),
                    r.get("query", str, "", '"SELECT email AS identity FROM users"'))
    if not (src.url or src.url_env):
        r.fail("url", "url or url_env is required", f"set {prefix}.url_env to the variable holding the database URL")
    if src.url and urlsplit(src.url).password:
        r.fail("url", "a password in the URL", f"move the URL to an environment variable and set {prefix}.url_env")
    if not src.query:
        r.fail("query", "is required", f"set {prefix}.query to a SELECT returning an identity column")
    r.unknown()
    return src


def _iso_date(r: _Reader, name: str, default: str) -> str:
    value = r.get(name, str, default, f'"{default}"')
    try:
        date.fromisoformat(value)
    except ValueError:
        r.fail(name, f"not a calendar date (YYYY-MM-DD): {value!r}", f'set {r.key(name)} = "{default}"')
        return default
    return value


def _universe(data: Any, base: Path, problems: list[ConfigProblem],
              sandbox_seeds_files: bool = False) -> UniverseConfig:
    r = _Reader(data, "universe", problems)
    d = UniverseConfig()
    cfg = UniverseConfig(
        csv=r.path("csv", base), parquet=r.path("parquet", base),
        sql=_sql(r.get("sql", dict, None, "{...}"), "universe.sql", problems),
        identity_column=r.get("identity_column", str, d.identity_column, '"identity"'),
        phone_column=r.get("phone_column", str, d.phone_column, '"phone"') or None,
        braze_unsubscribes=r.get("braze_unsubscribes", bool, True, "true"),
        braze_hard_bounces=r.get("braze_hard_bounces", bool, True, "true"),
        window_days=r.number("window_days", d.window_days, lo=1, integer=True),
        full_since=_iso_date(r, "full_since", d.full_since),
        deletions_csv=r.path("deletions_csv", base),
        deletions_sql=_sql(r.get("deletions_sql", dict, None, "{...}"), "universe.deletions_sql", problems),
        slices=r.number("slices", 1, lo=1, hi=10000, integer=True),
        chunk_size=r.number("chunk_size", d.chunk_size, lo=1, integer=True),
        absence_recheck_hours=r.number("absence_recheck_hours", d.absence_recheck_hours, lo=0.0, hi=24.0 * 31),
        resume_parts_hours=r.number("resume_parts_hours", d.resume_parts_hours, lo=0.0, hi=24.0 * 7),
        **_deletion_shape(r, d),
    )
    for name in ("csv", "parquet", "deletions_csv"):
        p = getattr(cfg, name)
        if p is not None and not p.exists() and not sandbox_seeds_files:
            r.fail(name, f"file not found: {p}", "create the file or fix the path (relative to the config file)")
    r.unknown()
    return cfg


def _deletion_shape(r: _Reader, d: UniverseConfig) -> dict[str, Any]:
    """How deletion files and queries are read: `identity, requested_at`, or Ketch's DSR
    records (`request_id, subject, identity_space, email, right_code, canonical_right_code,
    submitted_at`) filtered to the erasure rights."""
    fmt = r.get("deletions_format", str, d.deletions_format, '"auto"')
    if fmt not in ("auto", "identity", "ketch_dsr"):
        r.fail("deletions_format", f"must be auto, identity or ketch_dsr, got {fmt!r}",
               'set universe.deletions_format = "auto"')
        fmt = d.deletions_format
    rights = r.get("deletions_rights", list, list(d.deletions_rights), '["delete"]')
    if not rights or not all(isinstance(x, str) and x for x in rights):
        r.fail("deletions_rights", f"must be a non-empty list of right codes, got {rights!r}",
               'set universe.deletions_rights = ["delete"]')
        rights = list(d.deletions_rights)
    return dict(
        deletions_format=fmt,
        deletions_right_column=r.get("deletions_right_column", str, d.deletions_right_column, '"canonical_right_code"'),
        deletions_rights=tuple(rights),
        deletions_identity_column=r.get("deletions_identity_column", str, d.deletions_identity_column,
                                        '"email"') or None,
        deletions_email_column=r.get("deletions_email_column", str, d.deletions_email_column, '"email"'),
        deletions_requested_at_column=r.get("deletions_requested_at_column", str, d.deletions_requested_at_column,
                                            '"submitted_at"'),
    )


def _ledger(data: Any, problems: list[ConfigProblem]) -> LedgerConfig:
    r = _Reader(data, "ledger", problems)
    d = LedgerConfig()
    hosts = r.get("callback_hosts", list, [], '["dsr.ketch.com"]')
    if not all(isinstance(h, str) and h.strip(".") for h in hosts):
        r.fail("callback_hosts", f"must be a list of host names, got {hosts!r}",
               'set ledger.callback_hosts = ["dsr.ketch.com"]')
        hosts = []
    path = r.get("path", str, d.path, '"/ketch/events"')
    if not path.startswith("/"):
        r.fail("path", f"must start with /, got {path!r}", 'set ledger.path = "/ketch/events"')
        path = d.path
    cfg = LedgerConfig(
        enabled=r.get("enabled", bool, d.enabled, "true"),
        host=r.get("host", str, d.host, '"127.0.0.1"'),
        port=r.number("port", d.port, lo=1, hi=65535, integer=True),
        path=path,
        bearer_token_env=r.get("bearer_token_env", str, d.bearer_token_env, '"KETCH_WEBHOOK_TOKEN"') or None,
        auth_header=_auth_header(r, d.auth_header),
        auth_scheme=_auth_scheme(r, d.auth_scheme),
        basic_user_env=r.get("basic_user_env", str, d.basic_user_env, '"KETCH_WEBHOOK_USER"') or None,
        basic_password_env=r.get("basic_password_env", str, d.basic_password_env, '"KETCH_WEBHOOK_PASSWORD"') or None,
        max_body_bytes=r.number("max_body_bytes", d.max_body_bytes, lo=1024, hi=16 * 1024 * 1024, integer=True),
        request_timeout_seconds=r.number("request_timeout_seconds", d.request_timeout_seconds, lo=0.5, hi=300.0),
        max_connections_per_client=r.number("max_connections_per_client", d.max_connections_per_client, lo=0,
                                            hi=100_000, integer=True),
        max_requests_in_flight=r.number("max_requests_in_flight", d.max_requests_in_flight, lo=1, hi=10_000,
                                        integer=True),
        expected_completion_hours=r.number("expected_completion_hours", d.expected_completion_hours, lo=0.0,
                                           hi=24.0 * 90),
        callback_hosts=tuple(h.strip(".").lower() for h in hosts),
        callback_headers=tuple(str(h).strip().lower() for h in r.get("callback_headers", list,
                                                                   list(d.callback_headers), '["Authorization"]')),
        callback_loopback_for_tests=r.get("callback_loopback_for_tests", bool, d.callback_loopback_for_tests,
                                          "false"),
        callback_timeout_seconds=r.number("callback_timeout_seconds", d.callback_timeout_seconds, lo=0.1, hi=300.0),
        callback_max_body_bytes=r.number("callback_max_body_bytes", d.callback_max_body_bytes, lo=0,
                                         hi=16 * 1024 * 1024, integer=True),
        callback_tries_per_run=r.number("callback_tries_per_run", d.callback_tries_per_run, lo=1, hi=10, integer=True),
        callback_backoff_seconds=r.number("callback_backoff_seconds", d.callback_backoff_seconds, lo=0.0, hi=60.0),
        callback_retry_seconds=r.number("callback_retry_seconds", d.callback_retry_seconds, lo=0.0, hi=7 * 86400.0),
        callback_max_attempts=r.number("callback_max_attempts", d.callback_max_attempts, lo=1, hi=1000, integer=True),
        mirror=r.get("mirror", bool, d.mirror, "true"),
        mirror_audit_fraction=_audit_fraction(r, d.mirror_audit_fraction),
    )
    if cfg.mirror and not cfg.enabled:
        r.fail("mirror", "the Ketch mirror is fed by the webhook ledger, which is not enabled",
               "set ledger.enabled = true (and run `reconcile ledger serve`), or set ledger.mirror = false")
    if (cfg.basic_user_env is None) != (cfg.basic_password_env is None):
        r.fail("basic_user_env", "basic auth needs both basic_user_env and basic_password_env",
               "set both, or use ledger.bearer_token_env")
    if cfg.enabled and not (cfg.bearer_token_env or cfg.basic_user_env):
        r.fail("bearer_token_env", "the ledger is enabled without authentication",
               'set ledger.bearer_token_env = "KETCH_WEBHOOK_TOKEN" (or basic_user_env and basic_password_env) '
               "to the variable holding the secret configured in Ketch's webhook")
    r.unknown()
    return cfg


def _audit_fraction(r: _Reader, default: float) -> float:
    value = float(r.get("mirror_audit_fraction", float, default, "0.0333"))
    if not 0 < value <= 1:
        r.fail("mirror_audit_fraction", f"must be above 0 and at most 1, got {value}",
               "set ledger.mirror_audit_fraction = 0.0333 (each mirrored subject checked against Ketch about "
               "every 30 full runs)")
        return default
    return value


_TOKEN_CHARS = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_RESERVED_HEADERS = frozenset({"content-type", "content-length", "host", "transfer-encoding", "connection",
                               "cookie", "expect", "te", "upgrade", "trailer", "keep-alive"})


def _auth_header(r: _Reader, default: str) -> str:
    name = r.get("auth_header", str, default, '"Authorization"').strip()
    if not _TOKEN_CHARS.fullmatch(name) or name.lower() in _RESERVED_HEADERS:
        r.fail("auth_header", f"must be an HTTP header name other than the message's own headers, got {name!r}",
               'set ledger.auth_header to the header name configured in Ketch\'s webhook, e.g. "X-Ketch-Token"')
        return default
    return name


def _auth_scheme(r: _Reader, default: str) -> str:
    scheme = r.get("auth_scheme", str, default, '"Bearer"').strip()
    if scheme and not _TOKEN_CHARS.fullmatch(scheme):
        r.fail("auth_scheme", f"must be one word such as Bearer or Token, or \"\" for none, got {scheme!r}",
               'set ledger.auth_scheme = "Bearer" (or "" when Ketch sends the token alone)')
        return default
    return scheme


def _guards(data: Any, problems: list[ConfigProblem]) -> GuardConfig:
    r = _Reader(data, "guards", problems)
    d = GuardConfig()
    cfg = GuardConfig(
        max_shrink_fraction=r.number("max_shrink_fraction", d.max_shrink_fraction, lo=0.0, hi=1.0),
        max_deletions=r.number("max_deletions", d.max_deletions, lo=0, integer=True),
        max_deletion_fraction=r.number("max_deletion_fraction", d.max_deletion_fraction, lo=0.0, hi=1.0),
        max_unsubscribe_fraction=r.number("max_unsubscribe_fraction", d.max_unsubscribe_fraction, lo=0.0, hi=1.0),
        max_subscribe_fraction=r.number("max_subscribe_fraction", d.max_subscribe_fraction, lo=0.0, hi=1.0),
        min_universe=r.number("min_universe", d.min_universe, lo=0, integer=True),
    )
    r.unknown()
    return cfg


def _policy(data: Any, problems: list[ConfigProblem]) -> PolicyConfig:
    r = _Reader(data, "policy", problems)
    prio = r.get("deletion_prioritization", list, [], '["identified", "most_recently_updated"]')
    allowed = {"identified", "unidentified", "most_recently_updated"}
    if any(p not in allowed for p in prio) or ("identified" in prio and "unidentified" in prio):
        r.fail("deletion_prioritization", f"invalid {prio!r}",
               "use an ordered list of identified|unidentified|most_recently_updated, "
               "at most one of identified/unidentified")
        prio = []
    cfg = PolicyConfig(
        write_back_optouts=r.get("write_back_optouts", bool, False, "true"),
        apply_optins=r.get("apply_optins", bool, False, "true"),
        alias_unmatched=r.get("alias_unmatched", bool, False, "true"),
        suppress_deleted_emails=r.get("suppress_deleted_emails", bool, False, "true"),
        deletion_prioritization=tuple(prio),
        ketch_defaults_are_choices=r.get("ketch_defaults_are_choices", bool, False, "true"),
    )
    r.unknown()
    return cfg


def _simple(data: Any, name: str, cls: type, base: Path, problems: list[ConfigProblem]) -> Any:
    r = _Reader(data, name, problems)
    d = cls()
    kwargs: dict[str, Any] = {}
    for fname in d.__dataclass_fields__:
        default = getattr(d, fname)
        if isinstance(default, Path) or fname in ("state_file",):
            value = r.path(fname, base)
            kwargs[fname] = value if value is not None else (base / default if isinstance(default, Path) else None)
        elif isinstance(default, bool):
            kwargs[fname] = r.get(fname, bool, default, "true")
        elif isinstance(default, (int, float)):
            kwargs[fname] = r.number(fname, default, lo=0, integer=isinstance(default, int))
        elif isinstance(default, tuple):
            values = r.get(fname, list, list(default), '["..."]')
            if not all(isinstance(v, str) for v in values):
                r.fail(fname, f"must be a list of strings, got {values!r}", f'set {r.key(fname)} = ["..."]')
                values = list(default)
            kwargs[fname] = tuple(values)
        else:
            kwargs[fname] = r.get(fname, str, default, '"..."')
    r.unknown()
    return cls(**kwargs)


def _sandbox_problems(sb: SandboxConfig) -> list[ConfigProblem]:
    checks = [("braze_permissions", sb.braze_permissions in ("all", "partner"), 'use "all" or "partner"'),
              ("track_object_limit", sb.track_object_limit >= 1, "use 75 (most contracts) or 50 (MAU CY 24-25)"),
              ("user_status_shape", sb.user_status_shape in ("users", "documented"), 'use "users" or "documented"'),
              ("track_limit_wording", sb.track_limit_wording in ("documented", "other"),
               'use "documented" or "other"'),
              ("segment_export", sb.segment_export in ("url", "bucket", "failed", "busy"),
               'use "url", "bucket", "failed" or "busy"'),
              ("segment_export_delay_seconds", sb.segment_export_delay_seconds >= 0, "use 0 or more seconds"),
              ("alias_visibility_delay_seconds", sb.alias_visibility_delay_seconds >= 0, "use 0 or more seconds"),
              ("email_match", sb.email_match in ("lower", "casefold"), 'use "lower" or "casefold"')]
    return [ConfigProblem(f"sandbox.{key}", f"invalid value {getattr(sb, key)!r}", fix)
            for key, ok, fix in checks if not ok]


def _report_problems(rc: ReportConfig, explicit: Mapping[str, Any]) -> list[ConfigProblem]:
    from reconcile.config.report import report_problems

    return report_problems(rc, check_countries="holiday_countries" in explicit)


def parse_config(data: Mapping[str, Any], base: Path, path: Path | None = None) -> Config:
    problems: list[ConfigProblem] = []
    sections = {"braze", "ketch", "identity", "mapping", "universe", "guards", "policy",
                "apply", "state", "report", "sandbox", "notify", "metrics", "ledger"}
    for name in data:
        if name not in sections:
            problems.append(ConfigProblem(name, "unknown section", f"use one of {', '.join(sorted(sections))}"))
    state = _simple(data.get("state", {}), "state", StateConfig, base, problems)
    if state.url.startswith("sqlite:///") and not state.url.startswith("sqlite:////") and ":memory:" not in state.url:
        local = (base / state.url[len("sqlite:///"):]).resolve()
        state = StateConfig(url="sqlite:///" + str(local), url_env=state.url_env)
    cfg = Config(
        braze=_braze(data.get("braze", {}), problems),
        ketch=_ketch(data.get("ketch", {}), problems),
        identity=_identity(data.get("identity", {}), problems),
        mapping=_mapping(data.get("mapping", {}), problems, sandbox=isinstance(data.get("sandbox"), Mapping)
                         and data["sandbox"].get("enabled") is True),
        universe=_universe(data.get("universe", {}), base, problems,
                           sandbox_seeds_files=isinstance(data.get("sandbox"), Mapping)
                           and data["sandbox"].get("enabled") is True),
        guards=_guards(data.get("guards", {}), problems),
        policy=_policy(data.get("policy", {}), problems),
        apply=_simple(data.get("apply", {}), "apply", ApplyConfig, base, problems),
        state=state,
        report=_simple(data.get("report", {}), "report", ReportConfig, base, problems),
        sandbox=_simple(data.get("sandbox", {}), "sandbox", SandboxConfig, base, problems),
        notify=parse_notify(data.get("notify", {}), problems),
        metrics=parse_metrics(data.get("metrics", {}), base, problems),
        ledger=_ledger(data.get("ledger", {}), problems),
        path=path,
    )
    problems.extend(_sandbox_problems(cfg.sandbox))
    report = data.get("report")
    problems.extend(_report_problems(cfg.report, explicit=report if isinstance(report, Mapping) else {}))
    problems.extend(sms_problems(cfg))
    if cfg.identity.braze_key == "email" and cfg.identity.ketch_space != "email":
        problems.append(ConfigProblem("identity.ketch_space", "Braze key is email but the Ketch space is not",
                                      'use ketch_space = "email" with braze_key = "email"'))
    if problems:
        raise ConfigError(problems, source=str(path) if path else "config")
    return cfg


def sms_problems(cfg: Config) -> list[ConfigProblem]:
    """An SMS group must be addressable: Braze takes only phone or external_id there, so with
    email keys a phone source is needed; `universe` as a source needs its column."""
    out = []
    ident = cfg.identity
    if "universe" in ident.phone_sources and not cfg.universe.phone_column:
        out.append(ConfigProblem("identity.phone_sources", "\"universe\" is a phone source but no column is named",
                                 'set universe.phone_column = "<the identity list\'s phone column>"'))
    if ident.braze_key != "email" or ident.phone_sources:
        return out
    for i, m in enumerate(cfg.mapping.topics):
        if m.sms:
            out.append(ConfigProblem(
                f"mapping.topics[{i}].channel",
                f"SMS topic {m.topic!r} (group {m.subscription_group_id}) cannot be addressed: Braze takes only "
                "phone or external_id for an SMS group, the key is email and no phone source is configured",
                'set identity.phone_sources = ["braze"] (the phone on each Braze profile) or ["universe"] with '
                'universe.phone_column = "<column>", or use identity.braze_key = "external_id"'))
    return out


def config_path(explicit: str | os.PathLike | None, environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    raw = explicit or env.get(CONFIG_ENV)
    if not raw:
        raise ConfigError(ConfigProblem("--config", "no config file given",
                                        f"pass --config PATH or set {CONFIG_ENV}; `reconcile init` writes a "
                                        "production config to fill in, `reconcile demo` runs the sandbox job"))
    return Path(raw)


def load_config(path: str | os.PathLike, environ: Mapping[str, str] | None = None) -> Config:
    p = Path(path)
    if not p.exists():
        raise ConfigError(ConfigProblem(str(p), "file not found", "check the path or set RECONCILE_CONFIG"))
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(ConfigProblem(str(p), f"not valid TOML: {exc}", "fix the syntax at the line shown")) from None
    return parse_config(data, p.resolve().parent, p.resolve())


PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")


def proxy_problems(http_backend: str, environ: Mapping[str, str] | None = None) -> list[ConfigProblem]:
    """Proxies from the environment the Ketch client's aiohttp path (http_backend "auto",
    "aiohttp" or its old name "native") cannot use: it takes only http:// proxies, and would
    ignore an https:// or socks one and connect directly."""
    if http_backend not in ("auto", "aiohttp", "native"):
        return []
    env = os.environ if environ is None else environ
    problems = []
    for name in PROXY_VARS:
        value = env.get(name)
        if not value:
            continue
        try:
            parts = urlsplit(value)
            scheme, host = parts.scheme, parts.hostname
        except ValueError:
            scheme, host = "", None
        if scheme != "http" or not host or has_control_chars(value):
            shown = f"a {scheme}:// proxy" if scheme and host else "a value that is not a proxy URL"
            problems.append(ConfigProblem(
                "ketch.http_backend", f"environment variable {name} holds {shown}, which ketch.http_backend = "
                f"{http_backend!r} (aiohttp) cannot use: it takes http://host:port proxies only",
                f'set {name}=http://host:port, or ketch.http_backend = "httpx"'))
    return problems


def check_environment(cfg: Config, environ: Mapping[str, str] | None = None) -> list[ConfigProblem]:
    """Problems that depend on the environment rather than the file (missing secrets)."""
    env = os.environ if environ is None else environ
    problems = proxy_problems(cfg.ketch.http_backend, env)
    key = env.get(cfg.braze.api_key_env)
    if key and (problem := api_key_problem(cfg.braze.api_key_env, key)) is not None:
        problems.append(problem)
    if not cfg.sandbox.enabled and not env.get(cfg.braze.api_key_env):
        problems.append(ConfigProblem("braze.api_key_env", f"environment variable {cfg.braze.api_key_env} is not set",
                                      f"export {cfg.braze.api_key_env}=<your Braze REST API key>"))
    for key, name in (("state.url_env", cfg.state.url_env),
                      ("universe.sql.url_env", cfg.universe.sql and cfg.universe.sql.url_env),
                      ("universe.deletions_sql.url_env",
                       cfg.universe.deletions_sql and cfg.universe.deletions_sql.url_env)):
        if name and not env.get(name):
            problems.append(ConfigProblem(key, f"environment variable {name} is not set",
                                          f"export {name}=<database URL>"))
    return problems


OPTIONAL_ENV = {"report.mask_key_env", "ledger.bearer_token_env", "ledger.basic_user_env", "ledger.basic_password_env"}


def _env_refs(data: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Every `*_env = "NAME"` in a raw TOML tree, as (key path, variable name)."""
    out: list[tuple[str, str]] = []
    if isinstance(data, Mapping):
        for k, v in data.items():
            path = f"{prefix}.{k}" if prefix else k
            if k.endswith("_env") and isinstance(v, str):
                out.append((path, v))
            else:
                out += _env_refs(v, path)
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out += _env_refs(v, f"{prefix}[{i}]")
    return out


PLACEHOLDER = re.compile(r"^<[^<>]+>$")


def placeholder_problems(data: Any, prefix: str = "") -> list[ConfigProblem]:
    """Every value still written `<like this>` (as `reconcile init` leaves them), named by key."""
    out: list[ConfigProblem] = []
    if isinstance(data, Mapping):
        for k, v in data.items():
            out += placeholder_problems(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out += placeholder_problems(v, f"{prefix}[{i}]")
    elif isinstance(data, str) and PLACEHOLDER.match(data.strip()):
        out.append(ConfigProblem(prefix, f"placeholder not filled in: {data.strip()}",
                                 f"replace it with {data.strip()[1:-1]}"))
    return out


def check_file(path: str | os.PathLike, environ: Mapping[str, str] | None = None) -> list[ConfigProblem]:
    """Every problem of a config file at once: syntax, values, and unset environment variables."""
    env = os.environ if environ is None else environ
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return [ConfigProblem(str(p), "file not found", "check the path or set RECONCILE_CONFIG")]
    except tomllib.TOMLDecodeError as exc:
        return [ConfigProblem(str(p), f"not valid TOML: {exc}", "fix the syntax at the line shown")]
    placeholders = placeholder_problems(data)
    problems: list[ConfigProblem] = list(placeholders)
    try:
        parse_config(data, p.resolve().parent, p.resolve())
    except ConfigError as exc:
        unfilled = {q.key for q in placeholders}
        problems += [q for q in exc.problems if q.key not in unfilled]
    section = data.get("sandbox")
    sandbox = bool(section.get("enabled", False)) if isinstance(section, Mapping) else False
    refs = _env_refs(data)
    if "braze" not in data or "api_key_env" not in (data.get("braze") or {}):
        refs.append(("braze.api_key_env", BrazeConfig().api_key_env))
    for key, name in refs:
        if key == "braze.api_key_env" and env.get(name) and (problem := api_key_problem(name, env[name])):
            problems.append(problem)
        if env.get(name) or key in OPTIONAL_ENV or (sandbox and key == "braze.api_key_env"):
            continue
        problems.append(ConfigProblem(key, f"environment variable {name} is not set", f"export {name}=<value>"))
    ketch_data = data.get("ketch")
    ketch = ketch_data if isinstance(ketch_data, Mapping) else {}
    backend = ketch.get("http_backend", "auto")
    problems += proxy_problems(backend if isinstance(backend, str) else "auto", env)
    return problems
