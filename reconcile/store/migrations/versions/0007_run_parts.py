"""The finished parts of a chunked read, so a run that stops mid-read resumes part by part.

- run_parts: one row per (run, part): the scope it belongs to (config, mode, sweep slice),
  the number of parts, the subjects read, the part's drift and its drift subjects' state
  (a zip of Parquet files), and when it was saved.

Revision ID: 0007_run_parts
Revises: 0006_absence_checks
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_run_parts"
down_revision = "0006_absence_checks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "run_parts",
        sa.Column("run_id", sa.String()),
        sa.Column("part", sa.Integer(), autoincrement=False),
        sa.Column("scope", sa.String(), nullable=False),
        sa.Column("parts", sa.Integer(), nullable=False),
        sa.Column("subjects", sa.Integer(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("saved_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "part", name=op.f("pk_run_parts")),
    )
    op.create_index("ix_run_parts_scope", "run_parts", ["scope"])


def downgrade() -> None:
    op.drop_index("ix_run_parts_scope", table_name="run_parts")
    op.drop_table("run_parts")
