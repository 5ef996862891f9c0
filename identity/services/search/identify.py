"""`identity search`: who is in this photo — ranked persons per face, a decision, a log entry.

Persons are ranked by their template (identity.services.search.templates): a candidate's
`score` is the raw cosine of the face to the person's template, the normalized mean of
their photos. Two vector queries per face: the templates (the candidates and the
decision's cohort, identity.evaluation.decision), then the candidates' own best faces,
shown as `faces`. Every search is recorded (append-only): when, who asked, the image's
sha256 (never the image), the model and threshold, and the ranked hits per face.

A face with fewer pixels between the eyes than faces.min_search_iod_px is not searched:
at that size a stranger's best score is noise that crosses the calibrated threshold
(benchmarks/tiny_faces.py), so its outcome is `not_searched`, with the reason, never
`unknown`, and the log records it among the search's parameters.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from identity.app.actor import resolve_actor
from identity.app.core import App
from identity.app.deployment import Deployment
from identity.errors import ImageError, InvalidArgument, NoFaceFound
from identity.evaluation.decision import (
    MIN_COHORT,
    PERSONS_NEEDED,
    RAW,
    cohort_large_enough,
    decision_score,
)
from identity.faces import DetectedFace, ImageFaces, Quality, load_image, scan_limit_warning
from identity.pathnames import path_text
from identity.serialize import json_field
from identity.services.maintenance.integrity import check_scores, missing_vectors_warning
from identity.services.records.thumbnails import search_thumbnail_rows
from identity.services.search.stages import stage
from identity.services.search.thresholds import Threshold, pack_threshold, resolve_threshold
from identity.services.search.unknown_faces import expire_unknown, keep_unknown
from identity.store.sql.candidates import candidates_and_rejections, person_records
from identity.store.sql.persons import PersonRecord, persons_with_attributes
from identity.store.sql.searches import MATCH, NOT_SEARCHED, UNKNOWN, Decision, record_search
from identity.store.sql.tables import BEST_FACES_LOGGED, UNKNOWN_DETECTOR
from identity.store.sql.thumbnails import delete_expired_search_thumbnails

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

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
        # The threshold applies to a decision score: a cosine, or a cosine plus a few hundredths.
        if self.threshold is not None and not -1.0 <= self.threshold <= 3.0:  # a nan fails both, so it is caught too
            raise InvalidArgument(
                f"threshold {self.threshold} is out of range: give -1 to 3 (decision scores run from -1 to about 2)"
            )
        if self.min_score is not None and not -1.0 <= self.min_score <= 1.0:
            raise InvalidArgument(
                f"minimum score {self.min_score} is out of range: scores are cosine similarities from -1 to 1"
            )


@dataclass(frozen=True)
class MatchedFace:
    face_id: str
    score: float  # cosine of the searched face to this enrolled face


@dataclass(frozen=True)
class Candidate:
    rank: int
    score: float  # cosine to the person's template
    matched_faces: int
    person: PersonRecord
    faces: tuple[MatchedFace, ...] = ()  # the person's best faces for this search, best first


@dataclass(frozen=True)
class FaceMatch:
    face_index: int
    bbox: list[float]
    det_score: float
    detector: str = field(metadata=json_field(doc="the detection stage that found the face, e.g. hog/up1"))
    quality: Quality
    decision: Decision
    decision_score: float | None = None  # what the decision compared with the threshold; None: no candidate
    reason: str | None = field(
        default=None, metadata=json_field(doc="why the face was not searched (decision not_searched); null when it was")
    )
    candidates: list[Candidate] = field(default_factory=list)
    # The persons the decision saw, best first (person id, template score): the candidates and the
    # cohort after them. Not shown; eval scores its held-out searches from it.
    ranked: tuple[tuple[uuid.UUID, float], ...] = field(default=(), metadata=json_field(skip=True))

    @property
    def best(self) -> Candidate | None:
        return self.candidates[0] if self.candidates else None


@dataclass(frozen=True)
class ThresholdKeys:
    """A search result's threshold as its JSON words it, beside the result's other keys."""

    threshold: float
    threshold_source: str
    decision_rule: str
    threshold_fpir: float | None = field(metadata=json_field(omit_if_none=True))
    threshold_gallery_persons: int | None = field(metadata=json_field(omit_if_none=True))

    @classmethod
    def of(cls, threshold: Threshold) -> ThresholdKeys:
        return cls(threshold.value, threshold.source, threshold.rule, threshold.fpir, threshold.gallery_persons)


@dataclass(frozen=True)
class SearchResult:
    search_id: str
    path: str = field(metadata=json_field(name="image"))
    sha256: str
    model: str
    threshold: Threshold = field(metadata=json_field(flatten=True, encode=ThresholdKeys.of))
    warnings: list[str]
    faces: list[FaceMatch]


@dataclass(frozen=True)
class SearchFailure:
    """An image that could not be searched (unusable, or no face in it): one entry of `errors`, as the CLI's
    `search --json` and POST /v1/search give them."""

    image: str
    error: str
    exit_code: int


def search_image(
    app: App, path: str, options: SearchOptions, found: ImageFaces | ImageError | None = None, name: str | None = None
) -> SearchResult:
    """Search one image file; raises ImageError for an unusable file and NoFaceFound when no face is seen.

    `found`: the image as an inference executor already analysed it (the server's threads), instead
    of the deployment's pipeline here; `name`: what the result and the search log call the image
    (an upload's name), by default its path."""
    dep = app.deployment()
    # Named by its path_text: the search log and the output take a name that is not UTF-8 escaped.
    name = name or path_text(path)
    if found is None:
        [found] = dep.pipeline.process([dataclasses.replace(load_image(path), path=name)])
    elif isinstance(found, ImageError):
        raise ImageError(name, found.reason)
    else:
        found = dataclasses.replace(found, path=name)
    if not found.faces:
        raise NoFaceFound(name)
    return search_faces(app, found, options)


def search_one(
    app: App, path: str, options: SearchOptions, found: ImageFaces | ImageError | None = None, name: str | None = None
) -> SearchResult | SearchFailure:
    """search_image, with an image that cannot be searched given back as its SearchFailure (a batch goes on)."""
    try:
        return search_image(app, path, options, found, name)
    except (ImageError, NoFaceFound) as exc:
        return SearchFailure(name or path_text(path), exc.message, exc.exit_code)


def search_faces(app: App, found: ImageFaces, options: SearchOptions) -> SearchResult:
    dep = app.deployment()
    chosen = _faces_to_search(found.faces, options.largest_face_only)
    minimum = dep.pipeline.faces.min_search_iod_px
    faces = [(index, face) for index, face in chosen if face.quality.iod_px >= minimum]
    too_small = [_not_searched(index, face, minimum) for index, face in chosen if face.quality.iod_px < minimum]
    allowed = _persons_matching(dep, options.filters) if options.filters else None
    threshold, warnings = decision_threshold(app, options.threshold, allowed)
    wanted = max(options.top_k, PERSONS_NEEDED)  # the cohort even under the raw rule: eval scores both
    with stage("templates"):
        ranked = [dep.templates.search(face.embedding, wanted, allowed) if allowed != [] else [] for _, face in faces]
        check_scores(dep.templates, (hit for hits in ranked for hit in hits))
    # One connection for the search's reads and its log entry: a checkout, a ping and a transaction less.
    with app.sessions() as session:
        with stage("persons"):
            first = {hit.person_id for hits in ranked for hit in hits[: options.top_k]}
            people, rejected = candidates_and_rejections(session, first, found.sha256, dep.model.id)
            ranked, left_out = _without_rejected(faces, ranked, rejected)
            # Only when a review rejected a match for this image: the persons moving up in its place (rare).
            moved_up = {hit.person_id for hits in ranked for hit in hits[: options.top_k]} - first
            people |= person_records(session, moved_up | {person_id for _, person_id in left_out} - first)
        warnings = warnings + [
            f"face {index}: {people[person_id].external_id} is left out: a reviewer rejected that "
            "match for this image (identity review list)"
            for index, person_id in left_out
            if person_id in people
        ]
        # A template whose person was erased a moment ago has no row: it is never shown.
        tops = [[hit for hit in hits[: options.top_k] if hit.person_id in people] for hits in ranked]
        kept = [[hit for hit in top if options.min_score is None or hit.score >= options.min_score] for top in tops]
        with stage("faces"):
            best_faces = [
                _best_faces(dep, face.embedding, [hit.person_id for hit in hits])
                for (_, face), hits in zip(faces, kept)
            ]
        with stage("decision"):
            matches = [
                _decided(index, face, hits, top, shown_hits, best, people, threshold)
                for (index, face), hits, top, shown_hits, best in zip(faces, ranked, tops, kept, best_faces)
            ]
            warnings += _gallery_warnings(dep, threshold) + missing_vectors_warning(app) + _exact_scan_warning(dep)
        if found.capped:
            warnings.append(
                f"{found.path}: {found.capped} more faces found than faces.max_faces; "
                "the lowest-scored were not searched"
            )
        if found.scan_limited_px:
            warnings.append(scan_limit_warning(found.path, found.width, found.height, found.scan_limited_px))
        unknown = [face for face, m in zip(faces, matches) if m.decision == UNKNOWN]
        # A reviewer sees the searched face of every match, and of every unknown close below the threshold.
        near = threshold.value - dep.settings.review.near_threshold
        shown = [
            (m.face_index, face.crop)
            for (_, face), m in zip(faces, matches)
            if m.decision == MATCH or (m.decision_score is not None and m.decision_score >= near)
        ]
        matches = sorted(matches + too_small, key=lambda m: m.face_index)
        search_id = _log(session, dep, found, options, threshold, matches, minimum, shown)
    if dep.unknown is not None:  # settings keep them, for clustering (identity.services.search.unknown_faces)
        keep_unknown(app, found, search_id, unknown)
        expire_unknown(app)
    return SearchResult(search_id, found.path, found.sha256, dep.model.model_id, threshold, warnings, matches)


def decision_threshold(
    app: App, override: float | None = None, allowed: list[uuid.UUID] | None = None
) -> tuple[Threshold, list[str]]:
    """The threshold and its rule; the normalized rule needs a cohort, so a small gallery falls back to raw."""
    dep = app.deployment()
    threshold = resolve_threshold(dep.model, dep.pipeline, override)
    persons = dep.gallery_persons() if allowed is None else len(allowed)
    if threshold.rule == RAW or cohort_large_enough(persons) or persons == 0:
        return threshold, []
    # A threshold given on the command line is kept, now read as a similarity.
    fallback = pack_threshold(dep.pipeline) if override is None else Threshold(override, "command line")
    where = "the gallery" if allowed is None else "the persons the filters allow"
    return fallback, [
        f"{where} holds {persons} persons, too few for the normalized decision (it needs "
        f"{MIN_COHORT + 1}): deciding on the raw similarity at threshold {fallback.value} "
        f"({fallback.source})"
    ]


def _without_rejected(
    faces: list[tuple[int, DetectedFace]], ranked: list[list[Any]], rejected: dict[int, set[uuid.UUID]]
) -> tuple[list[list[Any]], list[tuple[int, uuid.UUID]]]:
    """Each face's ranking without the persons a review rejected for this face of this image: a rejected
    match is never made again for the same photo, and the decision is taken among the others."""
    if not rejected:
        return ranked, []
    kept, left_out = [], []
    for (index, _), hits in zip(faces, ranked):
        refused = rejected.get(index, set())
        kept.append([hit for hit in hits if hit.person_id not in refused])
        left_out += [(index, hit.person_id) for hit in hits if hit.person_id in refused]
    return kept, left_out


def _decided(
    index: int,
    face: DetectedFace,
    hits: list[Any],
    top: list[Any],
    kept: list[Any],
    best_faces: dict[uuid.UUID, tuple[MatchedFace, ...]],
    people: dict[uuid.UUID, PersonRecord],
    threshold: Threshold,
) -> FaceMatch:
    """One searched face's outcome: its shown candidates (`kept` of the `top` ranked), and the decision
    taken on all its ranked `hits`."""
    candidates = [
        Candidate(
            rank,
            round(hit.score, 4),
            len(best_faces.get(hit.person_id, ())),
            people[hit.person_id],
            best_faces.get(hit.person_id, ()),
        )
        for rank, hit in enumerate(kept, start=1)
    ]
    score = round(decision_score([hit.score for hit in hits], threshold.rule), 4) if hits else None
    # A match names someone: not when min_score hid the best person.
    named = bool(kept) and kept[0] is top[0]
    decision = MATCH if named and score is not None and score >= threshold.value else UNKNOWN
    ranked = tuple((hit.person_id, hit.score) for hit in hits)
    return _face_match(index, face, decision, decision_score=score, candidates=candidates, ranked=ranked)


def _best_faces(dep: Deployment, vector: Any, person_ids: list[uuid.UUID]) -> dict[uuid.UUID, tuple[MatchedFace, ...]]:
    """Each candidate's best-scoring faces (one grouped query over the candidates only)."""
    if not person_ids:
        return {}
    groups = dep.index.search_persons(vector, len(person_ids), FACES_PER_PERSON, person_ids)
    check_scores(dep.index, (hit for group in groups for hit in group.faces))
    return {g.person_id: tuple(MatchedFace(str(h.face_id), round(h.score, 4)) for h in g.faces) for g in groups}


def _gallery_warnings(dep: Deployment, threshold: Threshold) -> list[str]:
    persons = dep.gallery_persons()
    if persons == 0:  # an "unknown" from an empty gallery says nothing about the face
        return [
            f"the gallery is empty: no person has a searchable face under model {dep.model.model_id}, "
            "so every face is unknown; enroll photos first (identity enroll)"
        ]
    return threshold.warnings(persons)


def _exact_scan_warning(dep: Deployment) -> list[str]:
    scanned, most = dep.templates.unindexed(), dep.settings.vectors.max_exact_scan
    if scanned <= most:
        return []
    return [
        f"{scanned} person templates are not in a search graph yet, more than vectors.max_exact_scan ({most}): "
        "this search compared them one by one, which grows slow with the gallery; `identity doctor --repair` "
        "builds the graph (enrollment runs end by building it)"
    ]


def _not_searched(index: int, face: DetectedFace, minimum: float) -> FaceMatch:
    return _face_match(
        index,
        face,
        NOT_SEARCHED,
        reason=f"{face.quality.iod_px:.1f} px between the eyes, below the {minimum:g} px search minimum "
        "(faces.min_search_iod_px)",
    )


def _face_match(index: int, face: DetectedFace, decision: Decision, **outcome: Any) -> FaceMatch:
    """A face's entry in the result: where it is and what found it, then its outcome."""
    box = [round(float(v), 1) for v in face.bbox]
    return FaceMatch(index, box, round(float(face.det_score), 4), _detector_of(face), face.quality, decision, **outcome)


def _detector_of(face: DetectedFace) -> str:
    return face.detector or UNKNOWN_DETECTOR


def _faces_to_search(faces: Sequence[DetectedFace], largest_only: bool) -> list[tuple[int, DetectedFace]]:
    indexed = list(enumerate(faces))
    if largest_only:
        return [max(indexed, key=lambda item: item[1].area)]
    return indexed


def _persons_matching(dep: Deployment, filters: dict[str, str | list[str]]) -> list[uuid.UUID]:
    wanted = {key: [values] if isinstance(values, str) else list(values) for key, values in filters.items()}
    with dep.app.sessions() as session:
        return persons_with_attributes(session, wanted)


def _log(
    session: Session,
    dep: Deployment,
    found: ImageFaces,
    options: SearchOptions,
    threshold: Threshold,
    matches: list[FaceMatch],
    min_search_iod_px: float,
    crops: Sequence[tuple[int, Any]],
) -> str:
    """Record the search in `session` and commit; `crops` (face index, aligned crop) are the faces whose
    thumbnails are kept. The event and its hits go in two statements, the hits in one multi-row insert."""
    model_row = dep.recorded_model().id  # the log names the model: a read of a store without its row records it
    with stage("log"):
        event = {
            "actor": resolve_actor(options.actor),
            "query_sha256": found.sha256,
            "query_name": found.path,
            "model_id": model_row,
            "threshold": threshold.value,
            "top_k": options.top_k,
            "parameters": {
                "min_score": options.min_score,
                "filters": options.filters,
                "largest_face_only": options.largest_face_only,
                "threshold_source": threshold.source,
                "decision_rule": threshold.rule,
                "min_search_iod_px": min_search_iod_px,
                NOT_SEARCHED: [
                    {"face_index": m.face_index, "bbox": m.bbox, "reason": m.reason}
                    for m in matches
                    if m.decision == NOT_SEARCHED
                ],
            },
            "face_count": len(matches),
        }
        hits = [
            # The face's decision names its first candidate; the others were only ranked.
            {
                "face_index": m.face_index,
                "face_bbox": m.bbox,
                "face_detector": m.detector,
                "rank": c.rank,
                "person_id": uuid.UUID(c.person.id),
                "score": c.score,
                "decision": m.decision if c.rank == 1 else UNKNOWN,
                "matched_faces": c.matched_faces,
                "faces": [[f.face_id, f.score] for f in c.faces[:BEST_FACES_LOGGED]],
            }
            for m in matches
            for c in m.candidates
        ]
        search_id = record_search(session, event, hits)
        if thumbnails := search_thumbnail_rows(dep.app, search_id, crops):
            session.add_all(thumbnails)
            # Expired ones are never shown; a search that keeps one deletes them (so does doctor --repair).
            delete_expired_search_thumbnails(session, datetime.now(UTC))
        session.flush()
    with stage("commit"):
        session.commit()
    return str(search_id)
