"""erasure: an erased person's search hits keep no score, their searches no query name or digest

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 13:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("search_hits") as batch:
        batch.alter_column("score", existing_type=sa.Float(), nullable=True)
    with op.batch_alter_table("search_events") as batch:
        batch.alter_column("query_sha256", existing_type=sa.String(length=64), nullable=True)


def downgrade() -> None:
    op.execute("UPDATE search_hits SET score = 0 WHERE score IS NULL")
    op.execute("UPDATE search_events SET query_sha256 = '' WHERE query_sha256 IS NULL")
    with op.batch_alter_table("search_events") as batch:
        batch.alter_column("query_sha256", existing_type=sa.String(length=64), nullable=False)
    with op.batch_alter_table("search_hits") as batch:
        batch.alter_column("score", existing_type=sa.Float(), nullable=False)
