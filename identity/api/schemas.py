"""The JSON of every request and response, as pydantic models, so `/openapi.json` states the exact schemas.

They mirror the CLI's `--json` output: a response is a service result's as_dict(); where that is
the dataclass's plain fields, the schema is made from the dataclass (`narrowed`), its closed sets
stated as enums.
"""

from __future__ import annotations

import dataclasses
from enum import StrEnum
from typing import Any, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, create_model

from identity.services.queue import jobs
from identity.services.access import keys
from identity.services.review import matches as reviews
from identity.services.search import log as search_log

# Every closed set as an enum, so a generated client gets one type per set (values from the
# services' own lists where they keep one, so the two cannot drift apart).
Role = StrEnum("Role", {role: role for role in keys.ROLES})
JobStatus = StrEnum("JobStatus", {s: s for s in jobs.STATUSES})
JobOutcome = StrEnum("JobOutcome", {s: s for s in jobs.OUTCOMES})
JobState = StrEnum("JobState", {s: s for s in (*jobs.STATUSES, *jobs.OUTCOMES)})  # the jobs list's filter
Decision = StrEnum("Decision", {d: d for d in search_log.DECISIONS})  # a face's outcome
DecisionFilter = StrEnum("DecisionFilter", {d: d for d in search_log.DECISION_FILTERS})  # the search log's filter
ReviewSummary = StrEnum("ReviewSummary", {s: s for s in ("unreviewed", *reviews.VERDICTS, "mixed")})
HitReview = StrEnum("HitReview", {s: s for s in (reviews.UNREVIEWED, *reviews.VERDICTS)})  # one searched face's review


def narrowed(name: str, source: type, **types: Any) -> type[BaseModel]:
    """The fields of the services' dataclass `source` as a model, the closed sets among them as enums.

    The dataclass stays the one list of fields (a field added there appears here); only
    the types named in `types` differ.
    """
    hints = get_type_hints(source)
    fields: dict[str, Any] = {}
    for field in dataclasses.fields(source):
        default = field.default if field.default is not dataclasses.MISSING else ...
        fields[field.name] = (types.get(field.name, hints[field.name]), default)
    generated = (source.__doc__ or "").startswith(f"{source.__name__}(")  # the dataclass's own: a field list
    doc = None if generated else source.__doc__
    return create_model(name, __doc__=doc, **fields)


Job = narrowed("Job", jobs.JobRecord, status=JobStatus, outcome=JobOutcome | None)
LoggedSearch = narrowed("LoggedSearch", search_log.LoggedSearch, decision=Decision, review=ReviewSummary | None)
ApiKey = narrowed("ApiKey", keys.KeyRecord, role=Role)
CreatedApiKey = create_model("CreatedApiKey", __base__=ApiKey,
                             key=(str, Field(description="shown once; only a salted hash is stored")))


class ErrorBody(BaseModel):
    error: str
    detail: Any = None


class PersonRef(BaseModel):
    """A person named inside another answer (a search candidate, an audit, a look-alike): no face count."""

    id: str
    external_id: str
    display_name: str | None
    attributes: dict[str, Any]
    created_at: str | None = Field(description="ISO 8601 UTC with its offset")


class Person(PersonRef):
    faces: int  # searchable faces under the model in use, on every answer (create, read, list, update)


class PersonCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    external_id: str = Field(min_length=1, max_length=255)
    display_name: str | None = Field(default=None, max_length=255)
    attributes: dict[str, Any] = Field(default_factory=dict)


class PersonUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    display_name: str | None = Field(default=None, max_length=255)
    attributes: dict[str, Any] = Field(default_factory=dict)
    remove: list[str] = Field(default_factory=list, description="attribute keys to remove")


class MatchedFace(BaseModel):
    face_id: str
    score: float


class Candidate(BaseModel):
    rank: int
    score: float
    matched_faces: int
    person: PersonRef
    faces: list[MatchedFace]


class FaceMatch(BaseModel):
    face_index: int
    bbox: list[float]
    det_score: float
    detector: str = Field(description="the detection stage that found the face, e.g. hog/up1")
    quality: dict[str, Any]
    decision: Decision
    decision_score: float | None
    reason: str | None = Field(description="why the face was not searched (decision not_searched); null when it was")
    candidates: list[Candidate]


class SearchResult(BaseModel):
    search_id: str
    image: str
    sha256: str
    model: str
    threshold: float
    threshold_source: str
    decision_rule: str
    threshold_fpir: float | None = None
    threshold_gallery_persons: int | None = None
    warnings: list[str]
    faces: list[FaceMatch]


class ImageFailure(BaseModel):
    image: str
    error: str
    exit_code: int


class SearchResponse(BaseModel):
    results: list[SearchResult]
    errors: list[ImageFailure]


class Merge(BaseModel):
    model_config = ConfigDict(extra="forbid")
    absorb: str = Field(description="external id or uuid of the person merged into this one (then removed)")


class MergeResult(BaseModel):
    kept: str
    merged: str
    faces_moved: int
    kept_id: str = Field(description="the kept person's uuid, for the routes that take a person")


class FaceMove(BaseModel):
    model_config = ConfigDict(extra="forbid")
    to: str = Field(description="external id or uuid of the person the face belongs to")


class FaceMoveResult(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    face_id: str
    from_: str | None = Field(alias="from")
    to: str


class Erasure(BaseModel):
    """What a deletion removed, per store; or, when it was already done, when and by whom
    (the fields of `identity person delete --json` / `face delete --json`, in their order)."""

    already_deleted: bool | None = None
    face_id: str | None = None
    person: str | None = None
    deleted: str | None = None
    person_id: str | None = None
    faces_erased: int | None = None
    removed: dict[str, Any] | None = None
    deleted_at: str | None = None
    by: str | None = None


class Lookalike(BaseModel):
    person: PersonRef
    score: float


class AuditSearch(BaseModel):
    """A search that returned the person, and the review in force on that hit (the search log's words)."""

    search_id: str
    when: str
    actor: str
    query_sha256: str | None
    face_index: int
    face_detector: str = Field(description="the detection stage that found the searched face; unknown: logged before "
                               "faces kept it")
    rank: int
    score: float | None
    decision: Decision
    review: HitReview
    reviewed_by: str | None
    reviewed_at: str | None
    review_note: str | None


class Audit(BaseModel):
    person: PersonRef
    threshold: float
    faces: list[dict[str, Any]]
    searches: list[AuditSearch]
    lookalikes: list[Lookalike]
    decision_rule: str
    lookalike_margin: float | None
    outliers: list[str]


class EnrolledImage(BaseModel):
    image: str
    external_id: str
    outcome: str = Field(description="enrolled, rejected, failed, duplicate, conflict or skipped")
    reason: str | None
    faces_found: int | None


class EnrollmentSummary(BaseModel):
    """What `identity enroll --json` prints, and each image's final state."""

    batch: str
    queued: int
    processed: int
    counts: dict[str, int]
    faces_enrolled: int
    seconds: float
    images_per_second: float | None
    inconsistent_persons: list[dict[str, Any]]
    duplicates: list[dict[str, str]] = Field(default_factory=list, description="inputs with the bytes of an earlier "
                                             "one, enrolled once: path, duplicate_of")
    images: list[EnrolledImage]


class EnrollmentQueued(BaseModel):
    batch: str
    queued: int
    skipped: list[dict[str, Any]] = Field(description="inputs that did not become jobs, with the reason")


class EnrollmentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    paths: list[str] = Field(min_length=1, description="folders (one sub-folder per person) or files, under an "
                                                       "import root (IDENTITY_API__IMPORT_ROOTS)")
    person: str | None = Field(default=None, description="enroll the files for this external id")


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100)
    role: Role
    expires_in: str | None = Field(default=None, description="when the key stops working: Nd, Nh or Nm from now "
                                                             "(90d, 12h, 30m) or an ISO date/time; absent: never")


class Health(BaseModel):
    status: str


class Ready(BaseModel):
    status: str
    checks: dict[str, str]
