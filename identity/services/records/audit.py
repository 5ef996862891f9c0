"""`identity audit PERSON`: what is held on a person and which searches matched them.

Besides the record, faces and search history, two checks an auditor acts on, both on
person templates (identity.services.search.templates) and search's decision rule:
- look-alikes: the other identities whose templates are closest to this person's, and
  the margin between the decision threshold and the decision score this person's
  template would get against everyone else (below zero: a look-alike would match);
- outliers: a face whose closest template is another person's rather than its own
  person's template rebuilt without it (possibly a mislabelled photo).
Each audit is itself recorded as an audit event.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import numpy as np

from identity.app.actor import resolve_actor
from identity.app.core import App
from identity.app.deployment import Deployment
from identity.app.templates import template_of
from identity.evaluation.decision import PERSONS_NEEDED, decision_score
from identity.serialize import json_field
from identity.services.review.matches import REVIEW_JSON, ReviewState
from identity.services.search.identify import decision_threshold
from identity.store.sql.audit_events import record_audit_event
from identity.store.sql.db import transaction
from identity.store.sql.faces import faces_with_images
from identity.store.sql.persons import PersonRecord, get_person, person_record, persons_by_id
from identity.store.sql.reviews import latest_reviews
from identity.store.sql.searches import Decision, hits_of_person
from identity.store.sql.tables import UNKNOWN_DETECTOR, Face, FaceStatus, Image
from identity.store.vectors.unit_vectors import intact_vectors

LOOKALIKES = 5


@dataclass
class AuditFace:
    face_id: str
    status: FaceStatus
    rejection: str | None
    source_path: str
    image_sha256: str
    bbox: list[float]
    det_score: float
    iod_px: float | None
    blur: float | None
    yaw_deg: float | None
    roll_deg: float | None
    detector: str  # the detection stage that found it ("unknown": recorded before faces kept it)
    enrolled_at: str | None
    # Set for indexed faces of a person with three or more of them (see _mark_outliers).
    similarity_to_own_template: float | None = field(default=None, metadata=json_field(omit_if_none=True))
    outlier: bool | None = field(default=None, metadata=json_field(omit_if_none=True))


@dataclass(frozen=True)
class AuditSearch:
    """A search that returned the person, and the review in force on that hit (the search log's words)."""

    search_id: str
    when: str
    actor: str
    query_sha256: str | None
    face_index: int
    face_detector: str = field(
        metadata=json_field(  # unknown: logged before migration 0011
            doc="the detection stage that found the searched face; unknown: logged before faces kept it"
        )
    )
    rank: int
    score: float | None
    decision: Decision
    review: ReviewState | None = field(default=None, metadata=REVIEW_JSON)  # the review in force on this hit


@dataclass(frozen=True)
class Lookalike:
    person: PersonRecord  # the other person's record
    score: float  # their template's similarity to this person's


@dataclass(frozen=True)
class AuditReport:
    person: PersonRecord  # the person's record, as `person show` prints it (without the face count)
    threshold: float
    faces: list[AuditFace]
    searches: list[AuditSearch]
    lookalikes: list[Lookalike]
    decision_rule: str
    lookalike_margin: (
        float | None
    )  # the threshold minus the decision score of this person's template among everyone else
    outliers: list[str] = field(default_factory=list)  # face ids


def audit_person(app: App, ref: str, actor: str | None = None) -> AuditReport:
    dep = app.deployment()
    threshold, _ = decision_threshold(app)
    with app.sessions() as session:
        person = get_person(session, ref)
        record = person_record(person)
        # The active model's rows only: the same photos under a model kept for rollback are not more data.
        faces = faces_with_images(session, person.id, dep.model.id)
        searches = hits_of_person(session, person.id)
        reviews = latest_reviews(session, {event.id for _, event in searches})
    face_rows = [_face_row(face, image) for face, image in faces]
    indexed = [uuid.UUID(f.face_id) for f in face_rows if f.status == FaceStatus.indexed]
    vectors = intact_vectors(dep.index, indexed)
    _mark_outliers(dep, person.id, face_rows, vectors)
    lookalikes, others_score = _lookalikes(dep, person.id, vectors, threshold.rule)
    report = AuditReport(
        person=record,
        threshold=threshold.value,
        faces=face_rows,
        searches=[
            AuditSearch(
                search_id=str(event.id),
                when=event.created_at.isoformat(),
                actor=event.actor,
                query_sha256=event.query_sha256,
                face_index=hit.face_index,
                face_detector=hit.face_detector or UNKNOWN_DETECTOR,
                rank=hit.rank,
                score=hit.score,
                decision=Decision(hit.decision),
                review=ReviewState.of(reviews.get((event.id, hit.face_index, hit.person_id))),
            )
            for hit, event in searches
        ],
        lookalikes=lookalikes,
        decision_rule=threshold.rule,
        lookalike_margin=None if others_score is None else round(threshold.value - others_score, 4),
        outliers=[f.face_id for f in face_rows if f.outlier],
    )
    with transaction(app.sessions) as session:
        record_audit_event(
            session,
            resolve_actor(actor),
            "audit",
            person_id=person.id,
            subject=person.external_id,
            details={"faces": len(face_rows), "searches": len(searches)},
        )
    return report


def _face_row(face: Face, image: Image) -> AuditFace:
    return AuditFace(
        face_id=str(face.id),
        status=face.status,
        rejection=face.rejection,
        source_path=image.source_path,
        image_sha256=image.sha256,
        bbox=face.bbox,
        det_score=face.det_score,
        iod_px=face.iod_px,
        blur=face.blur,
        yaw_deg=face.yaw_deg,
        roll_deg=face.roll_deg,
        detector=face.detector or UNKNOWN_DETECTOR,
        enrolled_at=face.created_at.isoformat() if face.created_at else None,
    )


def _mark_outliers(
    dep: Deployment, person_id: uuid.UUID, rows: list[AuditFace], vectors: dict[uuid.UUID, np.ndarray]
) -> None:
    """Flag a face that another person's template is closer to than its own person's other faces.

    The own template is rebuilt without the face, so a mislabelled photo cannot vouch for
    itself; with fewer than three faces there is no "other faces" to speak of.
    """
    if len(vectors) < 3:
        return
    by_id = {uuid.UUID(r.face_id): r for r in rows}
    for face_id, vector in vectors.items():
        own = float(template_of([v for f, v in vectors.items() if f != face_id]) @ vector)
        closest = next((h for h in dep.templates.search(vector, 2) if h.person_id != person_id), None)
        by_id[face_id].similarity_to_own_template = round(own, 4)
        by_id[face_id].outlier = closest is not None and closest.score > own


def _lookalikes(
    dep: Deployment, person_id: uuid.UUID, vectors: dict[uuid.UUID, np.ndarray], rule: str
) -> tuple[list[Lookalike], float | None]:
    """The persons whose templates are closest to this person's, best first, and the decision score of
    this person's template searched among everyone else (None: no template or nobody else)."""
    if not vectors:
        return [], None
    hits = [
        h
        for h in dep.templates.search(template_of(list(vectors.values())), PERSONS_NEEDED + 1)
        if h.person_id != person_id
    ]
    if not hits:
        return [], None
    ranked = hits[:LOOKALIKES]
    with dep.app.sessions() as session:
        people = persons_by_id(session, [h.person_id for h in ranked])
    lookalikes = [
        Lookalike(person_record(people[h.person_id]), round(h.score, 4)) for h in ranked if h.person_id in people
    ]
    return lookalikes, decision_score([h.score for h in hits], rule)
