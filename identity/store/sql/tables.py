"""Relational schema: who is enrolled, from which images, and every question asked.

Biometric vectors never live here (they are in the vector store, keyed by face id).
The schema is owned by the Alembic chain in migrations/; a test checks that these
models and the migrations agree.
"""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# SQLite only auto-increments INTEGER PRIMARY KEY; Postgres gets a real BIGINT.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


def naive_utc(moment: datetime) -> datetime:
    """SQLite hands back naive UTC datetimes, Postgres aware ones: compare them as naive UTC."""
    return moment if moment.tzinfo is None else moment.astimezone(UTC).replace(tzinfo=None)


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp that always comes back timezone-aware in UTC, on every database.

    SQLite keeps no zone (its values came back naive) and Postgres answers in the session's
    zone, so a row read back printed differently from the object just created: every API,
    CLI --json and audit timestamp is ISO 8601 UTC with its offset through this one type.
    The column is still DateTime(timezone=True): the schema does not change.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC)  # SQLite drops the zone: store UTC wall-clock time
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )
    type_annotation_map = {
        uuid.UUID: Uuid(),
        datetime: UtcDateTime(),
        dict[str, Any]: JSON(),
        list[Any]: JSON(),
    }


class FaceStatus(enum.StrEnum):
    pending = "pending"  # row written, vector not yet confirmed in the vector store
    indexed = "indexed"  # vector stored and searchable
    rejected = "rejected"  # failed the quality gate; no vector is stored


class JobStatus(enum.StrEnum):
    queued = "queued"
    running = "running"
    done = "done"
    failed = "failed"
    cancelled = "cancelled"  # taken out of the queue by `identity jobs cancel`; never claimed


def _str_enum(kind: type[enum.Enum], name: str) -> Enum:
    # Stored as plain strings with a CHECK, so both databases read the same values.
    return Enum(kind, name=name, native_enum=False, validate_strings=True, length=16)


class Person(Base):
    __tablename__ = "persons"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    external_id: Mapped[str] = mapped_column(String(255), unique=True)
    display_name: Mapped[str | None] = mapped_column(String(255))
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    faces: Mapped[list[Face]] = relationship(back_populates="person", lazy="raise", passive_deletes=True)


class Image(Base):
    __tablename__ = "images"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    source_path: Mapped[str] = mapped_column(Text)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    width: Mapped[int | None]
    height: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Model(Base):
    """A model pack version; its vectors live in their own collection, kept after a switch (for rollback)."""

    __tablename__ = "models"
    __table_args__ = (UniqueConstraint("name", "version", name="uq_models_name_version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    version: Mapped[str] = mapped_column(String(50))
    dim: Mapped[int]
    metric: Mapped[str] = mapped_column(String(16), default="cosine")
    collection: Mapped[str] = mapped_column(String(200))
    threshold: Mapped[float | None] = mapped_column(Float)
    threshold_far: Mapped[float | None] = mapped_column(Float)
    threshold_source: Mapped[str | None] = mapped_column(Text)
    # Set by `calibrate --fpir`: the share of unenrolled people's searches allowed to match, and
    # the gallery size it held at (a larger gallery gives a non-mated search more chances).
    threshold_fpir: Mapped[float | None] = mapped_column(Float)
    threshold_gallery_persons: Mapped[int | None]
    calibrated_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The store's active model is the one activated last: search uses it unless a setting pins another.
    activated_at: Mapped[datetime | None]

    @property
    def model_id(self) -> str:
        return f"{self.name}@{self.version}"


UNKNOWN_DETECTOR = "unknown"  # how a face recorded before its detector was (revision 0011) reads


class Face(Base):
    __tablename__ = "faces"
    __table_args__ = (Index("ix_faces_status", "status"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)  # = vector point id
    person_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("persons.id", ondelete="CASCADE"), index=True)
    image_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"), index=True)
    bbox: Mapped[list[Any]]  # [x1, y1, x2, y2] in source-image pixels
    landmarks: Mapped[list[Any]]  # 5 x [x, y]: left eye, right eye, nose, left/right mouth corner
    det_score: Mapped[float] = mapped_column(Float)
    iod_px: Mapped[float | None] = mapped_column(Float)  # inter-ocular distance
    blur: Mapped[float | None] = mapped_column(Float)  # variance of the Laplacian on the crop
    yaw_deg: Mapped[float | None] = mapped_column(Float)
    roll_deg: Mapped[float | None] = mapped_column(Float)
    status: Mapped[FaceStatus] = mapped_column(_str_enum(FaceStatus, "face_status"), default=FaceStatus.pending)
    rejection: Mapped[str | None] = mapped_column(String(100))
    detector: Mapped[str | None] = mapped_column(
        String(50)
    )  # the stage that found it, e.g. "hog/up1"; None: before 0011
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    person: Mapped[Person] = relationship(back_populates="faces", lazy="raise")
    image: Mapped[Image] = relationship(lazy="raise")


BEST_FACES_LOGGED = 3  # enrolled faces a search-log hit names (SearchHit.faces)


class FaceThumbnail(Base):
    """A small JPEG of an enrolled face's aligned crop: pages draw faces from these, never from the photo.

    Its own table, so that reading face rows never drags image bytes along; erased with the face.
    """

    __tablename__ = "face_thumbnails"

    face_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("faces.id", ondelete="CASCADE"), primary_key=True)
    jpeg: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SearchThumbnail(Base):
    """A small JPEG of one searched face's aligned crop, kept with its search-log row so that a reviewer
    sees the face that was matched (settings review.keep_search_thumbnails). Kept for `match` decisions
    and `unknown` ones close to the threshold; erased when `expires_at` passes, and with any person the
    search returned (identity.store.sql.erasure)."""

    __tablename__ = "search_thumbnails"

    search_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("search_events.id", ondelete="CASCADE"), primary_key=True)
    face_index: Mapped[int] = mapped_column(primary_key=True)
    jpeg: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class Job(Base):
    """One image to enroll, or one (photo, person) to re-embed with a model (kind reindex, model_id the
    target); workers claim jobs through a lease that expires."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_claim", "status", "lease_expires_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    batch: Mapped[str | None] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(16), default="enroll", server_default="enroll")  # enroll / reindex
    model_id: Mapped[int | None] = mapped_column(ForeignKey("models.id"))  # a reindex job's target model
    status: Mapped[JobStatus] = mapped_column(_str_enum(JobStatus, "job_status"), default=JobStatus.queued)
    source_path: Mapped[str] = mapped_column(Text)
    external_id: Mapped[str] = mapped_column(String(255))
    display_name: Mapped[str | None] = mapped_column(String(255))
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    attempts: Mapped[int] = mapped_column(default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None]
    outcome: Mapped[str | None] = mapped_column(String(16))  # enrolled/rejected/failed/duplicate/conflict
    reason: Mapped[str | None] = mapped_column(Text)
    image_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("images.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class SearchEvent(Base):
    """An append-only record of one search: never the image, only its digest."""

    __tablename__ = "search_events"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(200))
    # Both None once a person this search returned was erased: the search happened, not what was asked.
    query_sha256: Mapped[str | None] = mapped_column(
        String(64), index=True
    )  # indexed: a new search finds its image's reviews
    query_name: Mapped[str | None] = mapped_column(Text)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"))
    threshold: Mapped[float] = mapped_column(Float)
    top_k: Mapped[int]
    parameters: Mapped[dict[str, Any]] = mapped_column(default=dict)
    face_count: Mapped[int] = mapped_column(default=0)

    hits: Mapped[list[SearchHit]] = relationship(back_populates="search", lazy="raise", passive_deletes=True)


class SearchHit(Base):
    __tablename__ = "search_hits"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    search_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("search_events.id", ondelete="CASCADE"), index=True)
    face_index: Mapped[int]  # which face of the query image
    face_bbox: Mapped[list[Any]]
    face_detector: Mapped[str | None] = mapped_column(String(50))  # the stage that found the face; None: before 0011
    rank: Mapped[int]  # 1 = best
    # Erasing a person leaves the search record but no link to them (SET NULL is the backstop).
    person_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("persons.id", ondelete="SET NULL"), index=True)
    score: Mapped[float | None] = mapped_column(Float)  # None once the person is erased
    decision: Mapped[str] = mapped_column(String(16))  # match / unknown
    matched_faces: Mapped[int] = mapped_column(default=1)
    # The person's best enrolled faces for this search, best first: [[face id, score], ...] (at most
    # BEST_FACES_LOGGED); what a reviewer sees beside the searched face. None: before 0012.
    faces: Mapped[list[Any] | None] = mapped_column(JSON)

    search: Mapped[SearchEvent] = relationship(back_populates="hits", lazy="raise")


class AuditEvent(Base):
    """What was done to whom; kept after a person is erased, without biometric or identifying data.

    Erasure replaces the person's id and external id in their events by keyed tokens
    (identity.store.sql.erasure), so "was X erased?" stays answerable.
    """

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(50))
    person_id: Mapped[uuid.UUID | None] = mapped_column(index=True)  # no FK: must outlive the person
    subject: Mapped[str | None] = mapped_column(String(255))
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)


class DeploymentRecord(Base):
    """One row (id 1): which vector store this database is bound to, and the deployment's erasure key.

    A process that opens the database with another vector store is refused, so two data
    directories never split one deployment's vectors. The key hashes the ids of erased
    persons in their audit events: "already erased" stays answerable without keeping the id.
    """

    __tablename__ = "deployment"

    id: Mapped[int] = mapped_column(primary_key=True)
    vector_store: Mapped[str | None] = mapped_column(
        Text
    )  # e.g. "edge:/data/vectors#<uuid>", "qdrant:http://host:6333"
    bound_at: Mapped[datetime | None]
    erasure_key: Mapped[str] = mapped_column(String(64))  # hex, secrets.token_hex(32)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiKey(Base):
    """A key for the HTTP API: a name (the actor in logs), a role, and only a salted hash of the secret.

    The key's `key_id` is its public half, printed in the key itself, so a request's key is
    found without scanning every hash.
    """

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    key_id: Mapped[str] = mapped_column(String(16), unique=True)
    salt: Mapped[str] = mapped_column(String(32))  # hex
    key_hash: Mapped[str] = mapped_column(String(64))  # hex HMAC-SHA256 of the secret, keyed by the salt
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200))
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]  # None: the key does not expire


class UiSession(Base):
    """A review UI session: the cookie carries a random token, this row only its SHA-256.

    Rows live in SQL so that several servers share them and sign-out, key revocation and
    key expiry end a session at once (a copied cookie finds a revoked row).
    """

    __tablename__ = "ui_sessions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # hex SHA-256 of the cookie's token
    key_id: Mapped[str] = mapped_column(String(16), index=True)  # the API key it was opened with
    csrf: Mapped[str] = mapped_column(String(64))  # the token every form that changes data sends back
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class MatchReview(Base):
    """A reviewer's verdict on one search hit: the face at `face_index` of a search is (confirmed) or is
    not (rejected) `person_id`. Append-only: a later review of the same face and person supersedes.

    Erasing the person keeps the review (who decided what, when) without the link or the note.
    """

    __tablename__ = "match_reviews"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(200))
    search_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("search_events.id", ondelete="CASCADE"), index=True)
    face_index: Mapped[int]
    person_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("persons.id", ondelete="SET NULL"), index=True)
    verdict: Mapped[str] = mapped_column(String(16))  # confirmed / rejected
    note: Mapped[str | None] = mapped_column(Text)
    # A rejection that names who the face really is (an enrolled person other than `person_id`).
    actual_person_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("persons.id", ondelete="SET NULL"))


class UnknownFace(Base):
    """A face a search returned as unknown, kept (only when settings.unknown_faces.keep is on) so that
    clustering can group them: its vector lives in the model's `unknown_` collection under this id,
    and a small thumbnail here for review. Erased, vector and row, when `expires_at` passes."""

    __tablename__ = "unknown_faces"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)  # = vector point id
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"), index=True)
    search_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("search_events.id", ondelete="SET NULL"))
    face_index: Mapped[int]
    image_sha256: Mapped[str] = mapped_column(String(64))
    source_path: Mapped[str | None] = mapped_column(Text)  # the searched file, when it had a path
    bbox: Mapped[list[Any]]
    quality: Mapped[dict[str, Any]] = mapped_column(default=dict)
    thumbnail: Mapped[bytes | None] = mapped_column(LargeBinary)  # JPEG of the aligned crop
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class FaceCluster(Base):
    """A group of unlabelled faces that are probably one person, kept until named or discarded.

    The id is a digest of the members, so a re-run on the same input gives the same ids.
    """

    __tablename__ = "face_clusters"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    scope: Mapped[str] = mapped_column(Text, index=True)  # "folder:<abs path>" or "searches": what a re-run replaces
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"))
    status: Mapped[str] = mapped_column(String(16), default="open")  # open / named / discarded
    person_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("persons.id", ondelete="SET NULL"))
    decided_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    members: Mapped[list[ClusterMember]] = relationship(
        back_populates="cluster", lazy="raise", passive_deletes=True, order_by="ClusterMember.id"
    )


class ClusterMember(Base):
    """One face of a cluster: where it came from (a photo's face, or a kept unknown face)."""

    __tablename__ = "cluster_members"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    cluster_id: Mapped[str] = mapped_column(ForeignKey("face_clusters.id", ondelete="CASCADE"), index=True)
    face_key: Mapped[str] = mapped_column(String(100))  # "<image sha256>:<face index>", or the unknown face's id
    image_sha256: Mapped[str] = mapped_column(String(64))
    source_path: Mapped[str | None] = mapped_column(Text)
    face_index: Mapped[int]
    bbox: Mapped[list[Any]]
    unknown_face_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("unknown_faces.id", ondelete="CASCADE"))
    # JPEG of the aligned crop (None: made before 0012); deferred: listing clusters reads no image bytes
    thumbnail: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)

    cluster: Mapped[FaceCluster] = relationship(back_populates="members", lazy="raise")


class PendingErasure(Base):
    """An erasure recorded before any store changes (identity.services.curation.erasure).

    While open (`completed_at` None) `plan` holds what finishing needs: the person's ids, face
    ids per model, upload paths, image digests, matched unknown faces. `step` is the last step
    applied. On completion `plan` is emptied first and `completed_at` set last: what stays is the
    keyed tokens (HMAC under the erasure key) of the external id and the uuid, never the ids.
    """

    __tablename__ = "pending_erasures"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    subject_token: Mapped[str] = mapped_column(String(64), index=True)  # token of the external id
    person_token: Mapped[str] = mapped_column(String(64), index=True)  # token of the person uuid
    plan: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    step: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(index=True)


class IdempotentAnswer(Base):
    """The first answer to a POST sent with an `Idempotency-Key` header: a retry with the same key (by the
    same API key, to the same route) within the retention gets it back instead of acting twice."""

    __tablename__ = "idempotent_answers"
    __table_args__ = (UniqueConstraint("key_id", "route", "idempotency_key", name="uq_idempotent_answers_request"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    key_id: Mapped[str] = mapped_column(String(16))  # the API key that sent it
    route: Mapped[str] = mapped_column(String(200))  # method and path, e.g. "POST /v1/persons"
    idempotency_key: Mapped[str] = mapped_column(String(255))
    request_sha256: Mapped[str] = mapped_column(String(64))  # the same key with another body is refused
    status_code: Mapped[int]
    body: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    person_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("persons.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class WebhookDelivery(Base):
    """A completion callback of a queued enrollment batch: waiting while its jobs run, then sent by the
    worker (HMAC-signed), retried with back-off; this row is the delivery log. Pending deliveries about an
    erased person are dropped (their payload names them)."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    batch: Mapped[str] = mapped_column(String(64), index=True)
    url: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), index=True)  # waiting / pending / delivered / failed / dropped
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    person_ids: Mapped[list[Any]] = mapped_column(default=list)  # uuids (as strings) the payload names
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None]
    last_status: Mapped[int | None]  # the receiver's HTTP status of the last attempt
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    delivered_at: Mapped[datetime | None]
