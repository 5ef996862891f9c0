"""active model pointer: models.activated_at

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06 10:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("models", schema=None) as batch_op:
        batch_op.add_column(sa.Column("activated_at", sa.DateTime(timezone=True), nullable=True))
    # A store from before this revision searched the model holding its faces: make that one active.
    op.execute(
        "UPDATE models SET activated_at = created_at WHERE id = ("
        "SELECT model_id FROM faces WHERE status = 'indexed' GROUP BY model_id "
        "ORDER BY count(*) DESC, model_id LIMIT 1)"
    )


def downgrade() -> None:
    with op.batch_alter_table("models", schema=None) as batch_op:
        batch_op.drop_column("activated_at")
