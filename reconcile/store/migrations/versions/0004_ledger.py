"""The Ketch webhook ledger: received events, changed subjects, deletion requests with
their status history, and the DeleteStatusEvent callbacks with their retry state.

- ledger_events: one row per message received (raw body size-bounded, secrets scrubbed),
  unique by metadata.uid when it has one, with the HTTP answer given (replays get it again).
- ledger_changes: a subject's consent or subscriptions changed, at Ketch's own time.
- ledger_requests: DeleteRequests (status in_progress|completed, reason), and
  ledger_request_history: every status change.
- ledger_callbacks: one row per callback URL of a request; its headers are kept only until
  the event is delivered or given up.

Revision ID: 0004_ledger
Revises: 0003_run_locks
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0004_ledger"
down_revision = "0003_run_locks"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
JSON = sa.JSON()
BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
OUTCOMES = ("accepted", "unknown_kind", "invalid")
REQUEST_STATUSES = ("in_progress", "completed")
CALLBACK_STATUSES = ("waiting", "pending", "delivered", "failed", "refused")


def _check(table: str, column: str, values: tuple[str, ...]) -> sa.CheckConstraint:
    listed = ", ".join(repr(v) for v in values)
    return sa.CheckConstraint(f"{column} IN ({listed})", name=op.f(f"ck_{table}_{column}"))


def _pk(table: str, column: str) -> sa.PrimaryKeyConstraint:
    return sa.PrimaryKeyConstraint(column, name=op.f(f"pk_{table}"))


def _fk(table: str, name: str, target: str, kind: Any = None, nullable: bool = True) -> sa.Column[Any]:
    fk = sa.ForeignKey(target, name=op.f(f"fk_{table}_{name}_{target.split('.')[0]}"))
    return sa.Column(name, kind if kind is not None else sa.String(), fk, nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "ledger_events",
        sa.Column("id", BIGID, autoincrement=True),
        sa.Column("uid", sa.String()),
        sa.Column("api_version", sa.String()),
        sa.Column("kind", sa.String()),
        sa.Column("tenant", sa.String()),
        sa.Column("outcome", sa.String(), nullable=False),
        sa.Column("reply_status", sa.Integer(), nullable=False),
        sa.Column("reply", JSON),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("body_bytes", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text()),
        sa.Column("received_at", TS, nullable=False),
        _pk("ledger_events", "id"),
        _check("ledger_events", "outcome", OUTCOMES),
    )
    op.create_index("ix_ledger_events_uid", "ledger_events", ["uid"], unique=True)
    op.create_index("ix_ledger_events_received_at", "ledger_events", ["received_at"])
    op.create_table(
        "ledger_changes",
        sa.Column("id", BIGID, autoincrement=True),
        _fk("ledger_changes", "event_id", "ledger_events.id", BIGID, nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("identity", sa.Text(), nullable=False),
        sa.Column("changed_at", TS),
        sa.Column("received_at", TS, nullable=False),
        _pk("ledger_changes", "id"),
    )
    op.create_index("ix_ledger_changes_received_at", "ledger_changes", ["received_at"])
    _create_requests()
    _create_callbacks()


def _create_requests() -> None:
    op.create_table(
        "ledger_requests",
        sa.Column("uid", sa.String()),
        _fk("ledger_requests", "event_id", "ledger_events.id", BIGID, nullable=False),
        sa.Column("tenant", sa.String()),
        sa.Column("identity", sa.Text()),
        sa.Column("identities", JSON),
        sa.Column("regulation", sa.String()),
        sa.Column("jurisdiction", sa.String()),
        sa.Column("submitted_at", TS),
        sa.Column("due_at", TS),
        sa.Column("received_at", TS, nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("reason", sa.String()),
        sa.Column("callback_count", sa.Integer(), nullable=False),
        sa.Column("completed_at", TS),
        _fk("ledger_requests", "completed_run", "runs.run_id"),
        _pk("ledger_requests", "uid"),
        _check("ledger_requests", "status", REQUEST_STATUSES),
    )
    op.create_index("ix_ledger_requests_status", "ledger_requests", ["status"])
    op.create_table(
        "ledger_request_history",
        sa.Column("id", BIGID, autoincrement=True),
        _fk("ledger_request_history", "request_uid", "ledger_requests.uid", nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("reason", sa.String()),
        sa.Column("message", sa.Text()),
        _fk("ledger_request_history", "run_id", "runs.run_id"),
        _pk("ledger_request_history", "id"),
    )
    op.create_index("ix_ledger_request_history_request_uid", "ledger_request_history", ["request_uid"])


def _create_callbacks() -> None:
    op.create_table(
        "ledger_callbacks",
        sa.Column("id", BIGID, autoincrement=True),
        _fk("ledger_callbacks", "request_uid", "ledger_requests.uid", nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("headers", sa.Text()),
        sa.Column("event", JSON),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", TS),
        sa.Column("last_error", sa.Text()),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("delivered_at", TS),
        _pk("ledger_callbacks", "id"),
        _check("ledger_callbacks", "status", CALLBACK_STATUSES),
    )
    op.create_index("ix_ledger_callbacks_request_uid_position", "ledger_callbacks", ["request_uid", "position"],
                    unique=True)
    op.create_index("ix_ledger_callbacks_status", "ledger_callbacks", ["status"])


def downgrade() -> None:
    for table in ("ledger_callbacks", "ledger_request_history", "ledger_requests", "ledger_changes", "ledger_events"):
        op.drop_table(table)
