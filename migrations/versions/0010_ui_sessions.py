"""revocable sessions and key expiry: ui_sessions holds the review UI's sessions (ids hashed); api_keys.expires_at

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 10:30:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # A nullable column added and a new table: SQLite's ALTER TABLE ADD COLUMN suffices (no batch mode).
    op.add_column("api_keys", sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "ui_sessions",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("key_id", sa.String(length=16), nullable=False),
        sa.Column("csrf", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ui_sessions")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_ui_sessions_token_hash")),
    )
    op.create_index(op.f("ix_ui_sessions_key_id"), "ui_sessions", ["key_id"])


def downgrade() -> None:
    op.drop_table("ui_sessions")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("expires_at")
