"""stored face thumbnails: enrolled faces, searched faces (with a retention), cluster members; the best
enrolled faces of each search hit; a rejection's actual person

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 19:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "face_thumbnails",
        sa.Column("face_id", sa.Uuid(), nullable=False),
        sa.Column("jpeg", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["face_id"], ["faces.id"], name=op.f("fk_face_thumbnails_face_id_faces"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("face_id", name=op.f("pk_face_thumbnails")),
    )
    op.create_table(
        "search_thumbnails",
        sa.Column("search_id", sa.Uuid(), nullable=False),
        sa.Column("face_index", sa.Integer(), nullable=False),
        sa.Column("jpeg", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["search_id"],
            ["search_events.id"],
            name=op.f("fk_search_thumbnails_search_id_search_events"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("search_id", "face_index", name=op.f("pk_search_thumbnails")),
    )
    op.create_index(op.f("ix_search_thumbnails_expires_at"), "search_thumbnails", ["expires_at"])
    op.add_column("search_hits", sa.Column("faces", sa.JSON(), nullable=True))
    op.add_column("cluster_members", sa.Column("thumbnail", sa.LargeBinary(), nullable=True))
    with op.batch_alter_table("match_reviews") as batch:
        batch.add_column(sa.Column("actual_person_id", sa.Uuid(), nullable=True))
        batch.create_foreign_key(
            op.f("fk_match_reviews_actual_person_id_persons"),
            "persons",
            ["actual_person_id"],
            ["id"],
            ondelete="SET NULL",
        )


def downgrade() -> None:
    with op.batch_alter_table("match_reviews") as batch:
        batch.drop_constraint(op.f("fk_match_reviews_actual_person_id_persons"), type_="foreignkey")
        batch.drop_column("actual_person_id")
    with op.batch_alter_table("cluster_members") as batch:
        batch.drop_column("thumbnail")
    with op.batch_alter_table("search_hits") as batch:
        batch.drop_column("faces")
    op.drop_index(op.f("ix_search_thumbnails_expires_at"), table_name="search_thumbnails")
    op.drop_table("search_thumbnails")
    op.drop_table("face_thumbnails")
