"""Erasing a person's rows: what goes, what is redacted, and the keyed tokens that stand in for ids.

An erased person leaves no row naming them: their faces, images (unless another person's
face is on the same photo), enrollment jobs and person row are deleted; search hits that
returned them keep rank and decision but lose the link and the score, and the searches
those hits belong to lose the query's name and digest; reviews of those hits keep verdict,
reviewer and time but lose the link and the reviewer's note; earlier audit events about them
keep what was done and by whom, with the ids replaced by keyed tokens (HMAC-SHA256 under
the deployment's erasure key), so "was X erased?" stays answerable without keeping X.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import String, cast, delete, exists, or_, select, update
from sqlalchemy.orm import Session

from identity.store.sql.db import rowcount
from identity.store.sql.deployment import deployment_record
from identity.store.sql.reviews import unlink_reviews
from identity.store.sql.tables import (
    AuditEvent,
    ClusterMember,
    Face,
    FaceCluster,
    Image,
    Job,
    Person,
    SearchEvent,
    SearchHit,
    UnknownFace,
)
from identity.store.sql.thumbnails import delete_search_thumbnails

REDACTED = "[erased]"


def erasure_token(key: str, kind: str, value: str) -> str:
    """The keyed hash that stands for an erased `kind` ("external_id", "person_id") of value."""
    return hmac.new(bytes.fromhex(key), f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()


def person_tokens(session: Session, external_id: str, person_id: uuid.UUID | None) -> tuple[str, str | None]:
    key = deployment_record(session).erasure_key
    return erasure_token(key, "external_id", external_id), (
        erasure_token(key, "person_id", str(person_id)) if person_id is not None else None
    )


def erase_person_rows(session: Session, person: Person, removed_paths: list[str] | None = None) -> dict[str, int]:
    """Delete and redact every row about `person` (see the module doc); returns counts per kind.

    `removed_paths` receives the source paths of the image rows deleted."""
    subject, _ = person_tokens(session, person.external_id, person.id)
    images = set(session.scalars(select(Face.image_id).where(Face.person_id == person.id)))
    jobs = session.execute(select(Job.id, Job.image_id).where(Job.external_id == person.external_id)).all()
    images |= {row.image_id for row in jobs if row.image_id is not None}
    counts = {
        "faces": rowcount(session.execute(delete(Face).where(Face.person_id == person.id))),
        "jobs": rowcount(session.execute(delete(Job).where(Job.id.in_([row.id for row in jobs])))),
        **_redact_searches(session, person.id),
        "reviews_unlinked": unlink_reviews(session, person.id),
        # A cluster named for them lists their photos: it goes (its members with it).
        "clusters": rowcount(session.execute(delete(FaceCluster).where(FaceCluster.person_id == person.id))),
        "audit_events_redacted": _redact_audit(session, person, subject),
    }
    counts.update(drop_unused_images(session, images, removed_paths))
    session.delete(person)
    return counts


def person_images(session: Session, person: Person) -> list[tuple[str, str | None]]:
    """(sha256, source path) of each photo of `person` (their faces' and enrollment jobs'); the path is None
    where another person's face is on the photo too (it stays, under their path)."""
    images = set(session.scalars(select(Face.image_id).where(Face.person_id == person.id)))
    images |= set(
        session.scalars(select(Job.image_id).where(Job.external_id == person.external_id, Job.image_id.is_not(None)))
    )
    shared = set(session.scalars(select(Face.image_id).where(Face.image_id.in_(images), Face.person_id != person.id)))
    rows = session.execute(select(Image.id, Image.sha256, Image.source_path).where(Image.id.in_(images)))
    return [(row.sha256, None if row.id in shared else row.source_path) for row in rows]


def erase_image_traces(session: Session, unknown_ids: Iterable[uuid.UUID], digests: Iterable[str]) -> dict[str, int]:
    """Delete the kept unknown faces `unknown_ids` and the cluster members that are them or show a photo with
    one of `digests`, clusters left empty, and redact the searches whose query was one of those photos."""
    unknown, shas = list(unknown_ids), list(digests)
    members = or_(ClusterMember.image_sha256.in_(shas), ClusterMember.unknown_face_id.in_(unknown))
    clusters = set(session.scalars(select(ClusterMember.cluster_id).where(members)))
    by_photo = set(session.scalars(select(SearchEvent.id).where(SearchEvent.query_sha256.in_(shas))))
    counts = {
        "search_thumbnails_by_photo": delete_search_thumbnails(session, by_photo),
        "cluster_members": rowcount(session.execute(delete(ClusterMember).where(members))),
        "unknown_faces": rowcount(session.execute(delete(UnknownFace).where(UnknownFace.id.in_(unknown)))),
        "search_events_redacted_by_photo": rowcount(
            session.execute(
                update(SearchEvent).where(SearchEvent.query_sha256.in_(shas)).values(query_name=None, query_sha256=None)
            )
        ),
    }
    empty = [c for c in clusters if not session.scalar(select(exists().where(ClusterMember.cluster_id == c)))]
    counts["clusters_emptied"] = rowcount(session.execute(delete(FaceCluster).where(FaceCluster.id.in_(empty))))
    return counts


def drop_unused_images(
    session: Session, image_ids: Iterable[uuid.UUID], removed_paths: list[str] | None = None
) -> dict[str, int]:
    """Delete the images no face refers to any more; a photo still holding another person's face stays,
    its source path taken from that person's own enrollment job where there is one.

    `removed_paths` receives the source paths of the rows deleted (uploaded copies are erased with them)."""
    wanted = set(image_ids)
    if not wanted:
        return {"images": 0, "images_kept_shared": 0}
    used = set(session.scalars(select(Face.image_id).where(Face.image_id.in_(wanted)).distinct()))
    if removed_paths is not None:
        removed_paths += session.scalars(select(Image.source_path).where(Image.id.in_(wanted - used)))
    removed = rowcount(session.execute(delete(Image).where(Image.id.in_(wanted - used))))
    for image_id in used:
        path = session.scalars(
            select(Job.source_path)
            .where(
                Job.image_id == image_id,
                exists().where(
                    Person.external_id == Job.external_id, Face.person_id == Person.id, Face.image_id == image_id
                ),
            )
            .limit(1)
        ).first()
        if path is not None:
            session.execute(update(Image).where(Image.id == image_id).values(source_path=path))
    return {"images": removed, "images_kept_shared": len(used)}


def _redact_searches(session: Session, person_id: uuid.UUID) -> dict[str, int]:
    searches = set(session.scalars(select(SearchHit.search_id).where(SearchHit.person_id == person_id)))
    hits = rowcount(
        session.execute(
            update(SearchHit).where(SearchHit.person_id == person_id).values(person_id=None, score=None, faces=None)
        )
    )
    events = (
        rowcount(
            session.execute(
                update(SearchEvent).where(SearchEvent.id.in_(searches)).values(query_name=None, query_sha256=None)
            )
        )
        if searches
        else 0
    )
    # The searched faces' thumbnails of every search that returned the person: their face, perhaps.
    thumbnails = delete_search_thumbnails(session, searches)
    return {"search_hits_redacted": hits, "search_events_redacted": events, "search_thumbnails": thumbnails}


def _redact_audit(session: Session, person: Person, subject: str) -> int:
    """Earlier events about the person: found by their id or external id (a display name may be a
    common word), then scrubbed of all three."""
    keys = [person.external_id, str(person.id)]
    text = cast(AuditEvent.details, String)
    events = session.scalars(
        select(AuditEvent).where(
            or_(
                AuditEvent.person_id == person.id,
                AuditEvent.subject.in_(keys),
                *(text.contains(k, autoescape=True) for k in keys),
            )
        )
    ).all()
    secrets = [*keys, *([person.display_name] if person.display_name else [])]
    for event in events:
        if event.person_id == person.id:
            event.person_id = None
        if event.subject in secrets:
            event.subject = subject
        event.details = _scrub(event.details, secrets)
    return len(events)


def _scrub(value: Any, secrets: list[str]) -> Any:
    """`value` with every string that mentions one of `secrets` replaced by REDACTED."""
    if isinstance(value, dict):
        return {k: _scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, secrets) for v in value]
    if isinstance(value, str) and any(s in value for s in secrets):
        return REDACTED
    return value
