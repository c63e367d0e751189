"""Initial state store: runs, exceptions, drift items, plans, action journal, tombstones,
watermarks and locks.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
JSON = sa.JSON()
BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
LIVE = "status IN ('open', 'corrected', 'reported')"


def _fk(table: str, name: str, target: str, nullable: bool = True) -> sa.Column[Any]:
    fk = sa.ForeignKey(target, name=op.f(f"fk_{table}_{name}_{target.split('.')[0]}"))
    return sa.Column(name, sa.String(), fk, nullable=nullable)


def _run_fk(table: str, name: str, nullable: bool = True) -> sa.Column[Any]:
    return _fk(table, name, "runs.run_id", nullable)


def _check(table: str, values: tuple[str, ...]) -> sa.CheckConstraint:
    listed = ", ".join(repr(v) for v in values)
    return sa.CheckConstraint(f"status IN ({listed})", name=op.f(f"ck_{table}_status"))


def _pk(table: str, column: str) -> sa.PrimaryKeyConstraint:
    return sa.PrimaryKeyConstraint(column, name=op.f(f"pk_{table}"))


def upgrade() -> None:
    _create_runs()
    _create_run_exceptions()
    _create_plans()
    _create_actions()
    _create_drift_items()
    _index_drift_items()
    _create_small_tables()


def _create_runs() -> None:
    counts = ["universe_count", "ketch_count", "ketch_records"]
    actions = ["actions_planned", "actions_sent", "actions_confirmed", "actions_failed"]
    op.create_table(
        "runs",
        sa.Column("run_id", sa.String()),
        sa.Column("mode", sa.String(), nullable=False),
        sa.Column("config_hash", sa.String(), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        *[sa.Column(name, sa.Integer()) for name in counts],
        sa.Column("ketch_extracted_at", TS),
        sa.Column("braze_count", sa.Integer()),
        sa.Column("braze_extracted_at", TS),
        sa.Column("drift_counts", JSON),
        sa.Column("exceptions_count", sa.Integer()),
        sa.Column("plan_id", sa.String()),
        sa.Column("plan_fingerprint", sa.String()),
        sa.Column("guard_overrides", JSON),
        sa.Column("guard_result", JSON),
        *[sa.Column(name, sa.Integer()) for name in actions],
        sa.Column("verified_count", sa.Integer()),
        sa.Column("unverified_count", sa.Integer()),
        sa.Column("exit_code", sa.Integer()),
        sa.Column("error", sa.Text()),
        sa.Column("finished_at", TS),
        sa.Column("summary", JSON),
        _pk("runs", "run_id"),
    )
    op.create_index("ix_runs_started_at", "runs", ["started_at"])


def _create_run_exceptions() -> None:
    op.create_table(
        "run_exceptions",
        sa.Column("id", BIGID, autoincrement=True),
        _run_fk("run_exceptions", "run_id", nullable=False),
        sa.Column("identity", sa.Text()),
        sa.Column("source", sa.String()),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("detail", JSON),
        _pk("run_exceptions", "id"),
    )
    op.create_index("ix_run_exceptions_run_id", "run_exceptions", ["run_id"])


def _create_plans() -> None:
    op.create_table(
        "plans",
        sa.Column("plan_id", sa.String()),
        _run_fk("plans", "run_id", nullable=False),
        sa.Column("fingerprint", sa.String(), nullable=False),
        sa.Column("body", JSON, nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        _check("plans", ("planned", "applying", "applied", "stale", "refused")),
        _pk("plans", "plan_id"),
    )
    op.create_index("ix_plans_run_id", "plans", ["run_id"])


def _create_actions() -> None:
    op.create_table(
        "actions",
        sa.Column("action_id", sa.String()),
        _fk("actions", "plan_id", "plans.plan_id", nullable=False),
        _run_fk("actions", "run_id", nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("endpoint", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        *[sa.Column(name, JSON) for name in ("payload", "subject_keys", "drift_ids")],
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("request_summary", JSON),
        sa.Column("response_summary", JSON),
        sa.Column("error", sa.Text()),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("sent_at", TS),
        sa.Column("finished_at", TS),
        _check("actions", ("pending", "sending", "confirmed", "failed", "rejected", "skipped")),
        _pk("actions", "action_id"),
    )
    op.create_index("ix_actions_plan_id_seq", "actions", ["plan_id", "seq"])
    op.create_index("ix_actions_run_id", "actions", ["run_id"])
    op.create_index("ix_actions_status", "actions", ["status"])


def _create_drift_items() -> None:
    op.create_table(
        "drift_items",
        sa.Column("id", BIGID, autoincrement=True),
        sa.Column("subject_key", sa.Text(), nullable=False),
        sa.Column("drift_class", sa.String(), nullable=False),
        sa.Column("field", sa.String(), nullable=False),
        sa.Column("expected", JSON),
        sa.Column("actual", JSON),
        sa.Column("severity", sa.String()),
        sa.Column("reason", sa.Text()),
        sa.Column("status", sa.String(), nullable=False),
        _run_fk("drift_items", "first_seen_run", nullable=False),
        sa.Column("first_seen_at", TS, nullable=False),
        _run_fk("drift_items", "last_seen_run", nullable=False),
        sa.Column("last_seen_at", TS, nullable=False),
        sa.Column("corrected_at", TS),
        _fk("drift_items", "corrected_action", "actions.action_id"),
        sa.Column("verified_at", TS),
        sa.Column("resolved_at", TS),
        _run_fk("drift_items", "resolved_run"),
        sa.Column("ketch_collected_at", TS),
        sa.Column("detail", JSON),
        _check("drift_items", ("open", "corrected", "verified", "resolved", "reported")),
        _pk("drift_items", "id"),
    )


def _index_drift_items() -> None:
    for column in ("subject_key", "status", "first_seen_run", "last_seen_run"):
        op.create_index(f"ix_drift_items_{column}", "drift_items", [column])
    op.create_index(
        "uq_drift_items_live",
        "drift_items",
        ["subject_key", "drift_class", "field"],
        unique=True,
        sqlite_where=sa.text(LIVE),
        postgresql_where=sa.text(LIVE),
    )


def _create_small_tables() -> None:
    op.create_table(
        "tombstones",
        sa.Column("subject_key", sa.Text()),
        sa.Column("identity", sa.Text()),
        sa.Column("deleted_at", TS, nullable=False),
        _run_fk("tombstones", "run_id"),
        sa.Column("reason", sa.Text()),
        _pk("tombstones", "subject_key"),
    )
    op.create_table(
        "watermarks",
        sa.Column("name", sa.String()),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        _pk("watermarks", "name"),
    )
    op.create_table(
        "locks",
        sa.Column("name", sa.String()),
        sa.Column("holder", sa.String(), nullable=False),
        sa.Column("acquired_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        _pk("locks", "name"),
    )


def downgrade() -> None:
    for table in (
        "locks",
        "watermarks",
        "tombstones",
        "drift_items",
        "actions",
        "plans",
        "run_exceptions",
        "runs",
    ):
        op.drop_table(table)
