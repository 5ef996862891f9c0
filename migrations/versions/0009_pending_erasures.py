"""durable erasure: pending_erasures records an erasure before any store changes

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 09:45:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # A new table only: no batch mode needed on SQLite (nothing is altered).
    op.create_table(
        "pending_erasures",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("subject_token", sa.String(length=64), nullable=False),
        sa.Column("person_token", sa.String(length=64), nullable=False),
        sa.Column("plan", sa.JSON(), nullable=True),
        sa.Column("step", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pending_erasures")),
    )
    op.create_index(op.f("ix_pending_erasures_subject_token"), "pending_erasures", ["subject_token"])
    op.create_index(op.f("ix_pending_erasures_person_token"), "pending_erasures", ["person_token"])
    op.create_index(op.f("ix_pending_erasures_completed_at"), "pending_erasures", ["completed_at"])


def downgrade() -> None:
    op.drop_table("pending_erasures")
