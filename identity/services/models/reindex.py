"""`identity reindex --model NEW`: re-embed every indexed face with another pack, then switch to it.

The work is queued as jobs in enrollment's queue (kind "reindex", one per photo and person,
model_id the target) and run by enrollment's claim -> process -> write loop
(identity.services.queue.loop.process_queue) with a ReindexWriter: the same leases, `identity
jobs list/retry`, and `identity worker` takes them too. For each job the photo is read
again (its bytes must still have the enrolled sha256), the target pack's face overlapping
each stored box best (IoU >= 0.5) is embedded, and a row for the new model (same person
and image) is written with its vector in the new model's collection, by enrollment's
three-step protocol (face_row, index_pending); the job finishes in the transaction that
marks the faces indexed. A re-run adopts the unfinished jobs of a stopped one. Search keeps using the
old model meanwhile. Then the new collection's person templates are brought in step
with all its faces (so a resumed run ends with complete templates too), and if every
face was done (or `force`), one transaction makes the new model the active one and
records an audit event: the switch moves faces and templates together.

The old model's rows and collection stay: re-indexing back to it is quick, since its
faces are still there, and a re-run skips what the new model already holds for a
photo and person and completes rows a stopped run left pending, so nothing is
written twice. Faces enrolled into the old model while a run goes are picked up by
its next pass; the run ends when a pass finds nothing new.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from identity.app.actor import resolve_actor
from identity.app.binding import bind_vector_store
from identity.app.core import App, ModelCollections
from identity.app.registry import read_active, record_target, switch_to
from identity.app.templates import refresh_templates
from identity.config import Settings
from identity.errors import IdentityError, ImageError, StoreLocked
from identity.faces import DetectedFace, ImageFaces, resolve
from identity.faces.types import same_face
from identity.pathnames import fs_path
from identity.serialize import json_field
from identity.services.enrollment.writer import face_row, index_pending
from identity.services.queue.loop import (
    EnrollSummary,
    JobFailed,
    JobResult,
    contained,
    fault_reason,
    job_fault,
    process_queue,
    queue_jobs,
    seconds_until_others_done,
)
from identity.services.records.thumbnails import face_thumbnail_rows
from identity.services.search.templates import check_templates, repair_templates
from identity.store.sql import jobs
from identity.store.sql.audit_events import record_audit_event
from identity.store.sql.db import Session, transaction
from identity.store.sql.faces import (
    add_faces,
    faces_of_images,
    indexed_faces_by_model,
    indexed_faces_with_photos,
    settled_photo_persons,
)
from identity.store.sql.jobs import JobSpec
from identity.store.sql.model_rows import find_model, get_model, list_models
from identity.store.sql.persons import persons_by_id
from identity.store.sql.tables import Face, FaceStatus, Job, JobStatus
from identity.store.vectors import VectorIndex


@dataclass(frozen=True)
class FaceOutcome:
    face_id: str  # the old model's face
    path: str
    # reindexed / rejected (by the new pack's quality gate) / failed; not written: only failures are listed
    outcome: str = field(metadata=json_field(skip=True))
    reason: str | None = None


@dataclass
class ReindexSummary:
    model_before: str | None
    model_after: str
    faces: int = 0  # indexed faces of the old model
    reindexed: int = 0
    rejected: int = 0
    skipped_already_done: int = 0
    failed: list[FaceOutcome] = field(default_factory=list)
    switched: bool = False
    seconds: float = field(default=0.0, metadata=json_field(encode=lambda s: round(s, 2)))
    indexed: dict[str, int] = field(default_factory=dict)  # indexed faces per model at the end
    message: str | None = None
    warnings: list[str] = field(default_factory=list)

    def add(self, outcome: FaceOutcome) -> None:
        if outcome.outcome == "failed":
            self.failed.append(outcome)
        elif outcome.outcome == "rejected":
            self.rejected += 1
        else:
            self.reindexed += 1


@dataclass(frozen=True)
class _OldFace:
    id: uuid.UUID
    bbox: list[float]


@dataclass
class _Photo:
    """One reindex job: a photo and the old model's faces of one person in it."""

    image_id: uuid.UUID
    person_id: uuid.UUID
    path: str
    sha256: str
    faces: list[_OldFace]

    def attributes(self) -> dict[str, Any]:
        return {
            "person_id": str(self.person_id),
            "sha256": self.sha256,
            "faces": [{"id": str(f.id), "bbox": list(f.bbox)} for f in self.faces],
        }

    @classmethod
    def of(cls, job: Job) -> _Photo:
        a = job.attributes
        return cls(
            job.image_id,
            uuid.UUID(a["person_id"]),
            job.source_path,
            a["sha256"],
            [_OldFace(uuid.UUID(f["id"]), f["bbox"]) for f in a["faces"]],
        )


def reindex(
    app: App,
    target: str,
    workers: int = 0,
    force: bool = False,
    actor: str | None = None,
    on_plan: Callable[[int], None] = lambda total: None,
    on_face: Callable[[FaceOutcome], None] = lambda outcome: None,
) -> ReindexSummary:
    """Re-embed the active model's faces with `target` (a pack reference) and switch when all are done.

    `on_plan` gets the number of faces to process so far (it grows if enrollment adds
    faces meanwhile); `on_face` gets each face's outcome once it is stored.
    """
    started = time.perf_counter()
    settings = app.settings
    spec = resolve(target, settings.data_dir)
    if spec.info.promoted is False and not force:
        raise IdentityError(
            f"model pack {spec.info.model_id} is not promoted (its training run did not clear it); "
            "pass --force to re-index with it anyway"
        )
    pipeline = app.pipeline(target)
    bind_vector_store(app)
    summary = ReindexSummary(read_active(app), pipeline.model_id)
    if settings.model and app.pipeline(settings.model).model_id != pipeline.model_id:
        summary.warnings.append(
            f"the model setting (IDENTITY_MODEL or the config file) pins {settings.model}: "
            "commands keep using it until it is unset"
        )
    if summary.model_before == summary.model_after:
        summary.message = f"{summary.model_after} is already the active model; nothing to do"
        return summary
    with transaction(app.sessions) as session:
        target_row = record_target(session, pipeline.model_id, pipeline.dim).id
        source = find_model(session, summary.model_before) if summary.model_before else None
    with app.borrow(pipeline.model_id, pipeline.dim) as store:
        if source is not None:
            _reindex_faces(
                app,
                store.faces,
                settings.replace(model=target),
                source.id,
                target_row,
                workers,
                summary,
                on_plan,
                on_face,
            )
        store.faces.optimize()  # the embedded engine builds its search graph only when asked
        _build_templates(app, store, target_row)
    if force or not summary.failed:
        _switch(app, target_row, summary, actor)
    with app.sessions() as session:
        names = {m.id: m.model_id for m in list_models(session)}
        summary.indexed = {
            names[k]: n
            for k, n in indexed_faces_by_model(session).items()
            if names[k] in (summary.model_before, summary.model_after)
        }
    summary.seconds = time.perf_counter() - started
    return summary


def _build_templates(app: App, store: ModelCollections, model_row_id: int) -> None:
    """Every template of the target collection from its faces, before the switch makes it searched.

    Checked and repaired rather than written whole: a re-run or a rollback finds most already current.
    """
    check = check_templates(app.sessions, store.faces, store.templates, model_row_id)
    repair_templates(app.sessions, store.faces, store.templates, model_row_id, check)
    store.templates.optimize()


def _reindex_faces(
    app: App,
    index: VectorIndex,
    settings: Settings,
    source: int,
    target: int,
    workers: int,
    summary: ReindexSummary,
    on_plan: Callable[[int], None],
    on_face: Callable[[FaceOutcome], None],
) -> None:
    """Plan, queue the plan as reindex jobs (adopting those a stopped run left), run them through the queue loop."""

    def report(outcome: FaceOutcome) -> None:
        summary.add(outcome)
        on_face(outcome)

    writer = ReindexWriter(app, index, target, settings, report)
    attempted: set[tuple[uuid.UUID, uuid.UUID]] = set()  # (image, person): each is tried once per run
    total = 0
    while True:
        photos, done = _plan(app, source, target, attempted)
        if not attempted:  # the first pass: what earlier runs (or a rollback's old rows) already hold
            summary.skipped_already_done = summary.faces = done
        if not photos:
            on_plan(total)
            return
        count = sum(len(p.faces) for p in photos)
        summary.faces += count
        total += count
        on_plan(total)
        attempted |= {(p.image_id, p.person_id) for p in photos}
        batch, _ = queue_jobs(app, _job_specs(app, photos, target))
        _run_batch(app, writer, batch, workers or settings.worker_count, report)


def _run_batch(
    app: App, writer: ReindexWriter, batch: str, workers: int, report: Callable[[FaceOutcome], None]
) -> None:
    """Run the batch until each of its jobs is finished, by this run or by `identity worker`s sharing the
    queue: their jobs' outcomes are reported too, so the switch never comes before their faces."""
    while True:
        process_queue(app, writer, batch, workers)
        due = seconds_until_others_done(app, batch)
        if due is None:
            break
        time.sleep(min(1.0, max(0.05, due)))
    with app.sessions() as session:
        others = [job for job in jobs.batch_jobs(session, batch) if job.id not in writer.finished]
    for job in others:
        if job.status == JobStatus.cancelled:
            outcome, reason = "failed", job.reason or "cancelled"
        elif job.outcome in ("reindexed", "rejected", "failed"):
            outcome, reason = job.outcome, None if job.outcome == "reindexed" else job.reason
        else:
            continue  # the target already held it
        for face in _Photo.of(job).faces:
            report(FaceOutcome(str(face.id), job.source_path, outcome, reason))


def _plan(app: App, source: int, target: int, attempted: set[tuple[uuid.UUID, uuid.UUID]]) -> tuple[list[_Photo], int]:
    """The (photo, person) pairs whose faces the target model still lacks, and how many faces it already holds."""
    with app.sessions() as session:
        rows = indexed_faces_with_photos(session, source)
        finished = settled_photo_persons(session, target)
    photos: dict[tuple[uuid.UUID, uuid.UUID], _Photo] = {}
    done = 0
    for face_id, person_id, bbox, image_id, path, sha256 in rows:
        key = (image_id, person_id)
        if key in finished:
            done += 1
        elif key not in attempted:
            photos.setdefault(key, _Photo(image_id, person_id, path, sha256, [])).faces.append(_OldFace(face_id, bbox))
    return list(photos.values()), done


def _job_specs(app: App, photos: Sequence[_Photo], target: int) -> list[JobSpec]:
    """One reindex job per photo and person, named by the person's external id as enrollment's are
    (so `jobs list` reads alike and erasing the person deletes them too)."""
    with app.sessions() as session:
        persons = persons_by_id(session, {p.person_id for p in photos})
    return [
        JobSpec(
            p.path,
            persons[p.person_id].external_id if p.person_id in persons else str(p.person_id),
            attributes=p.attributes(),
            kind=jobs.REINDEX,
            model_id=target,
            image_id=p.image_id,
        )
        for p in photos
    ]


class ReindexWriter:
    """Writes processed reindex jobs a chunk at a time, for process_queue (EnrollmentWriter's contract).

    One job is one photo and person of the old model; its faces are matched by box among the
    target pack's detections and written by enrollment's three-step protocol. The jobs finish
    (reindexed / rejected / failed, with the reason) in the transaction that marks the faces
    indexed, so a stopped run leaves either both or neither. `report` gets each old face's outcome.
    `templates`: the target's person templates, refreshed for each chunk's persons when given
    (`identity worker`); `identity reindex` builds them all once at the end instead.
    """

    kind = jobs.REINDEX

    def __init__(
        self,
        app: App,
        index: VectorIndex,
        target_model: int,
        settings: Settings,
        report: Callable[[FaceOutcome], None] = lambda outcome: None,
        templates: VectorIndex | None = None,
    ) -> None:
        self.app = app
        self.index = index
        self.templates = templates
        self.target_model = target_model
        self.settings = settings  # pinned to the target pack
        self.report = report
        self.finished: set[int] = set()  # the jobs this writer finished

    def settle_known(self, chunk: Sequence[Job]) -> tuple[list[JobResult], list[Job]]:
        """Finish without running the pack the jobs the target already holds (another run did them) and
        those whose photo is missing."""
        results: list[JobResult] = []
        outcomes: list[FaceOutcome] = []
        with transaction(self.app.sessions) as session:
            held = {
                (f.image_id, f.person_id): f
                for f in faces_of_images(session, self.target_model, [job.image_id for job in chunk if job.image_id])
            }
            for job in chunk:
                photo = _Photo.of(job)
                existing = held.get((photo.image_id, photo.person_id))
                if photo.image_id is None:  # its image row was erased since it was queued
                    results.append(_job_result(job, "failed", f"{photo.path} is no longer enrolled"))
                elif existing is not None and existing.status != FaceStatus.pending:
                    results.append(_job_result(job, "duplicate", "the target model already holds it"))
                elif not os.path.isfile(fs_path(photo.path)):  # stored as path_text (identity.pathnames)
                    reason = f"{photo.path} is missing"
                    outcomes += [FaceOutcome(str(face.id), photo.path, "failed", reason) for face in photo.faces]
                    results.append(_job_result(job, "failed", reason))
                else:
                    continue
                jobs.finish(session, job.id, results[-1].outcome, results[-1].reason, job.image_id)
        for outcome in outcomes:
            self.report(outcome)
        done = {r.job_id for r in results}
        self.finished |= done
        return results, [job for job in chunk if job.id not in done]

    def write(self, items: Sequence[tuple[Job, ImageFaces | ImageError]]) -> list[JobResult]:
        failures: dict[int, str] = {}  # a job whose rows the database refuses fails alone, as in enrollment
        results, outcomes, to_index = contained(failures, lambda: self._decide_chunk(items, failures))

        def finish(session: Session) -> None:
            for result in results:
                jobs.finish(session, result.job_id, result.outcome, result.reason, result.image_id)

        index_pending(self.app, self.index, to_index, then=finish)
        self.finished |= {r.job_id for r in results if r.job_id is not None}
        if self.templates is not None and to_index:
            refresh_templates(
                self.app.sessions,
                self.index,
                self.templates,
                self.target_model,
                sorted({face.person_id for face, _ in to_index}),
            )
        for outcome in outcomes:
            self.report(outcome)
        return results

    def _decide_chunk(
        self, items: Sequence[tuple[Job, ImageFaces | ImageError]], failures: dict[int, str]
    ) -> tuple[list[JobResult], list[FaceOutcome], list[tuple[Face, np.ndarray]]]:
        """Step 1 for the chunk, in one transaction: the target's pending face rows and each job's outcome."""
        results: list[JobResult] = []
        outcomes: list[FaceOutcome] = []
        to_index: list[tuple[Face, np.ndarray]] = []
        with transaction(self.app.sessions) as session:
            # Read again inside the write: another run may have stored some of these faces since the plan.
            held = {
                (f.image_id, f.person_id): f
                for f in faces_of_images(session, self.target_model, [job.image_id for job, _ in items if job.image_id])
            }
            for job, found in items:
                photo = _Photo.of(job)
                if job.id in failures:
                    mine = [FaceOutcome(str(face.id), photo.path, "failed", failures[job.id]) for face in photo.faces]
                else:
                    try:
                        mine = _decide(
                            session,
                            photo,
                            found,
                            held.get((photo.image_id, photo.person_id)),
                            self.target_model,
                            to_index,
                        )
                    except Exception as exc:
                        if job_fault(exc):
                            raise JobFailed(job.id, fault_reason(exc)) from exc
                        raise
                outcomes += mine
                results.append(_job_outcome(job, mine))
        return results, outcomes, to_index

    def optimize(self) -> None:
        self.index.optimize()
        if self.templates is not None:
            self.templates.optimize()


def _decide(
    session: Session,
    photo: _Photo,
    found: ImageFaces | ImageError,
    existing: Face | None,
    target: int,
    to_index: list[tuple[Face, np.ndarray]],
) -> list[FaceOutcome]:
    """Step 1 for one photo and person: the target's face rows (pending) and each old face's outcome."""
    if existing is not None and existing.status != FaceStatus.pending:
        return []
    outcomes: list[FaceOutcome] = []
    problem = _problem(photo, found)
    for old in photo.faces:
        face = _best_match(found.faces, old.bbox) if isinstance(found, ImageFaces) and not problem else None
        if face is None:
            outcomes.append(
                FaceOutcome(str(old.id), photo.path, "failed", problem or f"face no longer found in {photo.path}")
            )
            continue
        row = existing  # a stopped run's pending row is completed under its own id
        if row is None:
            row = face_row(face, photo.person_id, photo.image_id, target)
            add_faces(session, [row])
            session.add_all(face_thumbnail_rows([(row, face.crop)]))
        if row.status == FaceStatus.rejected:
            outcomes.append(FaceOutcome(str(old.id), photo.path, "rejected", row.rejection))
            continue
        to_index.append((row, face.embedding))
        outcomes.append(FaceOutcome(str(old.id), photo.path, "reindexed"))
    return outcomes


def _job_outcome(job: Job, outcomes: Sequence[FaceOutcome]) -> JobResult:
    """A job's outcome from its faces': failed if one failed, reindexed if one was, else rejected."""
    if not outcomes:
        return _job_result(job, "duplicate", "the target model already holds it")
    for state in ("failed", "reindexed", "rejected"):
        these = [o for o in outcomes if o.outcome == state]
        if these:
            return _job_result(job, state, these[0].reason, faces_found=len(outcomes))
    raise AssertionError(outcomes)


def _job_result(job: Job, outcome: str, reason: str | None, faces_found: int = 0) -> JobResult:
    return JobResult(job.id, job.source_path, job.external_id, outcome, reason, faces_found, job.image_id)


def _problem(photo: _Photo, found: ImageFaces | ImageError) -> str | None:
    if isinstance(found, ImageError):
        return f"{photo.path}: {found.reason}"
    if found.sha256 != photo.sha256:
        return f"{photo.path} changed since enrollment"
    return None


def _best_match(faces: Sequence[DetectedFace], bbox: Sequence[float]) -> DetectedFace | None:
    index = same_face([face.bbox for face in faces], bbox)
    return None if index is None else faces[index]


def _switch(app: App, target: int, summary: ReindexSummary, actor: str | None) -> None:
    """The atomic switch: the active pointer and its audit event in one transaction."""
    with transaction(app.sessions) as session:
        model = get_model(session, target)
        previous = switch_to(session, model)
        record_audit_event(
            session,
            resolve_actor(actor),
            "switch_model",
            subject=model.model_id,
            details={
                "from": previous.model_id if previous else None,
                "to": model.model_id,
                "faces": summary.faces,
                "reindexed": summary.reindexed,
                "rejected": summary.rejected,
                "skipped_already_done": summary.skipped_already_done,
                "failed": len(summary.failed),
                "forced": bool(summary.failed),
            },
        )
    summary.switched = True


def process_reindex_jobs(
    app: App, workers: int, on_result: Callable[[JobResult], None], summary: EnrollSummary
) -> None:
    """Run the queued reindex jobs of every target model (`identity worker`), each with its target's pack.

    A target's collections are those the App holds, else borrowed for the run. Templates are kept
    in step chunk by chunk; the switch stays `identity reindex`'s, which a re-run then does at once.
    """
    with app.sessions() as session:
        targets = [get_model(session, row_id) for row_id in jobs.reindex_targets(session)]
    for model in targets:
        with ExitStack() as stack:
            try:
                store = stack.enter_context(app.borrow(model.model_id, model.dim))
            except StoreLocked:
                continue  # the embedded engine: a running `identity reindex` holds the target and runs its jobs
            writer = ReindexWriter(
                app, store.faces, model.id, app.settings.replace(model=model.model_id), templates=store.templates
            )
            process_queue(app, writer, None, workers, on_result, summary)
