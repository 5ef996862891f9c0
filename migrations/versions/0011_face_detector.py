"""face detector: each face row and each search-log face records the detection stage that found it

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 13:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: faces found before this revision keep NULL, read as "unknown" (nothing to backfill from).
    op.add_column("faces", sa.Column("detector", sa.String(length=50), nullable=True))
    op.add_column("search_hits", sa.Column("face_detector", sa.String(length=50), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("search_hits") as batch:
        batch.drop_column("face_detector")
    with op.batch_alter_table("faces") as batch:
        batch.drop_column("detector")
