"""The state store's tables (SQLAlchemy Core); the only module that names them.

    runs             one row per run: mode, job, config hash, extract sizes/timestamps, counts,
                     Braze capabilities, outcome (status in RUN_STATUSES, exit code, error)
    run_exceptions   identities a run rejected or could not act on, with the reason
    drift_items      one row per problem occurrence; live rows are open/corrected/reported,
                     verified and resolved rows are kept as history
    plans            saved plans (body as JSON) and their status
    actions          the apply journal: one row per batch, written before and after sending
    tombstones       subjects deleted from Braze (checked for reappearance)
    watermarks       named incremental-extract positions
    locks            run leases per job (holder, identity, heartbeat renewal, expiry)
    lock_events      forced releases and takeovers of a lock: who, when, which holder
    braze_profiles   address -> Braze profiles (braze_id, external_id) as last read, so later
                     runs can read profiles by external_id in batches
    ledger_events    every message the Ketch webhook ledger received (body size-bounded, secrets
                     scrubbed), keyed by metadata.uid, with the answer given
    ledger_changes   subjects whose consent or subscriptions changed, with Ketch's timestamp
    ledger_requests  Ketch DeleteRequests: identity, regulation, due time, status and reason
    ledger_request_history  every status change of a request
    ledger_callbacks DeleteStatusEvents to send to a request's callbacks, with retry state
    sweeps           sliced sweeps of a job shared by several workers: slices, open or done
    sweep_slices     one row per slice of a sweep: pending, claimed (by, since, lease end), done or
                     failed, with the run that reconciled it
    rate_budget_windows  Braze requests taken per workspace, rate class and clock window, shared
                     by every worker on the database
    absence_checks   subjects that must not exist in Braze (deletion requested or tombstoned)
                     and when a run last confirmed they have no profile
    run_parts        the finished parts of a chunked read (each part's drift and the state of
                     its drift subjects), so a run that stops mid-read is resumed part by part
    segment_exports  the one Braze segment export of a run or sweep: who started it, its status
                     (running, ready, unavailable and why), so parts and workers share it
    segment_export_rows  the profiles that export listed (address, ids, global state), kept
                     until the run or sweep is done
    ketch_mirror     per subject, its Ketch consent and subscriptions as the ledger's messages
                     and the job's Ketch reads left them (each field with its time), and when
                     the Ketch API last filled it (models/mirror.py)

Migrations live in `migrations/versions/`; a test checks they produce exactly this schema.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    text,
)

from reconcile.models.run import RUN_STATUSES
from reconcile.store.coltypes import SafeJSON, UTCDateTime

DRIFT_STATUSES = ("open", "corrected", "verified", "resolved", "reported")
DRIFT_LIVE = ("open", "corrected", "reported")
DRIFT_OPEN = ("open", "corrected")
PLAN_STATUSES = ("planned", "applying", "applied", "stale", "refused")
ACTION_STATUSES = ("pending", "sending", "confirmed", "failed", "rejected", "skipped")
ACTION_RESULTS = ("confirmed", "failed", "rejected", "skipped")
ACTION_UNFINISHED = ("pending", "sending")

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=NAMING)

BigId = BigInteger().with_variant(Integer(), "sqlite")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _run_fk(name: str, nullable: bool = True) -> Column[Any]:
    return Column(name, String, ForeignKey("runs.run_id"), nullable=nullable)


runs = Table(
    "runs",
    metadata,
    Column("run_id", String, primary_key=True),
    Column("mode", String, nullable=False),
    Column("config_hash", String, nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("status", String, nullable=False),
    Column("universe_count", Integer),
    Column("ketch_count", Integer),
    Column("ketch_records", Integer),
    Column("ketch_extracted_at", UTCDateTime),
    Column("braze_count", Integer),
    Column("braze_extracted_at", UTCDateTime),
    Column("drift_counts", SafeJSON),
    Column("exceptions_count", Integer),
    Column("plan_id", String),
    Column("plan_fingerprint", String),
    Column("guard_overrides", SafeJSON),
    Column("guard_result", SafeJSON),
    Column("actions_planned", Integer),
    Column("actions_sent", Integer),
    Column("actions_confirmed", Integer),
    Column("actions_failed", Integer),
    Column("verified_count", Integer),
    Column("unverified_count", Integer),
    Column("exit_code", Integer),
    Column("error", Text),
    Column("finished_at", UTCDateTime),
    Column("summary", SafeJSON),
    Column("capabilities", SafeJSON),
    Column("job", String),
    CheckConstraint(_in("status", RUN_STATUSES), name="status"),
    Index(None, "started_at"),
)

run_exceptions = Table(
    "run_exceptions",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    _run_fk("run_id", nullable=False),
    Column("identity", Text),
    Column("source", String),
    Column("reason", Text, nullable=False),
    Column("detail", SafeJSON),
    Index(None, "run_id"),
)

drift_items = Table(
    "drift_items",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("subject_key", Text, nullable=False),
    Column("drift_class", String, nullable=False),
    Column("field", String, nullable=False),
    Column("expected", SafeJSON),
    Column("actual", SafeJSON),
    Column("severity", String),
    Column("reason", Text),
    Column("status", String, nullable=False),
    _run_fk("first_seen_run", nullable=False),
    Column("first_seen_at", UTCDateTime, nullable=False),
    _run_fk("last_seen_run", nullable=False),
    Column("last_seen_at", UTCDateTime, nullable=False),
    Column("corrected_at", UTCDateTime),
    Column("corrected_action", String, ForeignKey("actions.action_id")),
    Column("verified_at", UTCDateTime),
    Column("resolved_at", UTCDateTime),
    _run_fk("resolved_run"),
    Column("ketch_collected_at", UTCDateTime),
    Column("detail", SafeJSON),
    CheckConstraint(_in("status", DRIFT_STATUSES), name="status"),
    Index(None, "subject_key"),
    Index(None, "status"),
    Index(None, "first_seen_run"),
    Index(None, "last_seen_run"),
    Index(
        "uq_drift_items_live",
        "subject_key",
        "drift_class",
        "field",
        unique=True,
        sqlite_where=text(_in("status", DRIFT_LIVE)),
        postgresql_where=text(_in("status", DRIFT_LIVE)),
    ),
)

plans = Table(
    "plans",
    metadata,
    Column("plan_id", String, primary_key=True),
    _run_fk("run_id", nullable=False),
    Column("fingerprint", String, nullable=False),
    Column("body", SafeJSON, nullable=False),
    Column("status", String, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    CheckConstraint(_in("status", PLAN_STATUSES), name="status"),
    Index(None, "run_id"),
)

actions = Table(
    "actions",
    metadata,
    Column("action_id", String, primary_key=True),
    Column("plan_id", String, ForeignKey("plans.plan_id"), nullable=False),
    _run_fk("run_id", nullable=False),
    Column("seq", Integer, nullable=False),
    Column("endpoint", String, nullable=False),
    Column("kind", String, nullable=False),
    Column("payload", SafeJSON),
    Column("subject_keys", SafeJSON),
    Column("drift_ids", SafeJSON),
    Column("status", String, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("request_summary", SafeJSON),
    Column("response_summary", SafeJSON),
    Column("error", Text),
    Column("created_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime),
    Column("finished_at", UTCDateTime),
    Column("holder", String),
    CheckConstraint(_in("status", ACTION_STATUSES), name="status"),
    Index(None, "plan_id", "seq"),
    Index(None, "run_id"),
    Index(None, "status"),
)

tombstones = Table(
    "tombstones",
    metadata,
    Column("subject_key", Text, primary_key=True),
    Column("identity", Text),
    Column("deleted_at", UTCDateTime, nullable=False),
    _run_fk("run_id"),
    Column("reason", Text),
)

watermarks = Table(
    "watermarks",
    metadata,
    Column("name", String, primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

locks = Table(
    "locks",
    metadata,
    Column("name", String, primary_key=True),
    Column("holder", String, nullable=False),
    Column("acquired_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("renewed_at", UTCDateTime),
    Column("identity", SafeJSON),
)

lock_events = Table(
    "lock_events",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("name", String, nullable=False),
    Column("event", String, nullable=False),
    Column("holder", String),
    Column("by", String, nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("detail", SafeJSON),
    Index(None, "name"),
)

braze_profiles = Table(
    "braze_profiles",
    metadata,
    Column("braze_id", Text, primary_key=True),
    Column("email_key", Text, nullable=False),
    Column("external_id", Text),
    Column("first_seen_at", UTCDateTime, nullable=False),
    Column("last_seen_at", UTCDateTime, nullable=False),
    _run_fk("run_id", nullable=False),
    Index(None, "email_key"),
    Index(None, "external_id"),
)

LEDGER_OUTCOMES = ("accepted", "unknown_kind", "invalid")
LEDGER_REQUEST_STATUSES = ("in_progress", "completed")
LEDGER_CALLBACK_STATUSES = ("waiting", "pending", "delivered", "failed", "refused")

ledger_events = Table(
    "ledger_events",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("uid", String),
    Column("api_version", String),
    Column("kind", String),
    Column("tenant", String),
    Column("outcome", String, nullable=False),
    Column("reply_status", Integer, nullable=False),
    Column("reply", SafeJSON),
    Column("body", Text, nullable=False),
    Column("body_bytes", Integer, nullable=False),
    Column("error", Text),
    Column("received_at", UTCDateTime, nullable=False),
    CheckConstraint(_in("outcome", LEDGER_OUTCOMES), name="outcome"),
    Index(None, "uid", unique=True),
    Index(None, "received_at"),
)

ledger_changes = Table(
    "ledger_changes",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("event_id", BigId, ForeignKey("ledger_events.id"), nullable=False),
    Column("kind", String, nullable=False),
    Column("identity", Text, nullable=False),
    Column("changed_at", UTCDateTime),
    Column("received_at", UTCDateTime, nullable=False),
    Index(None, "received_at"),
)

ledger_requests = Table(
    "ledger_requests",
    metadata,
    Column("uid", String, primary_key=True),
    Column("event_id", BigId, ForeignKey("ledger_events.id"), nullable=False),
    Column("tenant", String),
    Column("identity", Text),
    Column("identities", SafeJSON),
    Column("regulation", String),
    Column("jurisdiction", String),
    Column("submitted_at", UTCDateTime),
    Column("due_at", UTCDateTime),
    Column("received_at", UTCDateTime, nullable=False),
    Column("status", String, nullable=False),
    Column("reason", String),
    Column("callback_count", Integer, nullable=False),
    Column("completed_at", UTCDateTime),
    _run_fk("completed_run"),
    CheckConstraint(_in("status", LEDGER_REQUEST_STATUSES), name="status"),
    Index(None, "status"),
)

ledger_request_history = Table(
    "ledger_request_history",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("request_uid", String, ForeignKey("ledger_requests.uid"), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("status", String, nullable=False),
    Column("reason", String),
    Column("message", Text),
    _run_fk("run_id"),
    Index(None, "request_uid"),
)

ledger_callbacks = Table(
    "ledger_callbacks",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("request_uid", String, ForeignKey("ledger_requests.uid"), nullable=False),
    Column("position", Integer, nullable=False),
    Column("url", Text, nullable=False),
    Column("headers", Text),
    Column("event", SafeJSON),
    Column("status", String, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UTCDateTime),
    Column("last_error", Text),
    Column("created_at", UTCDateTime, nullable=False),
    Column("delivered_at", UTCDateTime),
    CheckConstraint(_in("status", LEDGER_CALLBACK_STATUSES), name="status"),
    Index(None, "request_uid", "position", unique=True),
    Index(None, "status"),
)

SWEEP_STATUSES = ("open", "done")
SLICE_STATUSES = ("pending", "claimed", "done", "failed")

sweeps = Table(
    "sweeps",
    metadata,
    Column("sweep_id", String, primary_key=True),
    Column("job", String, nullable=False),
    Column("slices", Integer, nullable=False),
    Column("status", String, nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime),
    CheckConstraint(_in("status", SWEEP_STATUSES), name="status"),
    Index(None, "job"),
)

sweep_slices = Table(
    "sweep_slices",
    metadata,
    Column("sweep_id", String, ForeignKey("sweeps.sweep_id"), primary_key=True),
    Column("slice", Integer, primary_key=True, autoincrement=False),
    Column("status", String, nullable=False),
    Column("claimed_by", String),
    Column("claimed_at", UTCDateTime),
    Column("lease_until", UTCDateTime),
    Column("attempts", Integer, nullable=False),
    Column("finished_at", UTCDateTime),
    Column("run_id", String),
    Column("exit_code", Integer),
    Column("error", Text),
    CheckConstraint(_in("status", SLICE_STATUSES), name="status"),
)

rate_budget_windows = Table(
    "rate_budget_windows",
    metadata,
    Column("workspace", String, primary_key=True),
    Column("rate_class", String, primary_key=True),
    Column("window_start_ms", BigInteger, primary_key=True, autoincrement=False),
    Column("used", Integer, nullable=False),
)

absence_checks = Table(
    "absence_checks",
    metadata,
    Column("subject_key", Text, primary_key=True),
    Column("checked_at", UTCDateTime, nullable=False),
    Column("run_id", String, nullable=False),
)

run_parts = Table(
    "run_parts",
    metadata,
    Column("run_id", String, primary_key=True),
    Column("part", Integer, primary_key=True, autoincrement=False),
    Column("scope", String, nullable=False),
    Column("parts", Integer, nullable=False),
    Column("subjects", Integer, nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("saved_at", UTCDateTime, nullable=False),
    Index(None, "scope"),
)

RUN_FIELDS = frozenset(c.name for c in runs.columns) - {"run_id", "mode", "config_hash", "started_at"}

SEGMENT_EXPORT_STATUSES = ("running", "ready", "unavailable")

segment_exports = Table(
    "segment_exports",
    metadata,
    Column("scope", String, primary_key=True),
    Column("segment_id", String, nullable=False),
    Column("status", String, nullable=False),
    Column("holder", String, nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime),
    Column("profiles", Integer),
    Column("reason", Text),
    CheckConstraint(_in("status", SEGMENT_EXPORT_STATUSES), name="status"),
)

segment_export_rows = Table(
    "segment_export_rows",
    metadata,
    Column("scope", String, primary_key=True),
    Column("braze_id", Text, primary_key=True),
    Column("email_key", Text, nullable=False),
    Column("email", Text),
    Column("external_id", Text),
    Column("email_subscribe", String),
    Column("phone", Text),
    Index(None, "scope", "email_key"),
)

ketch_mirror = Table(
    "ketch_mirror",
    metadata,
    Column("subject_key", Text, primary_key=True),
    Column("choices", Text, nullable=False),  # JSON: [[kind, code, channel, status, as_of, changed_at], ...]
    Column("read_at", UTCDateTime),
    Column("updated_at", UTCDateTime, nullable=False),
)
