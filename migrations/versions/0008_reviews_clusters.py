"""review loop: match reviews, kept unknown faces, face clusters and their members

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 21:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_index(op.f("ix_search_events_query_sha256"), "search_events", ["query_sha256"])
    op.create_table(
        "match_reviews",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("search_id", sa.Uuid(), nullable=False),
        sa.Column("face_index", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Uuid(), nullable=True),
        sa.Column("verdict", sa.String(length=16), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["search_id"],
            ["search_events.id"],
            ondelete="CASCADE",
            name=op.f("fk_match_reviews_search_id_search_events"),
        ),
        sa.ForeignKeyConstraint(
            ["person_id"], ["persons.id"], ondelete="SET NULL", name=op.f("fk_match_reviews_person_id_persons")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_match_reviews")),
    )
    for column in ("created_at", "search_id", "person_id"):
        op.create_index(op.f(f"ix_match_reviews_{column}"), "match_reviews", [column])
    op.create_table(
        "unknown_faces",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("search_id", sa.Uuid(), nullable=True),
        sa.Column("face_index", sa.Integer(), nullable=False),
        sa.Column("image_sha256", sa.String(length=64), nullable=False),
        sa.Column("source_path", sa.Text(), nullable=True),
        sa.Column("bbox", sa.JSON(), nullable=False),
        sa.Column("quality", sa.JSON(), nullable=False),
        sa.Column("thumbnail", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["model_id"], ["models.id"], name=op.f("fk_unknown_faces_model_id_models")),
        sa.ForeignKeyConstraint(
            ["search_id"],
            ["search_events.id"],
            ondelete="SET NULL",
            name=op.f("fk_unknown_faces_search_id_search_events"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_unknown_faces")),
    )
    op.create_index(op.f("ix_unknown_faces_model_id"), "unknown_faces", ["model_id"])
    op.create_index(op.f("ix_unknown_faces_expires_at"), "unknown_faces", ["expires_at"])
    op.create_table(
        "face_clusters",
        sa.Column("id", sa.String(length=16), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("person_id", sa.Uuid(), nullable=True),
        sa.Column("decided_by", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["model_id"], ["models.id"], name=op.f("fk_face_clusters_model_id_models")),
        sa.ForeignKeyConstraint(
            ["person_id"], ["persons.id"], ondelete="SET NULL", name=op.f("fk_face_clusters_person_id_persons")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_face_clusters")),
    )
    op.create_index(op.f("ix_face_clusters_scope"), "face_clusters", ["scope"])
    op.create_table(
        "cluster_members",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("cluster_id", sa.String(length=16), nullable=False),
        sa.Column("face_key", sa.String(length=100), nullable=False),
        sa.Column("image_sha256", sa.String(length=64), nullable=False),
        sa.Column("source_path", sa.Text(), nullable=True),
        sa.Column("face_index", sa.Integer(), nullable=False),
        sa.Column("bbox", sa.JSON(), nullable=False),
        sa.Column("unknown_face_id", sa.Uuid(), nullable=True),
        sa.ForeignKeyConstraint(
            ["cluster_id"],
            ["face_clusters.id"],
            ondelete="CASCADE",
            name=op.f("fk_cluster_members_cluster_id_face_clusters"),
        ),
        sa.ForeignKeyConstraint(
            ["unknown_face_id"],
            ["unknown_faces.id"],
            ondelete="CASCADE",
            name=op.f("fk_cluster_members_unknown_face_id_unknown_faces"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cluster_members")),
    )
    op.create_index(op.f("ix_cluster_members_cluster_id"), "cluster_members", ["cluster_id"])


def downgrade() -> None:
    op.drop_table("cluster_members")
    op.drop_table("face_clusters")
    op.drop_table("unknown_faces")
    op.drop_table("match_reviews")
    op.drop_index(op.f("ix_search_events_query_sha256"), table_name="search_events")
