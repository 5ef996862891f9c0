"""`identity doctor`: find and repair disagreements between SQL (the truth) and the vectors.

Checks: vectors without a face row, pending faces (a run stopped between its writes),
indexed faces whose vector is missing, abandoned job leases, jobs stuck in the queue
(queued or running for more than STUCK_LEASES leases while the queue does not move), a
model whose recorded dimension differs from what its pack produces, and person templates
that are missing, stale or orphaned (identity.services.search.templates). Repair releases
abandoned leases but never drops a stuck job: whether to retry or cancel it is the
operator's call (`identity jobs retry`, `identity jobs cancel`). It also lists persons whose
faces disagree with each other (services/consistency.py): a warning for a person to review,
not a disagreement between the stores, so it is neither a problem count nor repaired.
Repair rewrites the templates found wrong, and those of persons whose faces it repaired.
Erasures left pending (identity.services.curation.erasure) are reported, and finished first by repair.
Data-dir files and folders that other local users may read are reported, and narrowed by
repair to 0600/0700 (identity.services.private_files).

Every model holding faces is checked against its own collections (faces and templates):
the active one, and those a re-index left behind for rollback. Faces of such an older
model that lost their vector are dropped rather than re-embedded (this process runs the
active model only); `identity reindex --model OLD` rebuilds them if it is ever needed.

Repair never deletes more than max(1% of the vectors, 10) vectors unless forced: so many
orphans mean the database is not the one these vectors belong to (or lost rows), and
deleting them would lose what only the photos could bring back. A report is `clean` only
when nothing was found and nothing repaired.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field, fields
from datetime import timedelta

from identity.app.core import App
from identity.app.deployment import Deployment, ModelCollections, model_collections
from identity.app.templates import refresh_templates
from identity.errors import RepairRefused
from identity.serialize import json_field
from identity.services.curation.consistency import InconsistentPerson, inconsistent_persons
from identity.services.curation.erasure import count_pending, finish_pending
from identity.services.enrollment.writer import EnrollmentWriter
from identity.services.maintenance.integrity import IntegrityCheck, check_vectors
from identity.services.maintenance.upload_orphans import find_orphan_uploads, remove_orphan_uploads
from identity.services.private_files import FileModeCheck, check_private_files, repair_private_files
from identity.services.queue.loop import process_queue, queue_jobs
from identity.services.records.thumbnails import (
    backfill_face_thumbnails,
    expire_search_thumbnails,
    missing_face_thumbnails,
)
from identity.services.search.templates import TemplateCheck, check_templates, repair_templates
from identity.store.sql import jobs
from identity.store.sql.db import Session, transaction
from identity.store.sql.faces import delete_faces, enrollment_sources, face_states, mark_faces_indexed
from identity.store.sql.model_rows import list_models, other_models_with_faces
from identity.store.sql.tables import FaceStatus, naive_utc, utcnow
from identity.store.vectors import VectorIndex

STUCK_LEASES = 10  # a job queued or running this many lease periods, in a queue that does not move, is stuck
DELETE_LIMIT_SHARE = 0.01  # repair deletes at most this share of the vectors without --force...
DELETE_LIMIT_MIN = 10  # ...or this many, whichever is more


@dataclass
class DoctorReport:
    orphan_vectors: list[str] = field(default_factory=list)
    pending_with_vector: list[str] = field(default_factory=list)
    pending_without_vector: list[str] = field(default_factory=list)
    missing_vectors: list[str] = field(default_factory=list)
    stale_leases: list[int] = field(default_factory=list)
    stuck_jobs: dict[str, list[int]] = field(default_factory=dict)  # state (queued/running) -> job ids
    wrong_person: dict[str, str] = field(default_factory=dict)  # face id -> the person SQL says it is
    dimension_mismatch: str | None = None
    repaired: dict[str, int] = field(default_factory=dict)
    other_models: dict[str, DoctorReport] = field(default_factory=dict)  # inactive models with faces, by model id
    inconsistent_persons: list[InconsistentPerson] = field(default_factory=list)  # a warning, not a problem
    templates: TemplateCheck = field(default_factory=TemplateCheck)
    integrity: IntegrityCheck = field(default_factory=IntegrityCheck)  # damaged stored vectors (services/integrity.py)
    # persons of the pending and vector-less faces above: repairing those faces changes their templates
    face_problem_persons: set[uuid.UUID] = field(default_factory=set)
    pending_erasures: int = 0  # erasures recorded and not finished: repair finishes them
    orphan_uploads: list[str] = field(default_factory=list)  # files in uploads/ that are nobody's photo
    vectors: int = 0  # face and template vectors checked (this model's collections; others' in other_models)
    file_modes: FileModeCheck = field(default_factory=FileModeCheck)  # data-dir paths others may read
    # enrolled faces with no stored thumbnail (enrolled before they were kept): not a problem, repair cuts them
    faces_without_thumbnail: int = 0
    # points outside a search graph (the embedded store indexes them by optimize); repair indexes them when
    # a collection holds more than vectors.max_exact_scan of them, the most a search should scan one by one
    unindexed_points: int = 0
    index_due: bool = False

    @property
    def problems(self) -> int:
        return (
            len(self.orphan_vectors)
            + len(self.pending_with_vector)
            + len(self.pending_without_vector)
            + len(self.missing_vectors)
            + len(self.stale_leases)
            + len(self.wrong_person)
            + len({i for ids in self.stuck_jobs.values() for i in ids} - set(self.stale_leases))
            + bool(self.dimension_mismatch)
            + self.templates.problems
            + self.pending_erasures
            + self.integrity.problems
            + self.file_modes.problems
            + len(self.orphan_uploads)
            + sum(other.problems for other in self.other_models.values())
        )

    @property
    def clean(self) -> bool:
        """Nothing found and nothing repaired (a repaired store was not clean: the report says what was done)."""
        return self.problems == 0 and not any(self.repaired.values())

    @property
    def repairable(self) -> bool:
        """Whether --repair has work: a problem, or upkeep that is none (faces without a stored thumbnail,
        search graphs to build)."""
        return self.problems > 0 or self.faces_without_thumbnail > 0 or self.index_due

    @property
    def vectors_to_delete(self) -> int:
        """Vectors repair would delete: orphan face vectors and orphaned templates, of every model."""
        return (
            len(self.orphan_vectors)
            + len(self.templates.orphaned)
            + sum(other.vectors_to_delete for other in self.other_models.values())
        )

    @property
    def vectors_checked(self) -> int:
        return self.vectors + sum(other.vectors_checked for other in self.other_models.values())

    def __json__(self) -> DoctorFigures:
        """The report as `doctor --json` prints it: counts, not ids."""
        return DoctorFigures(
            self.clean,
            len(self.orphan_vectors),
            len(self.pending_with_vector),
            len(self.pending_without_vector),
            len(self.missing_vectors),
            len(self.stale_leases),
            sum(len(ids) for ids in self.stuck_jobs.values()),
            {state: len(ids) for state, ids in self.stuck_jobs.items()},
            len(self.wrong_person),
            self.dimension_mismatch,
            self.pending_erasures,
            len(self.orphan_uploads),
            self.templates.problems,
            TemplateCounts(len(self.templates.missing), len(self.templates.stale), len(self.templates.orphaned)),
            self.integrity,
            self.file_modes,
            self.faces_without_thumbnail,
            self.unindexed_points,
            self.repaired,
            self.other_models,
            self.inconsistent_persons,
        )


@dataclass(frozen=True)
class TemplateCounts:
    missing: int
    stale: int
    orphaned: int


@dataclass(frozen=True)
class DoctorFigures:
    clean: bool
    orphan_vectors: int
    pending_with_vector: int
    pending_without_vector: int
    missing_vectors: int
    stale_leases: int
    stuck_jobs: int
    stuck_jobs_by_state: dict[str, int]
    wrong_person: int
    dimension_mismatch: str | None
    pending_erasures: int
    orphan_uploads: int
    templates: int
    templates_by_kind: TemplateCounts
    integrity: IntegrityCheck
    file_modes: FileModeCheck
    faces_without_thumbnail: int
    unindexed_points: int
    repaired: dict[str, int]
    other_models: dict[str, DoctorReport] = field(metadata=json_field(omit_if_falsy=True))  # by model id
    inconsistent_persons: list[InconsistentPerson]


def diagnose(app: App, deep: bool = False) -> DoctorReport:
    """deep: read back every stored face vector, not a sample (services/integrity.py)."""
    dep = app.deployment()
    report = _check(dep, dep.model.id, dep.collections, deep)
    if dep.model.dim != dep.pipeline.dim:
        recorded, produced = dep.model.dim, dep.pipeline.dim
        report.dimension_mismatch = (
            f"model {dep.model.model_id} is recorded with {recorded} dimensions, its pack produces {produced}"
        )
    with app.sessions() as session:
        report.stale_leases = [j.id for j in jobs.stale_leases(session)]
        for job in jobs.stuck(session, dep.settings.enroll.lease_seconds, STUCK_LEASES):
            report.stuck_jobs.setdefault(job.status.value, []).append(job.id)
        others = other_models_with_faces(session, dep.model.id)
    with model_collections(dep, [m.id for m in others]) as stores:
        for model in others:
            report.other_models[model.model_id] = _check(dep, model.id, stores[model.id], deep)
    report.inconsistent_persons = inconsistent_persons(app)
    report.pending_erasures = count_pending(app)
    report.file_modes = check_private_files(dep.settings)
    report.orphan_uploads = find_orphan_uploads(app)
    report.faces_without_thumbnail = missing_face_thumbnails(app)
    unindexed = (dep.index.unindexed(), dep.templates.unindexed())
    report.unindexed_points = sum(unindexed)
    report.index_due = max(unindexed) > dep.settings.vectors.max_exact_scan
    return report


def _check(dep: Deployment, model_row_id: int, store: ModelCollections, deep: bool = False) -> DoctorReport:
    """One model's face rows against its collection, and its templates against their faces."""
    report = DoctorReport()
    vectors = dict(store.faces.iter_ids())
    # A pending row younger than a lease may belong to a live worker (server mode); the
    # embedded store is locked by this process, so there no writer can be mid-chunk.
    recent = utcnow() - timedelta(seconds=dep.settings.enroll.lease_seconds)
    with dep.app.sessions() as session:
        rows = face_states(session, model_row_id)
    live = set()
    for face_id, person_id, status, updated in rows:
        if status == FaceStatus.rejected:
            continue
        live.add(face_id)
        if face_id in vectors and vectors[face_id] != person_id:  # a merge or move stopped half-way
            report.wrong_person[str(face_id)] = str(person_id)
        if status == FaceStatus.indexed and face_id not in vectors:
            report.missing_vectors.append(str(face_id))
            report.face_problem_persons.add(person_id)
        elif status == FaceStatus.pending and (dep.settings.embedded or naive_utc(updated) < naive_utc(recent)):
            (report.pending_with_vector if face_id in vectors else report.pending_without_vector).append(str(face_id))
            report.face_problem_persons.add(person_id)
    report.orphan_vectors = sorted(str(v) for v in vectors.keys() - live)
    report.vectors = len(vectors) + store.templates.count()
    damaged: set[uuid.UUID] = set()
    found = check_templates(dep.app.sessions, store.faces, store.templates, model_row_id, damaged)
    report.integrity = check_vectors(store.faces, vectors.keys() - damaged, deep)
    report.integrity.add(damaged)
    bad = set(report.integrity.damaged)
    report.face_problem_persons |= {person for face, person, *_ in rows if str(face) in bad}
    report.templates = _apart_from(found, report.face_problem_persons)
    return report


def _apart_from(check: TemplateCheck, persons: set[uuid.UUID]) -> TemplateCheck:
    """The check without these persons: repairing their faces rewrites their templates (not a second problem)."""
    kept = ([p for p in found if p not in persons] for found in (check.missing, check.stale, check.orphaned))
    return TemplateCheck(*kept)


def repair(app: App, report: DoctorReport, workers: int = 1, force: bool = False) -> DoctorReport:
    """Fix what diagnose found; faces that lost their vector are enrolled again from their source image.

    Pending erasures are finished first: they are recorded intents, and the vectors they delete
    are then no orphans to count. Raises RepairRefused, before changing anything else, when it
    would delete more vectors than the limit (see the module doc) and `force` is not given.
    """
    dep = app.deployment(write=True)
    if report.pending_erasures:
        report.repaired.update(finish_pending(app))
        _diagnose_again(dep, report)
    check_delete_limit(report, force)
    with transaction(app.sessions) as session:
        _repair_vectors(session, dep.index, report)
        if report.stale_leases:
            jobs.release_stale_leases(session, report.stale_leases)
            report.repaired["leases_released"] = len(report.stale_leases)
        damaged = [uuid.UUID(v) for v in report.integrity.damaged]
        dep.index.delete(damaged)  # their bytes are no face: the photo gives the vector again
        redo = [uuid.UUID(v) for v in report.missing_vectors + report.pending_without_vector] + damaged
        specs = []
        if redo:
            specs = [jobs.JobSpec(path, external_id) for path, external_id in enrollment_sources(session, redo)]
            delete_faces(session, redo)
    if specs:
        batch, _ = queue_jobs(app, specs)
        writer = EnrollmentWriter(dep)
        summary = process_queue(app, writer, batch, workers)
        report.repaired["faces_reenrolled"] = summary.counts.get("enrolled", 0)
        if summary.counts.get("failed"):  # e.g. a photo that is gone: its face cannot come back
            report.repaired["faces_not_reenrolled"] = summary.counts["failed"]
    _repair_templates(dep, dep.model.id, dep.collections, report)
    _repair_others(dep, report)
    if report.file_modes.problems:
        report.repaired["file_modes_narrowed"] = repair_private_files(report.file_modes)
    report.repaired.update(remove_orphan_uploads(app, report.orphan_uploads))
    if report.faces_without_thumbnail:
        report.repaired["face_thumbnails"] = backfill_face_thumbnails(app)
    if expired := expire_search_thumbnails(app):  # a store searched no more still lets them go
        report.repaired["search_thumbnails_expired"] = expired
    if report.index_due:
        dep.index.optimize()
        dep.templates.optimize()
        report.repaired["points_indexed"] = report.unindexed_points - dep.index.unindexed() - dep.templates.unindexed()
    return report


def _diagnose_again(dep: Deployment, report: DoctorReport) -> None:
    """Refresh `report`'s findings in place, keeping what was repaired so far."""
    fresh = diagnose(dep.app, report.integrity.deep)  # as deep as the first look
    for name in (f.name for f in fields(DoctorReport) if f.name != "repaired"):
        setattr(report, name, getattr(fresh, name))


def check_delete_limit(report: DoctorReport, force: bool = False) -> None:
    """Refuse a repair that would delete more than max(1% of the vectors, 10) of them, unless forced."""
    count, total = report.vectors_to_delete, report.vectors_checked
    limit = max(math.floor(total * DELETE_LIMIT_SHARE), DELETE_LIMIT_MIN)
    if count > limit and not force:
        raise RepairRefused(
            f"doctor --repair would delete {count} of {total} vectors (orphans without a row in the database), more "
            f"than its limit of {limit}: check that IDENTITY_DATABASE_URL is this store's database; to delete them "
            "anyway, run `identity doctor --repair --force`. Nothing was changed",
            vectors_to_delete=count,
            vectors=total,
            limit=limit,
        )


def _repair_others(dep: Deployment, report: DoctorReport) -> None:
    with dep.app.sessions() as session:
        by_id = {model.model_id: model.id for model in list_models(session)}
    with model_collections(dep, [by_id[m] for m in report.other_models]) as stores:
        for model_id, other in report.other_models.items():
            store = stores[by_id[model_id]]
            with transaction(dep.app.sessions) as session:
                _repair_vectors(session, store.faces, other)
                damaged = [uuid.UUID(v) for v in other.integrity.damaged]
                store.faces.delete(damaged)
                lost = [uuid.UUID(v) for v in other.missing_vectors + other.pending_without_vector] + damaged
                if lost:
                    delete_faces(session, lost)
                    other.repaired["faces_dropped"] = len(lost)
            _repair_templates(dep, by_id[model_id], store, other)
            for key, count in other.repaired.items():
                report.repaired[key] = report.repaired.get(key, 0) + count


def _repair_templates(dep: Deployment, model_row_id: int, store: ModelCollections, report: DoctorReport) -> None:
    """After the faces' repair is committed: rewrite the templates found wrong, and those of persons whose
    faces were just marked indexed, re-enrolled or dropped."""
    sessions = dep.app.sessions
    if report.templates.problems:
        report.repaired["templates_rewritten"] = repair_templates(
            sessions, store.faces, store.templates, model_row_id, report.templates
        )
    refresh_templates(sessions, store.faces, store.templates, model_row_id, report.face_problem_persons)
    if report.templates.orphaned:  # an orphan may be an erased person's template (a crash mid-erasure): purge it
        store.templates.purge()


def _repair_vectors(session: Session, index: VectorIndex, report: DoctorReport) -> None:
    """Delete orphan vectors, re-label half-moved ones, and finish pending rows whose vector is there."""
    if report.orphan_vectors:
        # An orphan may be an erased person's vector (a crash between SQL and the store): purge it.
        index.delete([uuid.UUID(v) for v in report.orphan_vectors])
        index.purge()
        report.repaired["orphan_vectors_deleted"] = len(report.orphan_vectors)
    by_person: dict[str, list[uuid.UUID]] = {}
    for face_id, person_id in report.wrong_person.items():
        by_person.setdefault(person_id, []).append(uuid.UUID(face_id))
    for person_id, face_ids in by_person.items():
        index.set_person(face_ids, uuid.UUID(person_id))
    if report.wrong_person:
        report.repaired["faces_relabelled"] = len(report.wrong_person)
    if report.pending_with_vector:
        ids = [uuid.UUID(v) for v in report.pending_with_vector]
        mark_faces_indexed(session, ids)
        report.repaired["pending_marked_indexed"] = len(ids)
