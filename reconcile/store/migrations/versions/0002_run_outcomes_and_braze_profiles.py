"""Run outcomes are constrained, runs record their job and Braze capabilities, and the
address -> Braze profiles mapping gets a table.

- runs.status: a CHECK constraint on the run statuses below. A row holding any other
  status is marked `failed` first, its old status kept in `error`.
- runs.capabilities (JSON) and runs.job (text): new, nullable.
- braze_profiles: braze_id (primary key), email_key (trimmed, casefolded address),
  external_id, first/last seen, and the run that last saw the profile.

SQLite cannot add a CHECK constraint in place, so `runs` is rebuilt (batch mode); the
caller runs this with foreign keys off and checks them afterwards (reconcile.store.migrate).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
RUN_STATUSES = (
    "running",
    "planned",
    "dry_run",
    "applying",
    "applied",
    "partial",
    "in_sync",
    "refused",
    "stale",
    "failed",
    "interrupted",
)
LISTED = ", ".join(repr(s) for s in RUN_STATUSES)


def upgrade() -> None:
    _fail_unknown_statuses()
    with op.batch_alter_table("runs", recreate="auto") as batch:
        batch.add_column(sa.Column("capabilities", sa.JSON()))
        batch.add_column(sa.Column("job", sa.String()))
        batch.create_check_constraint(op.f("ck_runs_status"), f"status IN ({LISTED})")
    _create_braze_profiles()


def _fail_unknown_statuses() -> None:
    op.execute(
        sa.text(
            "UPDATE runs SET "
            "error = 'recorded status ' || COALESCE(status, 'NULL') "
            "|| ' is not a run status; marked failed by schema revision 0002'"
            " || CASE WHEN error IS NULL THEN '' ELSE '; ' || error END, "
            "exit_code = COALESCE(exit_code, 1), "
            f"status = 'failed' WHERE status NOT IN ({LISTED})"
        )
    )


def _create_braze_profiles() -> None:
    op.create_table(
        "braze_profiles",
        sa.Column("braze_id", sa.Text()),
        sa.Column("email_key", sa.Text(), nullable=False),
        sa.Column("external_id", sa.Text()),
        sa.Column("first_seen_at", TS, nullable=False),
        sa.Column("last_seen_at", TS, nullable=False),
        sa.Column(
            "run_id",
            sa.String(),
            sa.ForeignKey("runs.run_id", name=op.f("fk_braze_profiles_run_id_runs")),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("braze_id", name=op.f("pk_braze_profiles")),
    )
    op.create_index("ix_braze_profiles_email_key", "braze_profiles", ["email_key"])
    op.create_index("ix_braze_profiles_external_id", "braze_profiles", ["external_id"])


def downgrade() -> None:
    op.drop_table("braze_profiles")
    with op.batch_alter_table("runs", recreate="auto") as batch:
        batch.drop_constraint(op.f("ck_runs_status"), type_="check")
        batch.drop_column("job")
        batch.drop_column("capabilities")
