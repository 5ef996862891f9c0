"""fpir calibration: a model's threshold keeps the FPIR and the gallery size it was calibrated at

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 13:30:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("models") as batch:
        batch.add_column(sa.Column("threshold_fpir", sa.Float(), nullable=True))
        batch.add_column(sa.Column("threshold_gallery_persons", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("models") as batch:
        batch.drop_column("threshold_gallery_persons")
        batch.drop_column("threshold_fpir")
