"""The enrollment queue as commands see it: queue a batch, list, retry and cancel jobs.

Processing the queue is services.enroll's; these only read and move job rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from identity.app.core import App
from identity.services.paging import Page, decode_cursor, page_of
from identity.services.queue.webhooks import add_callback, check_callback_url
from identity.store.sql import jobs as job_rows
from identity.store.sql.db import transaction
from identity.store.sql.jobs import JobOutcome, JobRecord, JobSpec
from identity.store.sql.tables import JobStatus

CANCELLABLE_STATES: tuple[str, ...] = tuple(s.value for s in job_rows.CANCELLABLE)
STATUSES: tuple[str, ...] = tuple(JobStatus)  # where a job is in the queue
OUTCOMES: tuple[str, ...] = tuple(JobOutcome)  # how a finished job ended; `state` filters take either


@dataclass(frozen=True)
class CancelReport:
    cancelled: list[int]  # ids now cancelled
    running_left_alone: list[int]  # running under a live lease, left alone (no force)
    not_cancellable: list[int]  # named by id but done or already cancelled


def queue_enrollment(app: App, specs: Iterable[JobSpec], callback_url: str | None = None) -> tuple[str, int]:
    """Queue a batch without processing it (`enroll --queue-only`): its id and how many jobs it holds.
    With `callback_url`, the worker posts the batch's outcomes there once every job is done (services.queue.webhooks).
    """
    from identity.services.queue.loop import (
        queue_jobs,  # enroll loads the face pipeline; listing jobs needs none of it
    )

    if callback_url is not None:
        check_callback_url(callback_url)  # before queueing: a refused request queues nothing
    batch, queued = queue_jobs(app, specs)
    if callback_url is not None:
        add_callback(app, batch, callback_url)
    return batch, queued


def list_jobs(
    app: App, state: str | None = None, batch: str | None = None, limit: int = 100, cursor: str | None = None
) -> Page[JobRecord]:
    """Newest first, a page of `limit` at a time; `state` is a status or an outcome (rejected, duplicate, ...)."""
    offset = decode_cursor(cursor)
    with app.sessions() as session:
        rows = job_rows.list_jobs(session, state, batch, limit + 1, offset)
        return page_of(rows, offset, limit, job_rows.count_jobs(session, state, batch)).map(job_rows.job_record)


def retry_jobs(app: App, failed_only: bool = True, batch: str | None = None, cancelled: bool = False) -> int:
    """Queue failed jobs again (also rejected ones unless `failed_only`, cancelled ones if asked); how many."""
    with transaction(app.sessions) as session:
        return job_rows.retry(session, failed_only=failed_only, batch=batch, cancelled=cancelled)


def cancel_jobs(
    app: App, ids: Sequence[int] = (), state: str | None = None, batch: str | None = None, force: bool = False
) -> CancelReport:
    """Cancel the jobs selected by ids, `state` (one of CANCELLABLE_STATES) and batch, which narrow each other."""
    with transaction(app.sessions) as session:
        done = job_rows.cancel(session, ids, JobStatus(state) if state else None, batch, force)
    return CancelReport(done.cancelled, done.refused_live, done.not_cancellable)


def queue_depth(app: App) -> dict[str, int]:
    """How many jobs wait and run now (the HTTP API's /metrics)."""
    with app.sessions() as session:
        counts = job_rows.outcome_counts(session)
    return {state: counts.get(state, 0) for state in ("queued", "running")}
