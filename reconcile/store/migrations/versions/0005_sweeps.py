"""Sliced sweeps shared by several workers, and Braze rate budgets shared through the database.

- sweeps: one row per sweep of a job (its number of slices, open or done, when).
- sweep_slices: one row per slice of a sweep: pending, claimed (by whom, since when, lease
  end), done or failed, with the run that reconciled it.
- rate_budget_windows: requests taken per Braze workspace, rate class and clock window, so
  workers on one database stay within the workspace's limits together.

Revision ID: 0005_sweeps
Revises: 0004_ledger
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_sweeps"
down_revision = "0004_ledger"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
SWEEP_STATUSES = ("open", "done")
SLICE_STATUSES = ("pending", "claimed", "done", "failed")


def _check(table: str, column: str, values: tuple[str, ...]) -> sa.CheckConstraint:
    listed = ", ".join(repr(v) for v in values)
    return sa.CheckConstraint(f"{column} IN ({listed})", name=op.f(f"ck_{table}_{column}"))


def upgrade() -> None:
    op.create_table(
        "sweeps",
        sa.Column("sweep_id", sa.String()),
        sa.Column("job", sa.String(), nullable=False),
        sa.Column("slices", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("finished_at", TS),
        sa.PrimaryKeyConstraint("sweep_id", name=op.f("pk_sweeps")),
        _check("sweeps", "status", SWEEP_STATUSES),
    )
    op.create_index("ix_sweeps_job", "sweeps", ["job"])
    op.create_table(
        "sweep_slices",
        sa.Column("sweep_id", sa.String(), nullable=False),
        sa.Column("slice", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("claimed_by", sa.String()),
        sa.Column("claimed_at", TS),
        sa.Column("lease_until", TS),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("finished_at", TS),
        sa.Column("run_id", sa.String()),
        sa.Column("exit_code", sa.Integer()),
        sa.Column("error", sa.Text()),
        sa.PrimaryKeyConstraint("sweep_id", "slice", name=op.f("pk_sweep_slices")),
        sa.ForeignKeyConstraint(["sweep_id"], ["sweeps.sweep_id"], name=op.f("fk_sweep_slices_sweep_id_sweeps")),
        _check("sweep_slices", "status", SLICE_STATUSES),
    )
    op.create_table(
        "rate_budget_windows",
        sa.Column("workspace", sa.String(), nullable=False),
        sa.Column("rate_class", sa.String(), nullable=False),
        sa.Column("window_start_ms", sa.BigInteger(), nullable=False),
        sa.Column("used", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("workspace", "rate_class", "window_start_ms", name=op.f("pk_rate_budget_windows")),
    )


def downgrade() -> None:
    op.drop_table("rate_budget_windows")
    op.drop_table("sweep_slices")
    op.drop_index("ix_sweeps_job", table_name="sweeps")
    op.drop_table("sweeps")
