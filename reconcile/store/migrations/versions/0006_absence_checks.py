"""When a subject that must not exist in Braze was last confirmed absent.

- absence_checks: one row per subject with a deletion request or a tombstone that a run
  read and found without a Braze profile (when, by which run). Incremental runs skip
  re-proving the absence of subjects confirmed within `universe.absence_recheck_hours`;
  full sweeps always read them.

Revision ID: 0006_absence_checks
Revises: 0005_sweeps
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_absence_checks"
down_revision = "0005_sweeps"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "absence_checks",
        sa.Column("subject_key", sa.Text()),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("run_id", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("subject_key", name=op.f("pk_absence_checks")),
    )


def downgrade() -> None:
    op.drop_table("absence_checks")
