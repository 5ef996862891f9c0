"""`identity verify`: are these two faces one person (1:1), or is this face a given person?

Two images: the cosine of their chosen faces. An image and a person: the cosine of the face to the
person's template (the score search ranks persons by) decides, with the person's best-scoring enrolled
face shown beside it. Either way the decision is taken at the 1:1 threshold: the model's threshold
calibrated by FAR (identity calibrate --far) where one is recorded, else the pack's documented 1:1
default; a threshold calibrated by FPIR belongs to the 1:N search and is not used here.

Each face is the image's largest unless a face index is given. A verification is recorded in the search
log like a search (parameters `{"kind": "verify", ...}`): the first image by its sha256, a person's
template score as the face's hit. The second image is not named in the log: an erasure redacts entries by
the searched photo, so the log keeps no other photo's identity. Against a person it is also an audit event.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from identity.app.actor import resolve_actor
from identity.app.core import App
from identity.app.deployment import Deployment
from identity.errors import ImageError, InvalidArgument, NoFaceFound
from identity.evaluation.decision import RAW
from identity.faces import DetectedFace, FacePipeline, ImageFaces, Quality, load_image
from identity.pathnames import path_text
from identity.serialize import json_field
from identity.services.maintenance.integrity import check_scores
from identity.services.records.thumbnails import search_thumbnail_rows
from identity.services.search.identify import MatchedFace
from identity.services.search.log import KIND, VERIFY
from identity.services.search.thresholds import Threshold, pack_threshold
from identity.store.sql.audit_events import record_audit_event
from identity.store.sql.db import transaction
from identity.store.sql.persons import PersonRecord, get_person, person_record
from identity.store.sql.searches import MATCH, UNKNOWN, record_search
from identity.store.sql.tables import UNKNOWN_DETECTOR, Model


class Verdict(StrEnum):
    MATCH = "match"
    NO_MATCH = "no_match"


@dataclass(frozen=True)
class VerifyImage:
    """One image to verify: its file, which face (None: the largest), and, from the server's inference
    threads, the image already analysed and the name it was uploaded under."""

    path: str
    face_index: int | None = None
    found: ImageFaces | ImageError | None = None
    name: str | None = None


@dataclass(frozen=True)
class VerifiedFace:
    image: str
    sha256: str
    face_index: int
    faces_in_image: int
    bbox: list[float]
    det_score: float
    detector: str = field(metadata=json_field(doc="the detection stage that found the face, e.g. hog/up1"))
    quality: Quality


@dataclass(frozen=True)
class VerifyResult:
    search_id: str = field(metadata=json_field(doc="the verification's entry in the search log"))
    model: str
    face_a: VerifiedFace
    face_b: VerifiedFace | None = field(metadata=json_field(doc="the second image's face; null against a person"))
    person: PersonRecord | None = field(metadata=json_field(doc="the person verified against; null for two images"))
    score: float = field(
        metadata=json_field(doc="cosine of the two faces; against a person, of the face to the person's template")
    )
    best_face: MatchedFace | None = field(
        metadata=json_field(doc="against a person: their enrolled face closest to face_a; null for two images")
    )
    threshold: float
    threshold_source: str
    threshold_far: float | None = field(metadata=json_field(doc="false-accept rate per comparison, when known"))
    decision: Verdict
    warnings: list[str]


def verify(
    app: App,
    image_a: VerifyImage,
    image_b: VerifyImage | None = None,
    person: str | None = None,
    actor: str | None = None,
) -> VerifyResult:
    """Verify image_a's face against image_b's face or against `person` (external id or uuid), one of them.

    Raises ImageError for an unusable image, NoFaceFound for one without a face, InvalidArgument for a face
    index the image does not have, NotFound for an unknown person."""
    if (image_b is None) == (person is None):
        raise InvalidArgument("verify against a second image or a person, one of them")
    dep = app.deployment()
    a_found, a_index, a_face = _face(dep, image_a)
    warnings = _small_face_warnings(dep, a_found, a_index, a_face)
    threshold = pairwise(dep.model, dep.pipeline)
    if image_b is not None:
        b_found, b_index, b_face = _face(dep, image_b)
        warnings += _small_face_warnings(dep, b_found, b_index, b_face)
        score = round(float(np.dot(a_face.embedding, b_face.embedding)), 4)
        face_b: VerifiedFace | None = _verified(b_found, b_index, b_face)
        who, best = None, None
    else:
        assert person is not None
        face_b = None
        with app.sessions() as session:
            who = person_record(get_person(session, person))
        score, best = _against_person(dep, a_face.embedding, uuid.UUID(who.id))
    verdict = Verdict.MATCH if score >= threshold.value else Verdict.NO_MATCH
    face_a = _verified(a_found, a_index, a_face)
    search_id = _log(dep, a_found, face_a, face_b, who, score, best, threshold, verdict, actor, a_face.crop)
    return VerifyResult(
        search_id,
        dep.model.model_id,
        face_a,
        face_b,
        who,
        score,
        best,
        threshold.value,
        threshold.source,
        threshold.far,
        verdict,
        warnings,
    )


def pairwise(model: Model | None, pipeline: FacePipeline) -> Threshold:
    """The 1:1 threshold (a cosine) and where it came from: calibrated by FAR, else the pack's default."""
    if model is not None and model.threshold is not None and model.threshold_fpir is None:
        return Threshold(model.threshold, model.threshold_source or "calibrated", model.threshold_far)
    return pack_threshold(pipeline)


def _face(dep: Deployment, image: VerifyImage) -> tuple[ImageFaces, int, DetectedFace]:
    name = image.name or path_text(image.path)
    found = image.found
    if found is None:
        [found] = dep.pipeline.process([dataclasses.replace(load_image(image.path), path=name)])
    elif isinstance(found, ImageError):
        raise ImageError(name, found.reason)
    else:
        found = dataclasses.replace(found, path=name)
    if not found.faces:
        raise NoFaceFound(name)
    if image.face_index is None:
        index = max(range(len(found.faces)), key=lambda i: found.faces[i].area)
    elif 0 <= image.face_index < len(found.faces):
        index = image.face_index
    else:
        raise InvalidArgument(
            f"{name} has no face {image.face_index}: it holds {len(found.faces)} "
            f"(indexes 0 to {len(found.faces) - 1}, as `identity faces detect` lists them)"
        )
    return found, index, found.faces[index]


def _against_person(dep: Deployment, vector: np.ndarray, person_id: uuid.UUID) -> tuple[float, MatchedFace | None]:
    """The face's cosine to the person's template, and the person's best-scoring enrolled face."""
    templates = dep.templates.search(vector, 1, [person_id])
    check_scores(dep.templates, templates)
    if not templates:
        raise InvalidArgument(
            f"person {person_id} has no searchable face under model {dep.model.model_id}: nothing to verify against"
        )
    groups = dep.index.search_persons(vector, 1, 1, [person_id])
    check_scores(dep.index, (hit for group in groups for hit in group.faces))
    best = next((MatchedFace(str(g.faces[0].face_id), round(g.faces[0].score, 4)) for g in groups if g.faces), None)
    return round(templates[0].score, 4), best


def _verified(found: ImageFaces, index: int, face: DetectedFace) -> VerifiedFace:
    return VerifiedFace(
        found.path,
        found.sha256,
        index,
        len(found.faces),
        [round(float(v), 1) for v in face.bbox],
        round(float(face.det_score), 4),
        face.detector or UNKNOWN_DETECTOR,
        face.quality,
    )


def _small_face_warnings(dep: Deployment, found: ImageFaces, index: int, face: DetectedFace) -> list[str]:
    """Search does not search a face this small (its scores are noise); a verification says so instead."""
    minimum = dep.pipeline.faces.min_search_iod_px
    if face.quality.iod_px >= minimum:
        return []
    return [
        f"{found.path} face {index}: {face.quality.iod_px:.1f} px between the eyes, below the {minimum:g} px "
        "search minimum (faces.min_search_iod_px): its score is unreliable"
    ]


def _log(
    dep: Deployment,
    found: ImageFaces,
    face_a: VerifiedFace,
    face_b: VerifiedFace | None,
    who: PersonRecord | None,
    score: float,
    best: MatchedFace | None,
    threshold: Threshold,
    verdict: Verdict,
    actor: str | None,
    crop: np.ndarray,
) -> str:
    model_row = dep.recorded_model().id
    by = resolve_actor(actor)
    with transaction(dep.app.sessions) as session:
        event = {
            "actor": by,
            "query_sha256": found.sha256,
            "query_name": found.path,
            "model_id": model_row,
            "threshold": threshold.value,
            "top_k": 1,
            "parameters": {
                KIND: VERIFY,
                "against": "person" if who else "image",
                "face_index_a": face_a.face_index,
                "face_index_b": face_b.face_index if face_b else None,
                "score": score,
                "decision": verdict.value,
                "threshold_source": threshold.source,
                "decision_rule": RAW,
            },
            "face_count": 1,
        }
        hits = []
        if who is not None:  # the person's hit: the audit of the person lists the verification
            hits.append(
                {
                    "face_index": face_a.face_index,
                    "face_bbox": face_a.bbox,
                    "face_detector": face_a.detector,
                    "rank": 1,
                    "person_id": uuid.UUID(who.id),
                    "score": score,
                    "decision": MATCH if verdict == Verdict.MATCH else UNKNOWN,
                    "matched_faces": 1 if best else 0,
                    "faces": [[best.face_id, best.score]] if best else [],
                }
            )
        search_id = record_search(session, event, hits)
        if who is not None and verdict == Verdict.MATCH:  # as a search keeps a match's face, for its review
            session.add_all(search_thumbnail_rows(dep.app, search_id, [(face_a.face_index, crop)]))
        if who is not None:
            record_audit_event(
                session,
                by,
                "verify",
                person_id=uuid.UUID(who.id),
                subject=who.external_id,
                details={"search_id": str(search_id), "score": score, "decision": verdict.value},
            )
        return str(search_id)
