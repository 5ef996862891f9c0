"""`identity audit PERSON`: what is held on a person and which searches matched them.

Besides the record, faces and search history, two checks an auditor acts on:
- look-alikes: the closest other identities and the similarity margin to them
  (a small margin means this person and another can be confused);
- outliers: faces far from the person's other faces (possibly a mislabelled photo).
Each audit is itself recorded as an audit event.
"""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
from sqlalchemy import select

from identity.services.deployment import Deployment
from identity.services.actor import resolve_actor
from identity.services.thresholds import resolve_threshold
from identity.store.sql.db import transaction
from identity.store.sql.models import AuditEvent, Face, FaceStatus, Image, Person, SearchEvent, SearchHit
from identity.store.sql.persons import get_person, person_record

LOOKALIKES = 5


def audit_person(dep: Deployment, ref: str, actor: str | None = None) -> dict[str, Any]:
    threshold = resolve_threshold(dep.model, dep.pipeline)
    with dep.runtime.sessions() as session:
        person = get_person(session, ref)
        record = person_record(person)
        # The active model's rows only: the same photos under a model kept for rollback are not more data.
        faces = session.execute(
            select(Face, Image).join(Image, Face.image_id == Image.id)
            .where(Face.person_id == person.id, Face.model_id == dep.model.id).order_by(Face.created_at)
        ).all()
        searches = session.execute(
            select(SearchHit, SearchEvent).join(SearchEvent, SearchHit.search_id == SearchEvent.id)
            .where(SearchHit.person_id == person.id).order_by(SearchEvent.created_at.desc())
        ).all()
    face_rows = [_face_row(face, image) for face, image in faces]
    indexed = [uuid.UUID(f["face_id"]) for f in face_rows if f["status"] == FaceStatus.indexed.value]
    vectors = dep.index.vectors(indexed)
    # Outliers are a 1:1 question (is this face the same person as the others?), so they use
    # the pack's verification threshold, not the stricter 1:N decision threshold.
    _mark_outliers(face_rows, vectors, dep.pipeline.default_threshold.value)
    lookalikes = _lookalikes(dep, person.id, vectors)
    best_other = lookalikes[0]["score"] if lookalikes else None
    report = {
        "person": record,
        "threshold": threshold.value,
        "faces": face_rows,
        "searches": [
            {"search_id": str(event.id), "when": event.created_at.isoformat(), "actor": event.actor,
             "query_sha256": event.query_sha256, "face_index": hit.face_index, "rank": hit.rank,
             "score": hit.score, "decision": hit.decision}
            for hit, event in searches
        ],
        "lookalikes": lookalikes,
        "lookalike_margin": None if best_other is None else round(threshold.value - best_other, 4),
        "outliers": [f["face_id"] for f in face_rows if f.get("outlier")],
    }
    with transaction(dep.runtime.sessions) as session:
        session.add(AuditEvent(actor=resolve_actor(actor), action="audit", person_id=person.id,
                               subject=person.external_id, details={"faces": len(face_rows),
                                                                    "searches": len(searches)}))
    return report


def _face_row(face: Face, image: Image) -> dict[str, Any]:
    return {
        "face_id": str(face.id), "status": face.status.value, "rejection": face.rejection,
        "source_path": image.source_path, "image_sha256": image.sha256, "bbox": face.bbox,
        "det_score": face.det_score, "iod_px": face.iod_px, "blur": face.blur,
        "yaw_deg": face.yaw_deg, "roll_deg": face.roll_deg,
        "enrolled_at": face.created_at.isoformat() if face.created_at else None,
    }


def _mark_outliers(rows: list[dict[str, Any]], vectors: dict[uuid.UUID, np.ndarray], threshold: float) -> None:
    """A face whose median similarity to the person's other faces is below the 1:1 threshold.

    The median, not the mean, so one mislabelled photo does not drag the good ones down;
    with fewer than four faces no face can be told to be the odd one out.
    """
    ids = list(vectors)
    if len(ids) < 4:
        return
    matrix = np.stack([vectors[i] for i in ids])
    sims = matrix @ matrix.T
    by_id = {uuid.UUID(r["face_id"]): r for r in rows}
    for row, face_id in enumerate(ids):
        score = float(np.median(np.delete(sims[row], row)))
        by_id[face_id]["similarity_to_own_faces"] = round(score, 4)
        by_id[face_id]["outlier"] = score < threshold


def _lookalikes(dep: Deployment, person_id: uuid.UUID, vectors: dict[uuid.UUID, np.ndarray]) -> list[dict[str, Any]]:
    """The closest other persons to any of this person's faces, best first."""
    best: dict[uuid.UUID, float] = {}
    for vector in vectors.values():
        for hit in dep.index.search_persons(vector, LOOKALIKES + 1, 1):
            if hit.person_id != person_id:
                best[hit.person_id] = max(best.get(hit.person_id, -1.0), hit.score)
    ranked = sorted(best.items(), key=lambda item: -item[1])[:LOOKALIKES]
    with dep.runtime.sessions() as session:
        people = {p.id: p for p in session.scalars(select(Person).where(Person.id.in_([pid for pid, _ in ranked])))}
    return [
        {"person": person_record(people[pid]), "score": round(score, 4)}
        for pid, score in ranked if pid in people
    ]
