"""The Ketch mirror: each subject's consent and subscriptions as the ledger's messages and
the job's Ketch reads left them.

- ketch_mirror: one row per subject key: its fields (purposes, topics per channel, controls)
  as JSON, each with the time it was observed and Ketch's time of the choice; when the Ketch
  API last filled the row (NULL: never, so not yet trusted); when it last changed.

Revision ID: 0009_ketch_mirror
Revises: 0008_segment_exports
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_ketch_mirror"
down_revision = "0008_segment_exports"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "ketch_mirror",
        sa.Column("subject_key", sa.Text()),
        sa.Column("choices", sa.Text(), nullable=False),
        sa.Column("read_at", TS),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("subject_key", name=op.f("pk_ketch_mirror")),
    )


def downgrade() -> None:
    op.drop_table("ketch_mirror")
