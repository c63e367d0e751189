"""The configuration model: frozen dataclasses, defaults, and secret resolution.

Parsing and validation live in `reconcile.config`, which re-exports every name here.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

from reconcile.errors import ConfigError, ConfigProblem
from reconcile.config.metrics import MetricsConfig
from reconcile.config.notify import NotifyConfig

CONFIG_ENV = "RECONCILE_CONFIG"
SANDBOX_BRAZE_KEY = "sandbox-rest-key"


@dataclass(frozen=True)
class RateLimit:
    requests: int
    per_seconds: float


# Braze documented defaults (braze-api.md §0 "Per-endpoint rate limits").
DEFAULT_RATE_LIMITS: dict[str, RateLimit] = {
    "users_track": RateLimit(3000, 3),
    "users_export_ids": RateLimit(250, 60),
    "users_export_ids_fast": RateLimit(40, 1),
    "users_identity": RateLimit(20000, 60),  # delete, alias/new, identify, merge (shared)
    "subscription_set": RateLimit(5000, 60),  # v1 + v2 shared
    "shared": RateLimit(250000, 3600),  # subscription/status/get, user/status, email/*
}


@dataclass(frozen=True)
class BrazeConfig:
    rest_endpoint: str = "https://rest.iad-01.braze.com"
    api_key_env: str = "BRAZE_API_KEY"
    timeout_seconds: float = 30.0  # per try: connecting, sending and reading the whole answer
    max_retries: int = 5
    backoff_cap_seconds: float = 60.0
    max_body_bytes: int = 16 * 1024 * 1024  # largest answer accepted, as sent or decompressed
    export_fast_mode: bool | str = "auto"  # "auto": the 40/s option when the workspace's answers show it applies
    read_concurrency: int = 4  # Braze read requests in flight at once per read call
    budget_share: float = 0.5  # share of each shared rate class (the 250,000/h one) this job may use
    shared_budget: bool = False  # count rate windows in the state database (PostgreSQL), shared by workers
    track_batch_size: int = 75
    profile_cache_days: float = 7.0
    segment_id: str | None = None
    segment_export_wait_seconds: float = 0.0  # longest wait for the export's file; 0: sized from the workspace
    segment_export_poll_seconds: float = 15.0  # between looks at the export's download (and its shared record)
    rate_limits: Mapping[str, RateLimit] = field(default_factory=lambda: dict(DEFAULT_RATE_LIMITS))


@dataclass(frozen=True)
class KetchConfig:
    base_url: str = "https://global.ketchcdn.com/web/v3"
    organization: str = ""
    property: str = ""
    environment: str = "production"
    jurisdiction: str = ""
    concurrency: int = 32
    requests_per_second: float = 20.0  # the cautious starting rate; rises on measured success up to the max
    max_requests_per_second: float = 500.0
    timeout_seconds: float = 10.0
    max_retries: int = 5
    http_backend: str = "auto"  # "auto" (aiohttp unless a transport is injected), "aiohttp" or "httpx"
    max_body_bytes: int = 16 * 1024 * 1024  # largest answer accepted, as sent or decompressed
    max_retry_after_seconds: float = 300.0  # a longer Retry-After is waited for this long


@dataclass(frozen=True)
class IdentityConfig:
    ketch_space: str = "email"
    braze_key: str = "email"  # "email" or "external_id"
    phone_region: str = "US"  # ISO region national phone numbers are read in (E.164 otherwise)
    phone_sources: tuple[str, ...] = ()  # where a subject's phone numbers come from: "universe", "braze"
    ketch_phone_space: str | None = None  # Ketch identity space of phone numbers (SMS write-backs carry it)


@dataclass(frozen=True)
class TopicMapping:
    topic: str
    channel: str | None
    subscription_group_id: str

    @property
    def sms(self) -> bool:
        """An SMS group: addressed by phone or external_id only, never by email."""
        return self.channel == "sms"


@dataclass(frozen=True)
class MappingConfig:
    email_purpose: str | None = None
    email_purpose_legal_basis: str = "consent_optin"
    global_control: str = "global_unsubscribe"
    global_control_engaged: str = "granted"
    blocklist_control: str | None = None
    topics: tuple[TopicMapping, ...] = ()
    # legal basis of other purposes, for a consent write-back when Ketch's answer names none
    purpose_legal_bases: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class SqlSource:
    url: str | None = None
    url_env: str | None = None
    query: str = ""


@dataclass(frozen=True)
class UniverseConfig:
    csv: Path | None = None
    parquet: Path | None = None
    sql: SqlSource | None = None
    identity_column: str = "identity"
    phone_column: str | None = None  # column of the identity list holding phone numbers
    braze_unsubscribes: bool = True
    braze_hard_bounces: bool = True
    window_days: int = 30
    full_since: str = "2010-01-01"
    deletions_csv: Path | None = None
    deletions_sql: SqlSource | None = None
    slices: int = 1
    chunk_size: int = 200_000
    absence_recheck_hours: float = 24.0
    resume_parts_hours: float = 12.0
    deletions_format: str = "auto"  # "auto", "identity" (identity, requested_at) or "ketch_dsr"
    deletions_right_column: str = "canonical_right_code"
    deletions_rights: tuple[str, ...] = ("delete",)
    deletions_identity_column: str | None = None  # ketch_dsr: "email" under email keys, else "subject"
    deletions_email_column: str = "email"
    deletions_requested_at_column: str = "submitted_at"


@dataclass(frozen=True)
class GuardConfig:
    max_shrink_fraction: float = 0.5
    max_deletions: int = 100
    max_deletion_fraction: float = 0.05
    max_unsubscribe_fraction: float = 0.25
    max_subscribe_fraction: float = 0.25
    min_universe: int = 10  # a run with no comparable earlier run: fewer subjects than this is refused


@dataclass(frozen=True)
class PolicyConfig:
    write_back_optouts: bool = False
    apply_optins: bool = False
    alias_unmatched: bool = False
    suppress_deleted_emails: bool = False
    deletion_prioritization: tuple[str, ...] = ()
    ketch_defaults_are_choices: bool = False  # read a Ketch answer without collectedAt as the person's choice


@dataclass(frozen=True)
class ApplyConfig:
    consistency_delay_seconds: float = 300.0
    verify: bool = True


@dataclass(frozen=True)
class LedgerConfig:
    """The Ketch webhook ledger (`reconcile ledger serve`) and the erasure callbacks."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 8787
    path: str = "/ketch/events"
    bearer_token_env: str | None = None
    auth_header: str = "Authorization"  # the header Ketch's webhook sends the secret in
    auth_scheme: str = "Bearer"  # the word before the token ("" for none); a bare token is accepted too
    basic_user_env: str | None = None
    basic_password_env: str | None = None
    max_body_bytes: int = 256 * 1024
    request_timeout_seconds: float = 10.0  # a request must arrive whole within this (slow clients)
    max_connections_per_client: int = 32  # per peer address; 0: none (behind a reverse proxy)
    max_requests_in_flight: int = 64  # handled at once; more are answered 503 with Retry-After
    expected_completion_hours: float = 48.0
    callback_hosts: tuple[str, ...] = ()  # allowed callback host suffixes; required outside the sandbox
    callback_headers: tuple[str, ...] = ("authorization",)  # the only message headers forwarded to a callback
    callback_loopback_for_tests: bool = False  # plain http to 127.0.0.1 callbacks (tests only)
    callback_timeout_seconds: float = 10.0
    callback_max_body_bytes: int = 64 * 1024
    callback_tries_per_run: int = 3
    callback_backoff_seconds: float = 2.0
    callback_retry_seconds: float = 900.0
    callback_max_attempts: int = 30
    mirror: bool = False  # runs take Ketch state from the ledger's mirror (needs enabled)
    mirror_audit_fraction: float = 1 / 30  # of the mirrored subjects read from Ketch again each full run


@dataclass(frozen=True)
class StateConfig:
    url: str = "sqlite:///.reconcile/state.db"
    url_env: str | None = None


@dataclass(frozen=True)
class ReportConfig:
    dir: Path = Path("reports")
    mask_key_env: str = "RECONCILE_MASK_KEY"
    reveal: bool = False
    regulations: tuple[str, ...] = ("can_spam", "tcpa", "ccpa")  # deadlines: can_spam (email), tcpa (SMS), ccpa, gdpr
    holiday_countries: tuple[str, ...] = ("US",)  # ISO codes, "US-CA" for a subdivision
    extra_holidays: tuple[str, ...] = ()  # ISO dates that are not business days
    timezone: str = "UTC"  # where business days are counted
    near_deadline_days: int = 2  # open items this many business days from their deadline are flagged
    retention_months: int = 24


@dataclass(frozen=True)
class SandboxConfig:
    enabled: bool = False
    state_file: Path | None = None
    subjects: int = 2000
    drift: float = 0.03
    seed: int = 7
    braze_permissions: str = "all"  # "all" or "partner" (the eight of Braze's Ketch partner page)
    track_object_limit: int = 75  # most /users/track objects per request the simulated contract takes
    user_status_shape: str = "users"  # /subscription/user/status answer: "users" or "documented"
    track_limit_wording: str = "documented"  # the 400 over track_object_limit: "documented" or "other" wording
    segment_export: str = "url"  # /users/export/segment: "url", "bucket" (no url), "failed" or "busy" (429)
    segment_export_delay_seconds: float = 0.0  # until the export's file can be downloaded
    alias_visibility_delay_seconds: float = 0.0  # until /users/track sees an alias made by /users/alias/new
    email_match: str = "lower"  # how the simulated Braze compares addresses: "lower" or "casefold"


@dataclass(frozen=True)
class Config:
    braze: BrazeConfig = field(default_factory=BrazeConfig)
    ketch: KetchConfig = field(default_factory=KetchConfig)
    identity: IdentityConfig = field(default_factory=IdentityConfig)
    mapping: MappingConfig = field(default_factory=MappingConfig)
    universe: UniverseConfig = field(default_factory=UniverseConfig)
    guards: GuardConfig = field(default_factory=GuardConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    apply: ApplyConfig = field(default_factory=ApplyConfig)
    state: StateConfig = field(default_factory=StateConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    notify: NotifyConfig = field(default_factory=NotifyConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    ledger: LedgerConfig = field(default_factory=LedgerConfig)
    path: Path | None = None

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("path", None)
        return json.loads(json.dumps(d, default=str))

    def hash(self) -> str:
        """Stable hash of the resolved config (no secrets are ever in it)."""
        d = self.as_dict()
        d.pop("notify", None), d.pop("metrics", None)  # what is said about a run is not what it does
        blob = json.dumps(d, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def secret_names(self) -> list[str]:
        names = [self.braze.api_key_env, self.report.mask_key_env, *self.notify.secret_names(),
                 *self.metrics.secret_names()]
        for src in (self.state.url_env, self.universe.sql and self.universe.sql.url_env,
                    self.universe.deletions_sql and self.universe.deletions_sql.url_env,
                    self.ledger.bearer_token_env, self.ledger.basic_user_env, self.ledger.basic_password_env):
            if src:
                names.append(src)
        return names

    def secret_values(self, environ: Mapping[str, str] | None = None) -> list[str]:
        env = os.environ if environ is None else environ
        return [env[n] for n in self.secret_names() if env.get(n)]


def secret(name: str | None, environ: Mapping[str, str] | None = None) -> str | None:
    env = os.environ if environ is None else environ
    return env.get(name) if name else None


def has_control_chars(value: str) -> bool:
    """True when `value` holds a control character (CR, LF, NUL, DEL, ...)."""
    return any(ord(c) < 0x20 or 0x7f <= ord(c) < 0xa0 for c in value)


def api_key_problem(env_name: str, value: str) -> ConfigProblem | None:
    """A problem when the key cannot be sent in a header; the value itself is never shown."""
    if has_control_chars(value.strip()):
        return ConfigProblem("braze.api_key_env", f"environment variable {env_name} holds a control character "
                             "(a line break, tab or NUL inside the key), so it cannot be sent as a header",
                             f"export {env_name} again with the key alone on one line (no quotes, no line breaks)")
    return None


def braze_api_key(cfg: Config, environ: Mapping[str, str] | None = None) -> str:
    value = secret(cfg.braze.api_key_env, environ)
    if value:
        problem = api_key_problem(cfg.braze.api_key_env, value)
        if problem is not None:
            raise ConfigError(problem)
        return value
    if cfg.sandbox.enabled:
        return SANDBOX_BRAZE_KEY
    raise ConfigError(ConfigProblem(
        "braze.api_key_env", f"environment variable {cfg.braze.api_key_env} is not set",
        f"export {cfg.braze.api_key_env}=<your Braze REST API key>"))


def state_url(cfg: Config, environ: Mapping[str, str] | None = None) -> str:
    if cfg.state.url_env:
        value = secret(cfg.state.url_env, environ)
        if not value:
            raise ConfigError(ConfigProblem(
                "state.url_env", f"environment variable {cfg.state.url_env} is not set",
                f"export {cfg.state.url_env}=postgresql+psycopg://user:pass@host/db"))
        return value
    return cfg.state.url
