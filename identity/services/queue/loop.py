"""The one loop every bulk job runs through (enrollment, re-index, cluster naming): queue, claim, lease, contain.

Jobs are queued once (a dead run's unfinished jobs are adopted, not doubled), claimed in chunks under
a lease, their images analysed in worker processes, and handed to a writer (JobWriter: e.g.
identity.services.enrollment.writer.EnrollmentWriter) a chunk at a time.

One job cannot jam the queue: an error that is the job's own fault (job_fault), at any
step, undoes that job's rows and vectors and finishes it `failed` with the reason, while
the rest of its chunk goes on. An error that is not (a store down, a model that cannot
load) stops the run and hands the claimed jobs back, as Ctrl-C does.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

from identity.app.core import App
from identity.config import Settings
from identity.errors import IdentityError, ImageError, ModelError, StoreUnavailable
from identity.faces import ImageFaces, process_paths_parallel
from identity.pathnames import fs_path
from identity.services.enrollment.inputs import InputRow
from identity.services.enrollment.uploads import discard_unheld
from identity.store.sql import jobs
from identity.store.sql.db import transaction
from identity.store.sql.errors import DataError, database_refusal
from identity.store.sql.pending_erasures import refuse_while_erasing
from identity.store.sql.tables import Job, naive_utc, utcnow

Outcome = ImageFaces | ImageError


@dataclass(frozen=True)
class JobResult:
    job_id: int | None  # None: an input that never became a job (enroll_inputs.InputRow)
    source_path: str
    external_id: str
    # enrolled / rejected / failed / duplicate / conflict; skipped for inputs never queued;
    # cancelled: a job cancelled while it ran, its result discarded
    outcome: str
    reason: str | None = None
    faces_found: int = 0
    image_id: uuid.UUID | None = None
    duplicate_of: str | None = None  # the first path of this run holding the same bytes (never processed twice)


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


def queue_jobs(app: App, specs: Iterable[jobs.JobSpec], batch: str | None = None) -> tuple[str, int]:
    """Queue a batch; jobs left unfinished by a dead run for the same file and person are adopted, not doubled."""
    batch = batch or jobs.new_batch_id()
    specs = list(specs)
    with transaction(app.sessions) as session:
        refuse_while_erasing(session, {s.external_id for s in specs if s.kind == jobs.ENROLL})
        jobs.expire_dead_leases(session, lease_owner_dead)  # a dead run's leases count as abandoned
        adopted = jobs.adopt_unfinished(session, batch, specs)
        fresh = [s for s in specs if s.key not in adopted]
        queued = jobs.enqueue(session, batch, fresh) + len(adopted)
    return batch, queued


class JobFailed(Exception):
    """Raised out of a chunk's transaction, rolling it back, to name the job at fault."""

    def __init__(self, job_id: int, reason: str) -> None:
        super().__init__(reason)
        self.job_id = job_id
        self.reason = reason


def job_fault(exc: BaseException) -> bool:
    """Whether an error is the job's own fault, to fail that job alone.

    Two classes of error reach the queue loop:
      - the job's fault: its input cannot be stored as asked (an external id that is
        another person's uuid, a vector the index refuses, a value the database rejects):
        IdentityError and DataError, bar the two below. That job ends `failed` with the
        message as its reason, and the run goes on with the others.
      - not the job's fault: a store that cannot be reached (StoreUnavailable, a dropped
        connection), a model that cannot load (ModelError), Ctrl-C, a bug. Failing jobs for
        those would fail every job; the run stops and hands its claimed jobs back instead.
    (Images are looser: any exception a decoder or detector raises on one image is that
    image's failure, see identity.faces.parallel.)
    """
    return isinstance(exc, (IdentityError, DataError)) and not isinstance(exc, (StoreUnavailable, ModelError))


def fault_reason(exc: BaseException) -> str:
    refused = database_refusal(exc)
    return str(exc) if refused is None else f"the database refused it: {refused}"


T = TypeVar("T")


def contained(failures: dict[int, str], attempt: Callable[[], T]) -> T:
    """Run `attempt` (one transaction over a chunk) again without each job found at fault.

    `attempt` skips the jobs in `failures` and raises JobFailed for a new one, which rolls
    its transaction back; so one job's error undoes only its own rows, on SQLite as on
    Postgres (pysqlite's savepoints commit on release, so nested transactions cannot do it).
    """
    while True:
        try:
            return attempt()
        except JobFailed as fault:
            assert fault.job_id not in failures, "a failed job was not skipped"
            failures[fault.job_id] = fault.reason


class JobWriter(Protocol):
    """What process_queue needs of a writer: EnrollmentWriter, or services.reindex.ReindexWriter."""

    kind: str  # the kind of job it writes (jobs.ENROLL, jobs.REINDEX)
    target_model: int | None  # claim only jobs for this model (reindex), or any
    settings: Settings  # whose pack runs over the jobs' images

    def settle_known(self, chunk: Sequence[Job]) -> tuple[list[JobResult], list[Job]]: ...

    def write(self, items: Sequence[tuple[Job, Outcome]]) -> list[JobResult]: ...

    def optimize(self) -> None: ...


def process_queue(
    app: App,
    writer: JobWriter,
    batch: str | None,
    workers: int,
    on_result: Callable[[JobResult], None] = lambda r: None,
    summary: EnrollSummary | None = None,
    analyse: Callable[[Iterator[str]], Iterator[tuple[str, Outcome]]] | None = None,
) -> EnrollSummary:
    """Claim the writer's kind of jobs (of one batch, or any) and process them until none is left; returns what
    happened.

    The images run through the writer's pack (`writer.settings`) in `workers` processes, unless
    `analyse` gives their outcomes (in input order) another way; the queue's chunk and lease
    settings are the app's.
    """
    settings = app.settings
    summary = summary or EnrollSummary(batch=batch or "*")
    claimed: deque[Job] = deque()
    owner = worker_name()
    started = time.perf_counter()
    with transaction(app.sessions) as session:  # a SIGKILLed worker on this host: take its jobs now
        jobs.expire_dead_leases(session, lease_owner_dead)

    def paths() -> Iterator[str]:
        while True:
            t0 = time.perf_counter()  # claiming and settling count as bookkeeping, like the writes
            with transaction(app.sessions) as session:
                chunk = jobs.claim(
                    session,
                    owner,
                    settings.enroll.chunk_size,
                    settings.enroll.lease_seconds,
                    batch,
                    writer.kind,
                    writer.target_model,
                )
            if not chunk:
                return
            known, todo = writer.settle_known(chunk)
            summary.storage_seconds += time.perf_counter() - t0
            for result in known:
                summary.add(result)
                on_result(result)
            discard_unheld(app, [r.source_path for r in known])  # uploaded copies that became nobody's photo
            for job in todo:
                claimed.append(job)
                yield fs_path(job.source_path)  # stored as path_text: the name on disk may not be UTF-8

    pending: list[tuple[Job, Outcome]] = []

    def flush() -> None:
        t0 = time.perf_counter()
        results = writer.write(pending)
        for result in results:
            summary.add(result)
            on_result(result)
        discard_unheld(app, [r.source_path for r in results])
        summary.storage_seconds += time.perf_counter() - t0
        pending.clear()

    analysed = analyse(paths()) if analyse else process_paths_parallel(writer.settings, paths(), workers)
    try:
        for _path, outcome in analysed:
            pending.append((claimed.popleft(), outcome))
            if len(pending) >= settings.enroll.chunk_size:
                flush()
        if pending:
            flush()
        writer.optimize()  # the embedded engine builds its search graphs only when asked
    except BaseException:
        # Ctrl-C, a store that is down, or a crash (a job's own errors never get here): end the
        # worker pool now (not when the traceback is dropped, maybe at interpreter exit), and
        # hand back what this run claimed but never wrote, so the next run takes it at once
        # instead of waiting for the leases to expire.
        getattr(analysed, "close", lambda: None)()
        _release(app, [job.id for job, _ in pending] + [job.id for job in claimed])
        raise
    finally:
        summary.seconds += time.perf_counter() - started
    return summary


def seconds_until_others_done(app: App, batch: str | None = None) -> float | None:
    """How long until the first job (of `batch`, or any) leased to another live worker is done or due
    back; None if none is.

    `identity worker --drain` and `identity reindex` wait on it: a worker that died holding jobs
    (on another machine, where its death cannot be seen) hands them over only when their lease ends.
    """
    with transaction(app.sessions) as session:
        jobs.expire_dead_leases(session, lease_owner_dead)
        due = jobs.leased_elsewhere(session, worker_name(), batch)
    if due is None:
        return None
    return max(0.0, (naive_utc(due) - naive_utc(utcnow())).total_seconds())


def _release(app: App, job_ids: list[int]) -> None:
    if not job_ids:
        return
    with transaction(app.sessions) as session:
        jobs.release(session, job_ids)


def lease_owner_dead(owner: str | None) -> bool:
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


def file_digest(path: str) -> str:
    """The sha256 of a file's bytes, as Image.sha256 holds it."""
    return hashlib.sha256(Path(fs_path(path)).read_bytes()).hexdigest()


def is_undone(result: JobResult) -> bool:
    """Whether step 3 removes what steps 1 and 2 wrote for this job."""
    return result.outcome in ("failed", "cancelled")


def failed_result(job: Job, reason: str, faces_found: int = 0) -> JobResult:
    return JobResult(job.id, job.source_path, job.external_id, "failed", reason, faces_found)
