"""job kind: the queue holds reindex jobs beside enrollment ones, with the target model of a reindex

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 16:20:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("kind", sa.String(length=16), server_default="enroll", nullable=False))
        batch.add_column(sa.Column("model_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(batch.f("fk_jobs_model_id_models"), "models", ["model_id"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_constraint(batch.f("fk_jobs_model_id_models"), type_="foreignkey")
        batch.drop_column("model_id")
        batch.drop_column("kind")
