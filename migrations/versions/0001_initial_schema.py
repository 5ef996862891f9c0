"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-29 11:35:18.785783
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=50), nullable=False),
        sa.Column("person_id", sa.Uuid(), nullable=True),
        sa.Column("subject", sa.String(length=255), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_events_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_events_person_id"), ["person_id"], unique=False)

    op.create_table(
        "images",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("source_path", sa.Text(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_images")),
        sa.UniqueConstraint("sha256", name=op.f("uq_images_sha256")),
    )
    op.create_table(
        "models",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("version", sa.String(length=50), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("metric", sa.String(length=16), nullable=False),
        sa.Column("collection", sa.String(length=200), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("threshold_far", sa.Float(), nullable=True),
        sa.Column("threshold_source", sa.Text(), nullable=True),
        sa.Column("calibrated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_models")),
        sa.UniqueConstraint("name", "version", name="uq_models_name_version"),
    )
    op.create_table(
        "persons",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("external_id", sa.String(length=255), nullable=False),
        sa.Column("display_name", sa.String(length=255), nullable=True),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_persons")),
        sa.UniqueConstraint("external_id", name=op.f("uq_persons_external_id")),
    )
    op.create_table(
        "faces",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("person_id", sa.Uuid(), nullable=False),
        sa.Column("image_id", sa.Uuid(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("bbox", sa.JSON(), nullable=False),
        sa.Column("landmarks", sa.JSON(), nullable=False),
        sa.Column("det_score", sa.Float(), nullable=False),
        sa.Column("iod_px", sa.Float(), nullable=True),
        sa.Column("blur", sa.Float(), nullable=True),
        sa.Column("yaw_deg", sa.Float(), nullable=True),
        sa.Column("roll_deg", sa.Float(), nullable=True),
        sa.Column(
            "status",
            sa.Enum("pending", "indexed", "rejected", name="face_status", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("rejection", sa.String(length=100), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["image_id"], ["images.id"], name=op.f("fk_faces_image_id_images"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["model_id"], ["models.id"], name=op.f("fk_faces_model_id_models")),
        sa.ForeignKeyConstraint(
            ["person_id"], ["persons.id"], name=op.f("fk_faces_person_id_persons"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_faces")),
    )
    with op.batch_alter_table("faces", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_faces_image_id"), ["image_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_faces_model_id"), ["model_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_faces_person_id"), ["person_id"], unique=False)
        batch_op.create_index("ix_faces_status", ["status"], unique=False)

    op.create_table(
        "jobs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("batch", sa.String(length=64), nullable=True),
        sa.Column(
            "status",
            sa.Enum("queued", "running", "done", "failed", name="job_status", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("source_path", sa.Text(), nullable=False),
        sa.Column("external_id", sa.String(length=255), nullable=False),
        sa.Column("display_name", sa.String(length=255), nullable=True),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.String(length=200), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("image_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["image_id"], ["images.id"], name=op.f("fk_jobs_image_id_images"), ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_jobs_batch"), ["batch"], unique=False)
        batch_op.create_index("ix_jobs_claim", ["status", "lease_expires_at"], unique=False)

    op.create_table(
        "search_events",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("query_sha256", sa.String(length=64), nullable=False),
        sa.Column("query_name", sa.Text(), nullable=True),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("top_k", sa.Integer(), nullable=False),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("face_count", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["model_id"], ["models.id"], name=op.f("fk_search_events_model_id_models")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_search_events")),
    )
    with op.batch_alter_table("search_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_search_events_created_at"), ["created_at"], unique=False)

    op.create_table(
        "search_hits",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("search_id", sa.Uuid(), nullable=False),
        sa.Column("face_index", sa.Integer(), nullable=False),
        sa.Column("face_bbox", sa.JSON(), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Uuid(), nullable=True),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("matched_faces", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["person_id"], ["persons.id"], name=op.f("fk_search_hits_person_id_persons"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["search_id"], ["search_events.id"], name=op.f("fk_search_hits_search_id_search_events"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_search_hits")),
    )
    with op.batch_alter_table("search_hits", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_search_hits_person_id"), ["person_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_search_hits_search_id"), ["search_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("search_hits", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_search_hits_search_id"))
        batch_op.drop_index(batch_op.f("ix_search_hits_person_id"))

    op.drop_table("search_hits")
    with op.batch_alter_table("search_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_search_events_created_at"))

    op.drop_table("search_events")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_claim")
        batch_op.drop_index(batch_op.f("ix_jobs_batch"))

    op.drop_table("jobs")
    with op.batch_alter_table("faces", schema=None) as batch_op:
        batch_op.drop_index("ix_faces_status")
        batch_op.drop_index(batch_op.f("ix_faces_person_id"))
        batch_op.drop_index(batch_op.f("ix_faces_model_id"))
        batch_op.drop_index(batch_op.f("ix_faces_image_id"))

    op.drop_table("faces")
    op.drop_table("persons")
    op.drop_table("models")
    op.drop_table("images")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_events_person_id"))
        batch_op.drop_index(batch_op.f("ix_audit_events_created_at"))

    op.drop_table("audit_events")
