"""Bulk enrollment: jobs in, one final state per image out, consistent under crashes.

Storage protocol per chunk of images (ARCHITECTURE.md, "Consistency"):
  1. one transaction writes image rows and `pending` face rows;
  2. the vectors are upserted, waiting until they are durable;
  3. one transaction marks the faces `indexed` and finishes the jobs;
  4. the templates of the chunk's persons are rewritten (identity.services.search.templates).
A crash between 1 and 3 leaves pending rows and leased jobs: a re-run adopts the
unfinished jobs, finds the pending faces of the same bytes and person, upserts their
vectors again under the same ids and completes them, so nothing is enrolled twice and
no vector lacks a row. A crash between 3 and 4 leaves stale or missing templates: a re-run
rewrites those of the persons whose photos it finds stored, and `identity doctor` finds
them and `--repair` rewrites them. `identity reindex` writes faces by the
same steps (face_row, index_pending) and builds the templates once at the end.

Errors are contained per job by the queue's loop (identity.services.queue.loop).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from identity.app.core import App
from identity.app.templates import refresh_templates
from identity.config import SUBJECT_RULES
from identity.errors import ConfigError, ImageError
from identity.evaluation.protocol import subject_face
from identity.faces import DetectedFace, ImageFaces
from identity.faces.types import cut_by_edge, same_face
from identity.pathnames import fs_path, path_text
from identity.services.queue.loop import (
    EnrollSummary,
    JobFailed,
    JobResult,
    Outcome,
    contained,
    failed_result,
    fault_reason,
    file_digest,
    is_undone,
    job_fault,
    process_queue,
    queue_jobs,
)
from identity.services.records.thumbnails import face_thumbnail_rows
from identity.store.sql import jobs
from identity.store.sql.db import Session, transaction
from identity.store.sql.errors import IntegrityError
from identity.store.sql.faces import (
    add_faces,
    delete_faces,
    faces_of_images,
    mark_faces_indexed,
)
from identity.store.sql.images import add_image, image_with_sha256, images_with_sha256
from identity.store.sql.persons import (
    get_or_create_person,
    person_by_external_id,
    person_with_id,
)
from identity.store.sql.tables import Face, FaceStatus, Image, Job
from identity.store.vectors import VectorIndex, VectorPoint, check_free_space

if TYPE_CHECKING:
    from identity.app.deployment import Deployment


def choose_faces(found: ImageFaces, subject: str, dominance: float) -> tuple[list[DetectedFace], str | None]:
    """The face(s) to enroll from a photo for its labelled person, or why none: no_face / multiple_faces.

    With several faces: `dominant` takes the largest if its area is `dominance` times the
    next one's, `central` the one eval takes as a labelled photo's subject, `all` every one
    (each still meets the quality gate), `reject` none.
    """
    if not found.faces:
        return [], "no_face"
    if len(found.faces) == 1 or subject == "all":
        return list(found.faces), None
    if subject == "central":
        return [subject_face(found)], None
    ranked = sorted(found.faces, key=lambda face: face.area, reverse=True)
    if subject == "reject":
        return [], "multiple_faces"
    # A face the frame cuts is a bystander's, not the subject's, unless the largest is cut too: with
    # YuNet, which finds such half faces where HOG does not, they made 30 of 400 lfw-dev photos
    # multiple_faces (HOG: 13); not counting them, 15.
    if not cut_by_edge(ranked[0].bbox, found.width, found.height):
        ranked = [ranked[0]] + [face for face in ranked[1:] if not cut_by_edge(face.bbox, found.width, found.height)]
    if len(ranked) > 1 and ranked[0].area < dominance * ranked[1].area:
        return [], "multiple_faces"
    return [ranked[0]], None


def _redetected(found: ImageFaces, rows: Sequence[Face]) -> list[tuple[Face, np.ndarray]] | None:
    """Each row a crashed run left pending, with the vector of the face found again at its box; None if one is gone."""
    boxes = [face.bbox for face in found.faces]
    matches = [same_face(boxes, row.bbox) for row in rows]
    if any(index is None for index in matches):
        return None
    return [(row, found.faces[index].embedding) for row, index in zip(rows, matches)]


def face_row(face: DetectedFace, person_id: uuid.UUID, image_id: uuid.UUID, model_row_id: int) -> Face:
    """Step 1's row for a detected face: `pending` until its vector is stored, or `rejected` by the quality gate."""
    return Face(
        person_id=person_id,
        image_id=image_id,
        model_id=model_row_id,
        bbox=[round(float(v), 2) for v in face.bbox],
        landmarks=[[round(float(x), 2), round(float(y), 2)] for x, y in face.landmarks],
        det_score=float(face.det_score),
        iod_px=face.quality.iod_px,
        blur=face.quality.blur,
        yaw_deg=face.quality.yaw_deg,
        roll_deg=face.quality.roll_deg,
        status=FaceStatus.pending if face.quality.ok else FaceStatus.rejected,
        rejection=",".join(face.quality.rejections) or None,
        detector=face.detector or None,
    )


def index_pending(
    app: App,
    index: VectorIndex,
    to_index: Sequence[tuple[Face, np.ndarray]],
    then: Callable[[Session], None] = lambda session: None,
) -> None:
    """Steps 2 and 3 for rows step 1 committed as pending: upsert their vectors (durable), then mark
    them indexed, with `then`'s bookkeeping in that same transaction."""
    if to_index:
        index.upsert([_point(face, vector) for face, vector in to_index])
    with transaction(app.sessions) as session:
        mark_faces_indexed(session, [face.id for face, _ in to_index])
        then(session)


@dataclass
class _Decided:
    """Step 1's verdict on one job, and the faces of it whose vectors steps 2 and 3 store."""

    result: JobResult
    faces: list[tuple[Face, np.ndarray]]


class EnrollmentWriter:
    """Writes the outcomes of processed jobs, a chunk at a time, by the protocol above.

    An error that is a job's own fault (see job_fault), at any step, fails that job only:
    its rows and vectors are undone and it is finished `failed` with the reason.
    The deployment's person templates are rewritten for the chunk's persons after each commit.
    """

    kind = jobs.ENROLL  # the jobs process_queue claims for this writer
    target_model: int | None = None  # claim jobs of any target (enrollment jobs have none)

    def __init__(self, dep: Deployment, subject: str | None = None) -> None:
        self.app = dep.app
        self.settings = dep.settings  # the pack process_queue runs over the jobs' images
        self.index = dep.index
        self.templates = dep.templates
        self.model_row_id = dep.model.id
        self.dominance = dep.app.settings.enroll.dominant_face_ratio
        self.subject = subject or dep.app.settings.enroll.subject
        # batch -> sha256 -> (first source path, its external id): copies within one batch (one enroll command)
        self.first_paths: dict[str | None, dict[str, tuple[str, str]]] = {}
        if self.subject not in SUBJECT_RULES:
            raise ConfigError(f"subject rule {self.subject!r}: expected one of {', '.join(SUBJECT_RULES)}")

    def write(self, items: Sequence[tuple[Job, Outcome]]) -> list[JobResult]:
        check_free_space(self.app.settings)  # NoSpace stops the run before the chunk writes anything, not SIGBUS
        try:
            return self._write(items, retrying=False)
        except IntegrityError:
            # Another worker stored the same new image or person first; the retry sees its rows
            # (so a second IntegrityError is the job's own).
            return self._write(items, retrying=True)

    def _write(self, items: Sequence[tuple[Job, Outcome]], retrying: bool) -> list[JobResult]:
        failures: dict[int, str] = {}
        decided = contained(failures, lambda: self._decide_chunk(items, failures, retrying))
        self._upsert(decided, failures)
        results = contained(failures, lambda: self._finish(decided, failures))
        undone = [face.id for d, result in zip(decided, results) if is_undone(result) for face, _ in d.faces]
        if undone:
            self.index.delete(undone)  # after their rows are gone: a crash in between leaves orphans doctor removes
        self._refresh_templates(
            [face.person_id for d, result in zip(decided, results) if not is_undone(result) for face, _ in d.faces]
        )
        return results

    def _refresh_templates(self, person_ids: Sequence[uuid.UUID]) -> None:
        """Step 4: one rewrite for the chunk's persons, after step 3's commit made their new faces indexed."""
        if person_ids:
            refresh_templates(self.app.sessions, self.index, self.templates, self.model_row_id, person_ids)

    def optimize(self) -> None:
        """Build the search graphs of what the run wrote: faces and templates."""
        self.index.optimize()
        self.templates.optimize()

    def _decide_chunk(
        self, items: Sequence[tuple[Job, Outcome]], failures: dict[int, str], retrying: bool
    ) -> list[_Decided]:
        """Step 1: image rows and `pending` face rows for the chunk, in one transaction."""
        decided: list[_Decided] = []
        to_index: list[tuple[Face, np.ndarray]] = []
        with transaction(self.app.sessions) as session:
            for job, outcome in items:
                if job.id in failures:
                    decided.append(_Decided(failed_result(job, failures[job.id], _found(outcome)), []))
                    continue
                mark = len(to_index)
                try:
                    result = self._decide(session, job, outcome, to_index)
                except Exception as exc:
                    if job_fault(exc) or (retrying and isinstance(exc, IntegrityError)):
                        raise JobFailed(job.id, fault_reason(exc)) from exc
                    raise
                decided.append(_Decided(result, to_index[mark:]))
        return decided

    def _upsert(self, decided: Sequence[_Decided], failures: dict[int, str]) -> None:
        """Step 2: the vectors, durable; when the index refuses the batch, job by job to find whose."""
        if not any(d.faces for d in decided):
            return
        try:
            self.index.upsert([_point(face, vector) for d in decided for face, vector in d.faces])
            return
        except Exception as exc:
            if not job_fault(exc):
                raise
        for d in decided:
            if d.faces:
                try:
                    self.index.upsert([_point(face, vector) for face, vector in d.faces])
                except Exception as exc:
                    if not job_fault(exc):
                        raise
                    failures[d.result.job_id] = f"the vector store refused it: {fault_reason(exc)}"

    def _finish(self, decided: list[_Decided], failures: dict[int, str]) -> list[JobResult]:
        """Step 3: mark the faces indexed and finish the jobs; a failed or cancelled job's face rows are removed."""
        results: list[JobResult] = []
        with transaction(self.app.sessions) as session:
            cancelled = jobs.cancelled_among(session, [d.result.job_id for d in decided])
            for d in decided:
                result, face_ids = d.result, [face.id for face, _ in d.faces]
                if result.job_id in cancelled:
                    result = replace(result, outcome="cancelled", reason="cancelled while running; result discarded")
                elif result.job_id in failures:
                    result = replace(result, outcome="failed", reason=failures[result.job_id])
                    jobs.finish(session, result.job_id, "failed", result.reason, result.image_id)
                else:
                    try:
                        mark_faces_indexed(session, face_ids)
                        jobs.finish(session, result.job_id, result.outcome, result.reason, result.image_id)
                    except Exception as exc:
                        if job_fault(exc):
                            raise JobFailed(result.job_id, f"could not record the result: {fault_reason(exc)}") from exc
                        raise
                if is_undone(result) and face_ids:
                    delete_faces(session, face_ids)
                results.append(result)
        return results

    def settle_known(self, chunk: Sequence[Job]) -> tuple[list[JobResult], list[Job]]:
        """Finish, without running any model, the jobs whose bytes were already processed.

        Returns (the results of those, the jobs still to process). This is what makes a
        re-run of a large enrollment take seconds instead of hours.
        """
        digests: dict[int, str] = {}
        failures: dict[int, str] = {}
        for job in chunk:
            try:
                digests[job.id] = file_digest(job.source_path)
            except (OSError, ValueError):
                pass  # the pipeline reports why the file cannot be read
            except Exception as exc:
                if not job_fault(exc):
                    raise
                failures[job.id] = fault_reason(exc)
        copies = self._copies(chunk, digests)
        held: list[uuid.UUID] = []
        results = contained(failures, lambda: self._settle(chunk, digests, failures, held, copies))
        # Step 4 again for the persons whose photos a run already stored: a run killed between
        # steps 3 and 4 left their templates stale, and this re-run is what repairs them.
        self._refresh_templates(sorted(set(held)))
        done = {r.job_id for r in results}
        return results, [job for job in chunk if job.id not in done]

    def _copies(self, chunk: Sequence[Job], digests: dict[int, str]) -> dict[int, JobResult]:
        """The chunk's jobs whose bytes an earlier job of this run holds (copies in an archive): each is
        settled as a duplicate of that first path (a conflict when another person claims it), unprocessed."""
        copies: dict[int, JobResult] = {}
        # Only the batches in hand are remembered, so a long-running worker's memory stays bounded; a copy
        # seen later is still settled by the database (duplicate or conflict), only without duplicate_of.
        self.first_paths = {batch: self.first_paths.get(batch, {}) for batch in {job.batch for job in chunk}}
        for job in chunk:
            digest = digests.get(job.id)
            if digest is None:
                continue
            first, owner = self.first_paths[job.batch].setdefault(digest, (job.source_path, job.external_id))
            if first == job.source_path:
                continue
            if owner == job.external_id:
                outcome, reason = "duplicate", f"same file as {first}"
            else:
                outcome, reason = "conflict", f"same file as {first}, which is {owner}'s"
            copies[job.id] = JobResult(job.id, job.source_path, job.external_id, outcome, reason, duplicate_of=first)
        return copies

    def _settle(
        self,
        chunk: Sequence[Job],
        digests: dict[int, str],
        failures: dict[int, str],
        held: list[uuid.UUID],
        copies: dict[int, JobResult],
    ) -> list[JobResult]:
        """The chunk's jobs whose bytes need no work; `held` gets the persons already holding them."""
        held.clear()  # contained() may run this again
        results: list[JobResult] = []
        with transaction(self.app.sessions) as session:
            images = images_with_sha256(session, digests.values())
            for job in chunk:
                if job.id in failures:
                    results.append(failed_result(job, failures[job.id]))
                    continue
                if job.id in copies:
                    results.append(copies[job.id])
                    continue
                image = images.get(digests.get(job.id, ""))
                if image is None:
                    continue
                try:
                    person = person_by_external_id(session, job.external_id)
                    settled = self._settled(session, image, person.id if person else None, job.external_id, set())
                except Exception as exc:
                    if job_fault(exc):
                        raise JobFailed(job.id, fault_reason(exc)) from exc
                    raise
                if settled is not None:
                    results.append(
                        JobResult(job.id, job.source_path, job.external_id, *settled, faces_found=0, image_id=image.id)
                    )
                    if settled[0] == "duplicate" and person is not None:
                        held.append(person.id)
            for result in results:
                jobs.finish(session, result.job_id, result.outcome, result.reason, result.image_id)
        return results

    def _held(self, session: Session, image: Image) -> list[Face]:
        return faces_of_images(session, self.model_row_id, [image.id])

    def _settled(
        self, session: Session, image: Image, person_id: uuid.UUID | None, external_id: str, this_chunk: set[uuid.UUID]
    ) -> tuple[str, str] | None:
        """(duplicate|conflict, reason) when these bytes need no further work for this person."""
        held = self._held(session, image)
        mine = [f for f in held if f.person_id == person_id]
        if mine:
            if any(f.status == FaceStatus.pending and f.id not in this_chunk for f in mine):
                return None  # a crashed run left it half-written: it must be completed
            state = "rejected" if all(f.status == FaceStatus.rejected for f in mine) else "enrolled"
            return "duplicate", f"same image already {state} for {external_id}"
        others = [f for f in held if f.status != FaceStatus.rejected]
        if others:
            owner = person_with_id(session, others[0].person_id)
            return "conflict", f"same image is enrolled for {owner.external_id if owner else 'another person'}"
        earlier = jobs.earlier_rejection(session, image.id, external_id)
        if earlier is not None:
            return "duplicate", f"same image already rejected for {external_id} ({earlier})"
        return None

    def _decide(
        self, session: Session, job: Job, outcome: Outcome, to_index: list[tuple[Face, np.ndarray]]
    ) -> JobResult:
        image: Image | None = None

        def result(state: str, reason: str | None = None) -> JobResult:
            return JobResult(
                job.id,
                job.source_path,
                job.external_id,
                state,
                reason,
                _found(outcome),
                image.id if image is not None else None,
            )

        if isinstance(outcome, ImageError):
            return result("failed", outcome.reason)
        # A new person is created only with a face: a photo that conflicts or shows none leaves no empty person.
        person = person_by_external_id(session, job.external_id)
        image = image_with_sha256(session, outcome.sha256)
        if image is not None:
            this_chunk = {f.id for f, _ in to_index}
            settled = self._settled(session, image, person.id if person else None, job.external_id, this_chunk)
            if settled is not None:
                return result(*settled)
            pending = [
                f
                for f in self._held(session, image)
                if person is not None
                and f.person_id == person.id
                and f.status == FaceStatus.pending
                and f.id not in this_chunk
            ]
            if pending:
                redone = _redetected(outcome, pending)
                if redone is None:
                    return result("failed", "image changed between runs")
                to_index.extend(redone)  # finish what a crashed run began
                return result("enrolled", "completed an interrupted enrollment")
        else:
            image = add_image(
                session, outcome.sha256, job.source_path, _size(job.source_path), outcome.width, outcome.height
            )
        faces, reason = choose_faces(outcome, self.subject, self.dominance)
        if not faces:
            return result("rejected", reason)
        if person is None:
            person, _ = get_or_create_person(session, job.external_id, job.display_name, job.attributes)
        rows = [face_row(face, person.id, image.id, self.model_row_id) for face in faces]
        add_faces(session, rows)
        session.add_all(face_thumbnail_rows((row, face.crop) for row, face in zip(rows, faces)))
        passed = [(row, face.embedding) for row, face in zip(rows, faces) if face.quality.ok]
        if not passed:
            return result("rejected", rows[0].rejection)
        to_index.extend(passed)
        return result("enrolled")


def enroll_analysed(writer: EnrollmentWriter, analysed: Sequence[tuple[jobs.JobSpec, Outcome]]) -> EnrollSummary:
    """Enroll images already analysed (e.g. from the evaluation cache) through the same queue, loop and writer."""
    batch, queued = queue_jobs(writer.app, [spec for spec, _ in analysed])
    outcomes = {spec.source_path: outcome for spec, outcome in analysed}
    summary = EnrollSummary(batch=batch, queued=queued)
    return process_queue(
        writer.app,
        writer,
        batch,
        1,
        summary=summary,
        analyse=lambda paths: ((path, outcomes[path_text(path)]) for path in paths),
    )


def _point(face: Face, vector: np.ndarray) -> VectorPoint:
    return VectorPoint(face.id, face.person_id, vector)


def _found(outcome: Outcome) -> int:
    return 0 if isinstance(outcome, ImageError) else len(outcome.faces)


def _size(path: str) -> int:
    try:
        return os.path.getsize(fs_path(path))
    except OSError:
        return 0
