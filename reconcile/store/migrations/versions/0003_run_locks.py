"""Run locks per job with heartbeat leases, a record of forced releases and takeovers, and
the holder of each batch in the journal.

- locks.renewed_at (timestamp) and locks.identity (JSON: host, pid, machine and boot id,
  PID namespace, process start time, nonce): new, nullable.
- actions.holder (text): the lock holder that marked the batch `sending`; new, nullable.
- lock_events: one row per forced release or takeover of a lock (who, when, which holder
  was removed).

Revision ID: 0003_run_locks
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_run_locks"
down_revision = "0002"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("locks") as batch:
        batch.add_column(sa.Column("renewed_at", TS))
        batch.add_column(sa.Column("identity", sa.JSON()))
    with op.batch_alter_table("actions") as batch:
        batch.add_column(sa.Column("holder", sa.String()))
    op.create_table(
        "lock_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("event", sa.String(), nullable=False),
        sa.Column("holder", sa.String()),
        sa.Column("by", sa.String(), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("detail", sa.JSON()),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lock_events")),
    )
    op.create_index("ix_lock_events_name", "lock_events", ["name"])


def downgrade() -> None:
    op.drop_index("ix_lock_events_name", table_name="lock_events")
    op.drop_table("lock_events")
    with op.batch_alter_table("actions") as batch:
        batch.drop_column("holder")
    with op.batch_alter_table("locks") as batch:
        batch.drop_column("identity")
        batch.drop_column("renewed_at")
