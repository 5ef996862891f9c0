"""The JSON of every request and response, as pydantic models, so `/openapi.json` states the exact schemas.

A response is a service result as identity.serialize writes it (the CLI's `--json`): its model is
derived from the result's dataclass (identity.api.derive), with the closed sets as enums. The
models written here are the request bodies and the few answers the routes assemble themselves.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from identity.api.derive import derived
from identity.api.listing import page_model
from identity.services.access import keys
from identity.services.curation import edits
from identity.services.enrollment import report
from identity.services.queue import jobs, webhooks
from identity.services.records import audit
from identity.services.records.persons import PersonRecord
from identity.services.review import matches as reviews
from identity.services.search import identify
from identity.services.search import log as search_log

# Every closed set as an enum, so a generated client gets one type per set: the services' own enums,
# and the API's filters made of them (so the two cannot drift apart).
Role = keys.Role
JobStatus = jobs.JobStatus
JobOutcome = jobs.JobOutcome
JobState = StrEnum("JobState", {s: s for s in (*jobs.STATUSES, *jobs.OUTCOMES)})  # the jobs list's filter
Decision = search_log.Decision  # a face's outcome
DecisionFilter = StrEnum("DecisionFilter", {d: d for d in search_log.DECISION_FILTERS})  # the search log's filter
ReviewSummary = StrEnum("ReviewSummary", {s: s for s in ("unreviewed", *reviews.VERDICTS, "mixed")})
HitReview = StrEnum("HitReview", {s: s for s in (reviews.UNREVIEWED, *reviews.VERDICTS)})  # one searched face's review


Job = derived("Job", jobs.JobRecord)
LoggedSearch = derived("LoggedSearch", search_log.LoggedSearch, review=ReviewSummary | None)
ApiKey = derived("ApiKey", keys.KeyRecord)
CreatedApiKey = create_model(
    "CreatedApiKey", __base__=ApiKey, key=(str, Field(description="shown once; only a salted hash is stored"))
)


class ErrorBody(BaseModel):
    error: str
    detail: Any = None


PersonRef = derived(
    "PersonRef",
    PersonRecord,
    "A person named inside another answer (a search candidate, an audit, a look-alike): no face count.",
    faces=None,
)
# searchable faces under the model in use, on every answer (create, read, list, update)
Person = create_model("Person", __base__=PersonRef, faces=(int, ...))


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


MatchedFace = derived("MatchedFace", identify.MatchedFace)
Candidate = derived("Candidate", identify.Candidate, person=PersonRef, faces=list[MatchedFace])  # type: ignore[valid-type]
FaceMatch = derived("FaceMatch", identify.FaceMatch, quality=dict[str, Any], candidates=list[Candidate])  # type: ignore[valid-type]
SearchResult = derived("SearchResult", identify.SearchResult, faces=list[FaceMatch])  # type: ignore[valid-type]


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


MergeResult = derived(
    "MergeResult",
    edits.MergeResult,
    kept_id=(str, Field(description="the kept person's uuid, for the routes that take a person")),
)


class FaceMove(BaseModel):
    model_config = ConfigDict(extra="forbid")
    to: str = Field(description="external id or uuid of the person the face belongs to")


FaceMoveResult = derived("FaceMoveResult", edits.FaceMove)


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


Lookalike = derived("Lookalike", audit.Lookalike, person=PersonRef)
AuditSearch = derived("AuditSearch", audit.AuditSearch, review=HitReview)
Audit = derived(
    "Audit",
    audit.AuditReport,
    person=PersonRef,
    faces=list[dict[str, Any]],
    searches=list[AuditSearch],
    lookalikes=list[Lookalike],
)  # type: ignore[valid-type]


class EnrolledImage(BaseModel):
    image: str
    external_id: str
    outcome: str = Field(description="enrolled, rejected, failed, duplicate, conflict or skipped")
    reason: str | None
    faces_found: int | None


EnrollmentSummary = derived(
    "EnrollmentSummary",
    report.EnrollmentFigures,
    "What `identity enroll --json` prints, and each image's final state.",
    inconsistent_persons=list[dict[str, Any]],
    duplicates=(
        list[dict[str, str]],
        Field(
            default_factory=list,
            description="inputs with the bytes of an earlier one, enrolled once: path, duplicate_of",
        ),
    ),
    images=(list[EnrolledImage], ...),
)


class EnrollmentQueued(BaseModel):
    batch: str
    queued: int
    skipped: list[dict[str, Any]] = Field(description="inputs that did not become jobs, with the reason")


CALLBACK_URL = (
    "an http(s) URL the worker POSTs the batch's outcomes to once every job is done, signed with "
    "X-Identity-Signature (see docs/http-api.md, Webhooks)"
)


class EnrollmentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    paths: list[str] = Field(
        min_length=1,
        description="folders (one sub-folder per person) or files, under an import root (IDENTITY_API__IMPORT_ROOTS)",
    )
    person: str | None = Field(default=None, description="enroll the files for this external id")
    callback_url: str | None = Field(default=None, max_length=2000, description=CALLBACK_URL)


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100)
    role: Role
    expires_in: str | None = Field(
        default=None,
        description="when the key stops working: Nd, Nh or Nm from now "
        "(90d, 12h, 30m) or an ISO date/time; absent: never",
    )


class Health(BaseModel):
    status: str


class Ready(BaseModel):
    status: str
    checks: dict[str, str]


# The v1 list shape (identity.api.listing): {"items": [...], "next": CURSOR|null, "total": N}
PersonPage = page_model("PersonPage", Person)
LoggedSearchPage = page_model("LoggedSearchPage", LoggedSearch)
JobPage = page_model("JobPage", Job)
ApiKeyPage = page_model("ApiKeyPage", ApiKey)
WebhookState = StrEnum("WebhookState", {s: s for s in webhooks.STATES})  # the delivery log's filter
WebhookDelivery = derived("WebhookDelivery", webhooks.DeliveryRecord, status=WebhookState)
WebhookDeliveryPage = page_model("WebhookDeliveryPage", WebhookDelivery)
