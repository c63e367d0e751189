"""One Braze segment export per run or sweep, shared by its parts and workers.

- segment_exports: one row per scope (a run, or a sweep of sliced workers): the segment,
  who started the export, running / ready / unavailable (with the reason), and when.
- segment_export_rows: the profiles the export listed (address key, braze_id, external_id,
  address as Braze holds it, global email state, phone), read by each part for its addresses and
  dropped once the run or sweep is done.

Revision ID: 0008_segment_exports
Revises: 0007_run_parts
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_segment_exports"
down_revision = "0007_run_parts"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
STATUSES = ("running", "ready", "unavailable")


def upgrade() -> None:
    listed = ", ".join(repr(v) for v in STATUSES)
    op.create_table(
        "segment_exports",
        sa.Column("scope", sa.String()),
        sa.Column("segment_id", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("holder", sa.String(), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("finished_at", TS),
        sa.Column("profiles", sa.Integer()),
        sa.Column("reason", sa.Text()),
        sa.CheckConstraint(f"status IN ({listed})", name=op.f("ck_segment_exports_status")),
        sa.PrimaryKeyConstraint("scope", name=op.f("pk_segment_exports")),
    )
    op.create_table(
        "segment_export_rows",
        sa.Column("scope", sa.String()),
        sa.Column("braze_id", sa.Text()),
        sa.Column("email_key", sa.Text(), nullable=False),
        sa.Column("email", sa.Text()),
        sa.Column("external_id", sa.Text()),
        sa.Column("email_subscribe", sa.String()),
        sa.Column("phone", sa.Text()),
        sa.PrimaryKeyConstraint("scope", "braze_id", name=op.f("pk_segment_export_rows")),
    )
    op.create_index("ix_segment_export_rows_scope_email_key", "segment_export_rows", ["scope", "email_key"])


def downgrade() -> None:
    op.drop_index("ix_segment_export_rows_scope_email_key", table_name="segment_export_rows")
    op.drop_table("segment_export_rows")
    op.drop_table("segment_exports")
