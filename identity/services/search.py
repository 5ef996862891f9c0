"""`identity search`: who is in this photo — ranked persons per face, a decision, a log entry.

Every search is recorded (append-only): when, who asked, the image's sha256 (never
the image), the model and threshold, and the ranked hits per face.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Sequence

from sqlalchemy import select

from identity.errors import InvalidArgument, NoFaceFound
from identity.evaluation.decision import decision_score
from identity.faces import DetectedFace, ImageFaces, load_image
from identity.services.actor import resolve_actor
from identity.services.deployment import Deployment
from identity.services.thresholds import Threshold, resolve_threshold
from identity.store.sql.db import transaction
from identity.store.sql.models import Person, SearchEvent, SearchHit
from identity.store.sql.persons import person_record, persons_with_attributes

FACES_PER_PERSON = 5  # how many of a person's faces are counted among the hits


@dataclass(frozen=True)
class SearchOptions:
    top_k: int = 5
    threshold: float | None = None  # None: calibrated, else the pack's default
    min_score: float | None = None  # hide candidates below this score
    # Person attributes that must match: every key (AND); a list of values matches any of them (OR).
    filters: dict[str, str | list[str]] = field(default_factory=dict)
    largest_face_only: bool = False
    actor: str | None = None  # None: the OS user

    def __post_init__(self) -> None:
        # Scores are cosine similarities; nan or inf would also land in the search log.
        for name, value in (("threshold", self.threshold), ("minimum score", self.min_score)):
            if value is not None and not -1.0 <= value <= 1.0:  # a nan fails both comparisons, so it is caught too
                raise InvalidArgument(f"{name} {value} is out of range: scores are cosine similarities from -1 to 1")


@dataclass(frozen=True)
class Candidate:
    rank: int
    score: float
    matched_faces: int
    person: dict[str, Any]


@dataclass(frozen=True)
class FaceMatch:
    face_index: int
    bbox: list[float]
    det_score: float
    quality: dict[str, Any]
    decision: str  # match / unknown
    candidates: list[Candidate]
    decision_score: float | None = None  # what the decision compared with the threshold; None: no candidate

    @property
    def best(self) -> Candidate | None:
        return self.candidates[0] if self.candidates else None


@dataclass(frozen=True)
class SearchResult:
    search_id: str
    path: str
    sha256: str
    model: str
    threshold: Threshold
    faces: list[FaceMatch]
    warnings: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "search_id": self.search_id,
            "image": self.path,
            "sha256": self.sha256,
            "model": self.model,
            "threshold": self.threshold.value,
            "threshold_source": self.threshold.source,
            **({"threshold_fpir": self.threshold.fpir} if self.threshold.fpir is not None else {}),
            **({"threshold_gallery_persons": self.threshold.gallery_persons}
               if self.threshold.gallery_persons is not None else {}),
            "warnings": self.warnings,
            "faces": [
                {
                    "face_index": f.face_index,
                    "bbox": f.bbox,
                    "det_score": f.det_score,
                    "quality": f.quality,
                    "decision": f.decision,
                    "decision_score": f.decision_score,
                    "candidates": [
                        {"rank": c.rank, "score": c.score, "matched_faces": c.matched_faces, "person": c.person}
                        for c in f.candidates
                    ],
                }
                for f in self.faces
            ],
        }


def search_image(dep: Deployment, path: str, options: SearchOptions) -> SearchResult:
    """Search one image file; raises ImageError for an unusable file and NoFaceFound when no face is seen."""
    image = load_image(path)
    [found] = dep.pipeline.process([image])
    if not found.faces:
        raise NoFaceFound(path)
    return search_faces(dep, found, options)


def search_faces(dep: Deployment, found: ImageFaces, options: SearchOptions) -> SearchResult:
    threshold = resolve_threshold(dep.model, dep.pipeline, options.threshold)
    faces = _faces_to_search(found.faces, options.largest_face_only)
    allowed = _persons_matching(dep, options.filters) if options.filters else None
    groups = [
        dep.index.search_persons(face.embedding, options.top_k, FACES_PER_PERSON, allowed) if allowed != [] else []
        for _, face in faces
    ]
    wanted = {hit.person_id for group in groups for hit in group}
    with dep.runtime.sessions() as session:
        people = {p.id: p for p in session.scalars(select(Person).where(Person.id.in_(wanted)))} if wanted else {}
    matches = []
    for (index, face), group in zip(faces, groups):
        # A vector whose person was erased a moment ago has no row: it is never shown.
        kept = [hit for hit in group if hit.person_id in people
                and (options.min_score is None or hit.score >= options.min_score)]
        candidates = [
            Candidate(rank, round(hit.score, 4), len(hit.faces), person_record(people[hit.person_id]))
            for rank, hit in enumerate(kept, start=1)
        ]
        score = round(decision_score([c.score for c in candidates]), 4) if candidates else None
        decision = "match" if score is not None and score >= threshold.value else "unknown"
        matches.append(FaceMatch(index, [round(float(v), 1) for v in face.bbox], round(float(face.det_score), 4),
                                 face.quality.as_dict(), decision, candidates, score))
    warnings = _gallery_warnings(dep, threshold)
    search_id = _log(dep, found, options, threshold, matches)
    return SearchResult(search_id, found.path, found.sha256, dep.model.model_id, threshold, matches, warnings)


def _gallery_warnings(dep: Deployment, threshold: Threshold) -> list[str]:
    persons = dep.gallery_persons()
    if persons == 0:  # an "unknown" from an empty gallery says nothing about the face
        return [f"the gallery is empty: no person has a searchable face under model {dep.model.model_id}, "
                "so every face is unknown; enroll photos first (identity enroll)"]
    return threshold.warnings(persons)


def _faces_to_search(faces: Sequence[DetectedFace], largest_only: bool) -> list[tuple[int, DetectedFace]]:
    indexed = list(enumerate(faces))
    if largest_only:
        return [max(indexed, key=lambda item: item[1].area)]
    return indexed


def _persons_matching(dep: Deployment, filters: dict[str, str | list[str]]) -> list[uuid.UUID]:
    wanted = {key: [values] if isinstance(values, str) else list(values) for key, values in filters.items()}
    with dep.runtime.sessions() as session:
        return persons_with_attributes(session, wanted)


def _log(dep: Deployment, found: ImageFaces, options: SearchOptions, threshold: Threshold,
         matches: list[FaceMatch]) -> str:
    with transaction(dep.runtime.sessions) as session:
        event = SearchEvent(
            actor=resolve_actor(options.actor), query_sha256=found.sha256, query_name=found.path,
            model_id=dep.model.id, threshold=threshold.value, top_k=options.top_k,
            parameters={"min_score": options.min_score, "filters": options.filters,
                        "largest_face_only": options.largest_face_only, "threshold_source": threshold.source},
            face_count=len(matches),
        )
        session.add(event)
        session.flush()
        session.add_all(
            SearchHit(search_id=event.id, face_index=m.face_index, face_bbox=m.bbox, rank=c.rank,
                      person_id=uuid.UUID(c.person["id"]), score=c.score,
                      decision="match" if c.score >= threshold.value else "unknown", matched_faces=c.matched_faces)
            for m in matches for c in m.candidates
        )
        return str(event.id)

