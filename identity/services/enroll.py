"""Bulk enrollment: jobs in, one final state per image out, consistent under crashes.

Storage protocol per chunk of images (ARCHITECTURE.md, "Consistency"):
  1. one transaction writes image rows and `pending` face rows;
  2. the vectors are upserted, waiting until they are durable;
  3. one transaction marks the faces `indexed` and finishes the jobs.
A crash between 1 and 3 leaves pending rows and leased jobs: a re-run adopts the
unfinished jobs, finds the pending faces of the same bytes and person, upserts their
vectors again under the same ids and completes them, so nothing is enrolled twice and
no vector lacks a row. `identity reindex` writes by the same steps (face_row, index_pending).
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from identity.errors import ConfigError, ImageError
from identity.evaluation.protocol import subject_face
from identity.faces import DetectedFace, ImageFaces, process_paths_parallel
from identity.faces.types import same_face
from identity.services.enroll_inputs import InputRow
from identity.services.runtime import Runtime
from identity.store.sql import jobs
from identity.store.sql.db import transaction
from identity.store.sql.models import Face, FaceStatus, Image, Job, Person, utcnow
from identity.store.sql.persons import get_or_create_person
from identity.store.vectors import VectorIndex, VectorPoint

Outcome = ImageFaces | ImageError
SUBJECT_RULES = ("dominant", "central", "all", "reject")


@dataclass(frozen=True)
class JobResult:
    job_id: int | None  # None: an input that never became a job (enroll_inputs.InputRow)
    source_path: str
    external_id: str
    outcome: str  # enrolled / rejected / failed / duplicate / conflict; skipped for inputs never queued
    reason: str | None = None
    faces_found: int = 0
    image_id: uuid.UUID | None = None


@dataclass
class EnrollSummary:
    batch: str
    queued: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    faces_enrolled: int = 0
    seconds: float = 0.0
    storage_seconds: float = 0.0
    results: list[JobResult] = field(default_factory=list)
    not_queued: int = 0  # entries counted and reported, but never jobs (skipped files, unreadable folders...)

    def add(self, result: JobResult) -> None:
        self.counts[result.outcome] = self.counts.get(result.outcome, 0) + 1
        self.faces_enrolled += result.outcome == "enrolled"
        self.results.append(result)

    def add_unqueued(self, row: InputRow) -> None:
        """An entry the input scan skipped or failed: counted and reported like a job's result."""
        self.add(JobResult(None, row.source_path, row.external_id, row.outcome, row.reason))
        self.not_queued += 1

    @property
    def processed(self) -> int:
        """Jobs finished (inputs that never became jobs are counted apart)."""
        return sum(self.counts.values()) - self.not_queued


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def queue_jobs(runtime: Runtime, specs: Iterable[jobs.JobSpec], batch: str | None = None) -> tuple[str, int]:
    """Queue a batch; jobs left unfinished by a dead run for the same file and person are adopted, not doubled."""
    batch = batch or jobs.new_batch_id()
    specs = list(specs)
    with transaction(runtime.sessions) as session:
        adopted = jobs.adopt_unfinished(session, batch, specs, is_dead=_lease_owner_dead)
        fresh = [s for s in specs if (s.source_path, s.external_id) not in adopted]
        queued = jobs.enqueue(session, batch, fresh) + len(adopted)
    return batch, queued


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
    if subject == "reject" or ranked[0].area < dominance * ranked[1].area:
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
        person_id=person_id, image_id=image_id, model_id=model_row_id,
        bbox=[round(float(v), 2) for v in face.bbox],
        landmarks=[[round(float(x), 2), round(float(y), 2)] for x, y in face.landmarks],
        det_score=float(face.det_score), iod_px=face.quality.iod_px, blur=face.quality.blur,
        yaw_deg=face.quality.yaw_deg, roll_deg=face.quality.roll_deg,
        status=FaceStatus.pending if face.quality.ok else FaceStatus.rejected,
        rejection=",".join(face.quality.rejections) or None,
    )


def index_pending(runtime: Runtime, index: VectorIndex, to_index: Sequence[tuple[Face, np.ndarray]],
                  then: Callable[[Session], None] = lambda session: None) -> None:
    """Steps 2 and 3 for rows step 1 committed as pending: upsert their vectors (durable), then mark
    them indexed, with `then`'s bookkeeping in that same transaction."""
    if to_index:
        index.upsert([VectorPoint(face.id, face.person_id, vector) for face, vector in to_index])
    with transaction(runtime.sessions) as session:
        if to_index:
            session.execute(
                update(Face).where(Face.id.in_([face.id for face, _ in to_index]))
                .values(status=FaceStatus.indexed, updated_at=utcnow())
            )
        then(session)


class EnrollmentWriter:
    """Writes the outcomes of processed jobs, a chunk at a time, by the protocol above."""

    def __init__(self, runtime: Runtime, index: VectorIndex, model_row_id: int, subject: str | None = None) -> None:
        self.runtime = runtime
        self.index = index
        self.model_row_id = model_row_id
        self.dominance = runtime.settings.enroll.dominant_face_ratio
        self.subject = subject or runtime.settings.enroll.subject
        if self.subject not in SUBJECT_RULES:
            raise ConfigError(f"subject rule {self.subject!r}: expected one of {', '.join(SUBJECT_RULES)}")

    def write(self, items: Sequence[tuple[Job, Outcome]]) -> list[JobResult]:
        try:
            return self._write(items)
        except IntegrityError:
            # Another worker stored the same new image or person first; the retry sees its rows.
            return self._write(items)

    def _write(self, items: Sequence[tuple[Job, Outcome]]) -> list[JobResult]:
        results: list[JobResult] = []
        to_index: list[tuple[Face, np.ndarray]] = []
        with transaction(self.runtime.sessions) as session:
            for job, outcome in items:
                results.append(self._decide(session, job, outcome, to_index))

        def finish_jobs(session: Session) -> None:
            for result in results:
                jobs.finish(session, result.job_id, result.outcome, result.reason, result.image_id)

        index_pending(self.runtime, self.index, to_index, finish_jobs)
        return results

    def settle_known(self, chunk: Sequence[Job]) -> tuple[list[JobResult], list[Job]]:
        """Finish, without running any model, the jobs whose bytes were already processed.

        Returns (the results of those, the jobs still to process). This is what makes a
        re-run of a large enrollment take seconds instead of hours.
        """
        digests: dict[int, str] = {}
        for job in chunk:
            try:
                digests[job.id] = hashlib.sha256(Path(job.source_path).read_bytes()).hexdigest()
            except OSError:
                pass  # the pipeline reports the reason
        results: list[JobResult] = []
        with transaction(self.runtime.sessions) as session:
            images = {i.sha256: i for i in session.scalars(select(Image).where(Image.sha256.in_(set(digests.values()))))}
            for job in chunk:
                image = images.get(digests.get(job.id, ""))
                if image is None:
                    continue
                person = session.scalars(select(Person).where(Person.external_id == job.external_id)).one_or_none()
                settled = self._settled(session, image, person.id if person else None, job.external_id, set())
                if settled is not None:
                    results.append(JobResult(job.id, job.source_path, job.external_id, *settled, faces_found=0,
                                             image_id=image.id))
            for result in results:
                jobs.finish(session, result.job_id, result.outcome, result.reason, result.image_id)
        done = {r.job_id for r in results}
        return results, [job for job in chunk if job.id not in done]

    def _held(self, session: Session, image: Image) -> list[Face]:
        return list(session.scalars(select(Face).where(Face.image_id == image.id, Face.model_id == self.model_row_id)))

    def _settled(self, session: Session, image: Image, person_id: uuid.UUID | None, external_id: str,
                 this_chunk: set[uuid.UUID]) -> tuple[str, str] | None:
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
            owner = session.get(Person, others[0].person_id)
            return "conflict", f"same image is enrolled for {owner.external_id if owner else 'another person'}"
        earlier = jobs.earlier_rejection(session, image.id, external_id)
        if earlier is not None:
            return "duplicate", f"same image already rejected for {external_id} ({earlier})"
        return None

    def _decide(self, session: Session, job: Job, outcome: Outcome,
                to_index: list[tuple[Face, np.ndarray]]) -> JobResult:
        image: Image | None = None

        def result(state: str, reason: str | None = None) -> JobResult:
            found = 0 if isinstance(outcome, ImageError) else len(outcome.faces)
            return JobResult(job.id, job.source_path, job.external_id, state, reason, found,
                             image.id if image is not None else None)

        if isinstance(outcome, ImageError):
            return result("failed", outcome.reason)
        person, _ = get_or_create_person(session, job.external_id, job.display_name, job.attributes)
        image = session.scalars(select(Image).where(Image.sha256 == outcome.sha256)).one_or_none()
        if image is not None:
            this_chunk = {f.id for f, _ in to_index}
            settled = self._settled(session, image, person.id, job.external_id, this_chunk)
            if settled is not None:
                return result(*settled)
            pending = [f for f in self._held(session, image) if f.person_id == person.id
                       and f.status == FaceStatus.pending and f.id not in this_chunk]
            if pending:
                redone = _redetected(outcome, pending)
                if redone is None:
                    return result("failed", "image changed between runs")
                to_index.extend(redone)  # finish what a crashed run began
                return result("enrolled", "completed an interrupted enrollment")
        else:
            image = Image(sha256=outcome.sha256, source_path=job.source_path, size_bytes=_size(job.source_path),
                          width=outcome.width, height=outcome.height)
            session.add(image)
            session.flush()
        faces, reason = choose_faces(outcome, self.subject, self.dominance)
        if not faces:
            return result("rejected", reason)
        rows = [face_row(face, person.id, image.id, self.model_row_id) for face in faces]
        session.add_all(rows)
        session.flush()
        passed = [(row, face.embedding) for row, face in zip(rows, faces) if face.quality.ok]
        if not passed:
            return result("rejected", rows[0].rejection)
        to_index.extend(passed)
        return result("enrolled")


def process_queue(
    runtime: Runtime,
    writer: EnrollmentWriter,
    batch: str | None,
    workers: int,
    on_result: Callable[[JobResult], None] = lambda r: None,
    summary: EnrollSummary | None = None,
) -> EnrollSummary:
    """Claim and process jobs (of one batch, or any) until none is left; returns what happened."""
    settings = runtime.settings
    summary = summary or EnrollSummary(batch=batch or "*")
    claimed: deque[Job] = deque()
    owner = worker_name()
    started = time.perf_counter()

    def paths() -> Iterator[str]:
        while True:
            t0 = time.perf_counter()  # claiming and settling count as bookkeeping, like the writes
            with transaction(runtime.sessions) as session:
                chunk = jobs.claim(session, owner, settings.enroll.chunk_size, settings.enroll.lease_seconds, batch)
            if not chunk:
                return
            known, todo = writer.settle_known(chunk)
            summary.storage_seconds += time.perf_counter() - t0
            for result in known:
                summary.add(result)
                on_result(result)
            for job in todo:
                claimed.append(job)
                yield job.source_path

    pending: list[tuple[Job, Outcome]] = []

    def flush() -> None:
        t0 = time.perf_counter()
        for result in writer.write(pending):
            summary.add(result)
            on_result(result)
        summary.storage_seconds += time.perf_counter() - t0
        pending.clear()

    try:
        for _path, outcome in process_paths_parallel(settings, paths(), workers):
            pending.append((claimed.popleft(), outcome))
            if len(pending) >= settings.enroll.chunk_size:
                flush()
        if pending:
            flush()
        writer.index.optimize()  # the embedded engine builds its search graph only when asked
    except BaseException:
        # Ctrl-C or a crash: hand back what this run claimed but never wrote, so the
        # next run takes it at once instead of waiting for the leases to expire.
        _release(runtime, [job.id for job, _ in pending] + [job.id for job in claimed])
        raise
    finally:
        summary.seconds += time.perf_counter() - started
    return summary


def enroll_analysed(runtime: Runtime, writer: "EnrollmentWriter",
                    analysed: Sequence[tuple[jobs.JobSpec, Outcome]]) -> EnrollSummary:
    """Enroll images already analysed (e.g. from the evaluation cache) through the same queue and writer."""
    batch, queued = queue_jobs(runtime, [spec for spec, _ in analysed])
    summary = EnrollSummary(batch=batch, queued=queued)
    outcomes = {(spec.source_path, spec.external_id): outcome for spec, outcome in analysed}
    owner = worker_name()
    started = time.perf_counter()
    while True:
        with transaction(runtime.sessions) as session:
            chunk = jobs.claim(session, owner, runtime.settings.enroll.chunk_size,
                               runtime.settings.enroll.lease_seconds, batch)
        if not chunk:
            break
        for result in writer.write([(job, outcomes[(job.source_path, job.external_id)]) for job in chunk]):
            summary.add(result)
    writer.index.optimize()
    summary.seconds = time.perf_counter() - started
    return summary


def _release(runtime: Runtime, job_ids: list[int]) -> None:
    if not job_ids:
        return
    with transaction(runtime.sessions) as session:
        jobs.release(session, job_ids)


def _lease_owner_dead(owner: str | None) -> bool:
    """True when a lease belongs to a process on this host that no longer runs."""
    host, _, pid = (owner or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0

