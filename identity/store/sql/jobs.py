"""The job queue: one job per image to enroll, or per (photo, person) to re-embed with a target model
(kind "reindex", model_id the target), claimed under a lease that expires. A claim takes one kind
(and target) only, so an enrollment loop never runs a reindex job, nor the reverse.

On Postgres, claims use SELECT ... FOR UPDATE SKIP LOCKED so any number of workers
share the queue without taking the same job; SQLite serialises writers anyway.
A job whose worker vanished is claimed again once its lease runs out, up to
MAX_ATTEMPTS, after which it fails instead of crashing workers forever.
A cancelled job is never claimed, and no finishing worker overwrites its state.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Select, and_, delete, func, insert, or_, select, update
from sqlalchemy.orm import Session

from identity.store.sql.db import rowcount
from identity.store.sql.tables import Job, JobStatus, naive_utc, utcnow

MAX_ATTEMPTS = 3


class JobOutcome(StrEnum):  # how a finished job ended
    enrolled = "enrolled"
    rejected = "rejected"
    failed = "failed"
    duplicate = "duplicate"
    conflict = "conflict"
    reindexed = "reindexed"


OUTCOMES = tuple(JobOutcome)
ENROLL, REINDEX = "enroll", "reindex"


@dataclass(frozen=True)
class JobSpec:
    source_path: str
    external_id: str
    display_name: str | None = None
    attributes: dict[str, Any] | None = None
    kind: str = ENROLL
    model_id: int | None = None  # a reindex job's target model (row id)
    image_id: uuid.UUID | None = None  # a reindex job's photo

    @property
    def key(self) -> tuple[str, int | None, str, str]:
        """What the job does: two unfinished jobs with one key would do the same work twice."""
        return self.kind, self.model_id, self.source_path, self.external_id


def _job_key(job: Job) -> tuple[str, int | None, str, str]:
    return job.kind, job.model_id, job.source_path, job.external_id


def new_batch_id() -> str:
    return uuid.uuid4().hex[:12]


def enqueue(session: Session, batch: str, specs: Iterable[JobSpec], chunk: int = 1000) -> int:
    """Queue one job per spec; returns how many were queued."""
    rows: list[dict[str, Any]] = []
    total = 0
    now = utcnow()
    for spec in specs:
        rows.append(
            {
                "batch": batch,
                "status": JobStatus.queued,
                "source_path": spec.source_path,
                "external_id": spec.external_id,
                "display_name": spec.display_name,
                "attributes": spec.attributes or {},
                "attempts": 0,
                "created_at": now,
                "updated_at": now,
                "kind": spec.kind,
                "model_id": spec.model_id,
                "image_id": spec.image_id,
            }
        )
        if len(rows) >= chunk:
            session.execute(insert(Job), rows)
            total += len(rows)
            rows = []
    if rows:
        session.execute(insert(Job), rows)
        total += len(rows)
    return total


def adopt_unfinished(session: Session, batch: str, specs: Sequence[JobSpec]) -> set[tuple[str, int | None, str, str]]:
    """Move queued or abandoned jobs doing the same (kind, target, file, person) into `batch`; returns their keys
    (JobSpec.key).

    A re-run after a crash thus resumes the old jobs instead of queuing the files twice.
    Jobs under a live lease of another worker are left alone.
    """
    wanted = {s.key for s in specs}
    now = utcnow()
    adopted: set[tuple[str, int | None, str, str]] = set()
    unfinished = session.scalars(select(Job).where(Job.status.in_((JobStatus.queued, JobStatus.running))))
    for job in unfinished:
        key = _job_key(job)
        if key not in wanted or key in adopted:
            continue
        abandoned = job.status == JobStatus.running and (
            job.lease_expires_at is None or naive_utc(job.lease_expires_at) < naive_utc(now)
        )
        if job.status == JobStatus.queued or abandoned:
            job.batch, job.status, job.lease_owner, job.lease_expires_at = batch, JobStatus.queued, None, None
            adopted.add(key)
    session.flush()
    return adopted


def _expired(now: datetime) -> Any:
    return and_(Job.status == JobStatus.running, Job.lease_expires_at < now)


def claim(
    session: Session,
    owner: str,
    limit: int,
    lease_seconds: int,
    batch: str | None = None,
    kind: str = ENROLL,
    model_id: int | None = None,
) -> list[Job]:
    """Lease up to `limit` queued (or abandoned) jobs of one kind (reindex: of one target model, or any
    if None) to `owner`; commit promptly after."""
    now = utcnow()
    give_up = (
        update(Job)
        .where(_expired(now), Job.attempts >= MAX_ATTEMPTS)
        .values(
            status=JobStatus.failed,
            outcome="failed",
            lease_owner=None,
            lease_expires_at=None,
            reason=f"abandoned: the worker stopped during {MAX_ATTEMPTS} attempts",
            updated_at=now,
        )
    )
    session.execute(give_up.execution_options(synchronize_session=False))
    stmt = (
        select(Job)
        .where(or_(Job.status == JobStatus.queued, _expired(now)))
        .order_by(Job.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    stmt = stmt.where(Job.kind == kind)
    if model_id is not None:
        stmt = stmt.where(Job.model_id == model_id)
    if batch is not None:
        stmt = stmt.where(Job.batch == batch)
    jobs = list(session.scalars(stmt))
    expires = now + timedelta(seconds=lease_seconds)
    for job in jobs:
        job.status = JobStatus.running
        job.lease_owner = owner
        job.lease_expires_at = expires
        job.attempts += 1
    session.flush()
    return jobs


def finish(
    session: Session, job_id: int, outcome: str, reason: str | None = None, image_id: uuid.UUID | None = None
) -> None:
    assert outcome in OUTCOMES, outcome
    session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status != JobStatus.cancelled)
        .values(
            status=JobStatus.failed if outcome == "failed" else JobStatus.done,
            outcome=outcome,
            reason=reason,
            image_id=image_id,
            lease_owner=None,
            lease_expires_at=None,
            updated_at=utcnow(),
        )
    )


def reindex_targets(session: Session) -> list[int]:
    """The target models (row ids) of reindex jobs waiting to be claimed: queued, or running on an expired lease."""
    now = utcnow()
    return list(
        session.scalars(
            select(Job.model_id)
            .where(Job.kind == REINDEX, Job.model_id.is_not(None), or_(Job.status == JobStatus.queued, _expired(now)))
            .distinct()
            .order_by(Job.model_id)
        )
    )


def release(session: Session, job_ids: Sequence[int]) -> None:
    """Give claimed jobs back to the queue (their worker is stopping without doing them)."""
    _requeue(session, job_ids, refund_attempt=True)


def earlier_rejection(session: Session, image_id: uuid.UUID, external_id: str) -> str | None:
    """The reason an earlier job rejected these image bytes for this person, if one did."""
    return session.scalars(
        select(Job.reason)
        .where(Job.image_id == image_id, Job.external_id == external_id, Job.outcome == "rejected", Job.kind == ENROLL)
        .limit(1)
    ).first()


def list_jobs(
    session: Session, state: str | None = None, batch: str | None = None, limit: int = 100, offset: int = 0
) -> list[Job]:
    stmt = _jobs_matching(state, batch).order_by(Job.id.desc()).limit(limit).offset(offset)
    return list(session.scalars(stmt))


def count_jobs(session: Session, state: str | None = None, batch: str | None = None) -> int:
    """How many jobs list_jobs finds with these filters, on all its pages."""
    return session.scalar(select(func.count()).select_from(_jobs_matching(state, batch).subquery())) or 0


def _jobs_matching(state: str | None, batch: str | None) -> Select[Job]:
    stmt = select(Job)
    if state in {s.value for s in JobStatus}:
        stmt = stmt.where(Job.status == JobStatus(state))
    elif state:
        stmt = stmt.where(Job.outcome == state)
    if batch:
        stmt = stmt.where(Job.batch == batch)
    return stmt


def retry(session: Session, failed_only: bool = True, batch: str | None = None, cancelled: bool = False) -> int:
    """Queue failed (or all finished-but-not-enrolled) jobs again, cancelled ones only when asked; returns how many."""
    if failed_only:
        condition = Job.status == JobStatus.failed
    else:
        condition = and_(Job.status != JobStatus.cancelled, Job.outcome.in_(("failed", "rejected")))
    if cancelled:
        condition = or_(condition, Job.status == JobStatus.cancelled)
    stmt = update(Job).where(condition)
    if batch:
        stmt = stmt.where(Job.batch == batch)
    result = session.execute(
        stmt.values(
            status=JobStatus.queued,
            outcome=None,
            reason=None,
            attempts=0,
            lease_owner=None,
            lease_expires_at=None,
            updated_at=utcnow(),
        ).execution_options(synchronize_session=False)
    )
    return rowcount(result) or 0


def outcome_counts(session: Session, batch: str | None = None) -> dict[str, int]:
    stmt = select(func.coalesce(Job.outcome, Job.status), func.count()).group_by(func.coalesce(Job.outcome, Job.status))
    if batch:
        stmt = stmt.where(Job.batch == batch)
    return {str(getattr(k, "value", k)): n for k, n in session.execute(stmt)}


def expire_dead_leases(session: Session, is_dead: Callable[[str | None], bool]) -> int:
    """End at once the leases of workers known to be dead, so `claim` takes their jobs over now.

    The attempt the dead worker counted stays counted (it may have died of the job), so
    claim's MAX_ATTEMPTS rule still fails a job that keeps killing its workers.
    """
    now = utcnow()
    # Columns, not Job objects: a caller's later select of these jobs must see the new expiry.
    leased = session.execute(
        select(Job.id, Job.lease_owner).where(Job.status == JobStatus.running, Job.lease_expires_at >= now)
    )
    dead = [job_id for job_id, owner in leased if is_dead(owner)]
    if dead:
        session.execute(
            update(Job)
            .where(Job.id.in_(dead))
            .values(lease_expires_at=now - timedelta(seconds=1))
            .execution_options(synchronize_session=False)
        )
    return len(dead)


def leased_elsewhere(session: Session, owner: str, batch: str | None = None) -> datetime | None:
    """When the first live lease held by another worker (on a job of `batch`, or any) ends, or None if no
    other worker holds one."""
    stmt = select(func.min(Job.lease_expires_at)).where(
        Job.status == JobStatus.running,
        Job.lease_expires_at >= utcnow(),
        or_(Job.lease_owner.is_(None), Job.lease_owner != owner),
    )
    if batch is not None:
        stmt = stmt.where(Job.batch == batch)
    return session.scalars(stmt).first()


def batch_jobs(session: Session, batch: str) -> list[Job]:
    return list(session.scalars(select(Job).where(Job.batch == batch).order_by(Job.id)))


def stale_leases(session: Session) -> Sequence[Job]:
    return list(session.scalars(select(Job).where(_expired(utcnow()))))


CANCELLABLE = (JobStatus.queued, JobStatus.running, JobStatus.failed)


@dataclass(frozen=True)
class Cancelled:
    cancelled: list[int]  # ids now cancelled
    refused_live: list[int]  # running under a live lease, left alone (no force)
    not_cancellable: list[int]  # named by id but done or already cancelled


def cancel(
    session: Session,
    ids: Sequence[int] = (),
    state: JobStatus | None = None,
    batch: str | None = None,
    force: bool = False,
) -> Cancelled:
    """Take the selected queued, running or failed jobs out of the queue for good.

    A running job under a live lease is left alone unless `force`: then it is cancelled
    too, and its worker discards what it wrote for it when it finishes the chunk.
    """
    assert ids or state or batch, "cancel needs a selection"
    assert state is None or state in CANCELLABLE, state
    stmt = select(Job).where(Job.status.in_([state] if state else CANCELLABLE)).order_by(Job.id).with_for_update()
    if ids:
        stmt = stmt.where(Job.id.in_(ids))
    if batch:
        stmt = stmt.where(Job.batch == batch)
    now = utcnow()
    done, live = [], []
    for job in session.scalars(stmt):
        if _lease_live(job, now) and not force:
            live.append(job.id)
            continue
        job.reason = f"cancelled while {job.status.value}" + (f" ({job.reason})" if job.reason else "")
        job.status, job.outcome, job.lease_owner, job.lease_expires_at = JobStatus.cancelled, None, None, None
        job.updated_at = now
        done.append(job.id)
    session.flush()
    missed = sorted(set(ids) - set(done) - set(live))
    return Cancelled(done, live, missed)


def cancelled_among(session: Session, job_ids: Sequence[int]) -> set[int]:
    """Which of these jobs were cancelled (locked, so a cancel cannot slip in before the caller commits)."""
    if not job_ids:
        return set()
    stmt = select(Job.id).where(Job.id.in_(job_ids), Job.status == JobStatus.cancelled).with_for_update()
    return set(session.scalars(stmt))


def stuck(session: Session, lease_seconds: int, factor: int = 10) -> list[Job]:
    """Jobs queued or running for more than `factor` leases while the queue did not move.

    A running job is stuck once its lease is `factor` leases old (leases are never
    renewed, so its worker is gone and nobody claimed it since). A queued job is stuck
    when it waited that long and no job finished within the last lease: a long queue
    that workers are eating through is not stuck.
    """
    now = utcnow()
    old = now - timedelta(seconds=factor * lease_seconds)
    last_finish = session.scalar(
        select(func.max(Job.updated_at)).where(Job.status.in_((JobStatus.done, JobStatus.failed)))
    )
    moving = last_finish is not None and naive_utc(last_finish) > naive_utc(now - timedelta(seconds=lease_seconds))
    running = and_(Job.status == JobStatus.running, Job.updated_at < old)
    condition = running if moving else or_(running, and_(Job.status == JobStatus.queued, Job.updated_at < old))
    return list(session.scalars(select(Job).where(condition).order_by(Job.id)))


def _lease_live(job: Job, now: datetime) -> bool:
    return (
        job.status == JobStatus.running
        and job.lease_expires_at is not None
        and naive_utc(job.lease_expires_at) > naive_utc(now)
    )


@dataclass(frozen=True)
class JobRecord:  # a job as `identity jobs list` and GET /v1/jobs show it
    id: int
    batch: str
    status: JobStatus
    outcome: JobOutcome | None
    reason: str | None
    source_path: str
    external_id: str
    attempts: int
    lease_owner: str | None
    updated_at: str | None


def job_record(job: Job) -> JobRecord:
    return JobRecord(
        job.id,
        job.batch or "",  # enqueue always sets a batch (the column itself allows none)
        job.status,
        JobOutcome(job.outcome) if job.outcome else None,
        job.reason,
        job.source_path,
        job.external_id,
        job.attempts,
        job.lease_owner,
        job.updated_at.isoformat() if job.updated_at else None,
    )


def release_stale_leases(session: Session, job_ids: Sequence[int]) -> None:
    """Queue again jobs whose lease ran out (doctor --repair). The attempt their vanished worker made stays
    counted, as in expire_dead_leases, so MAX_ATTEMPTS still fails a job that keeps killing its workers."""
    _requeue(session, job_ids, refund_attempt=False)


def _requeue(session: Session, job_ids: Sequence[int], refund_attempt: bool) -> None:
    """Running jobs back to the queue with no lease; `refund_attempt`: their claim does not count as an attempt."""
    values: dict[str, Any] = {
        "status": JobStatus.queued,
        "lease_owner": None,
        "lease_expires_at": None,
        "updated_at": utcnow(),
    }
    if refund_attempt:
        values["attempts"] = Job.attempts - 1
    session.execute(update(Job).where(Job.id.in_(job_ids), Job.status == JobStatus.running).values(**values))


def delete_enrollment_jobs(session: Session, image_id: uuid.UUID, external_id: str) -> None:
    """Delete the jobs that enrolled this photo for this person (their face is being erased)."""
    session.execute(
        delete(Job)
        .where(Job.image_id == image_id, Job.external_id == external_id)
        .execution_options(synchronize_session=False)
    )


def paths_waiting(session: Session, paths: Sequence[str]) -> set[str]:
    """Those of `paths` that a queued or running job has still to read."""
    waiting: set[str] = set()
    for start in range(0, len(paths), 500):
        query = select(Job.source_path).where(
            Job.source_path.in_(set(paths[start : start + 500])), Job.status.in_([JobStatus.queued, JobStatus.running])
        )
        waiting.update(session.scalars(query))
    return waiting
