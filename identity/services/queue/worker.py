"""`identity worker`: process queued enrollment jobs, then queued reindex jobs (each with its target
model's pack, into its collection), until stopped, or until the queue is drained.

Each round first retries the erasures left pending (identity.services.curation.erasure).

Callable from Python and from a long-running server as from the CLI, on the process's one App. The
deployment is released and asked for again whenever `identity reindex` switches the model (or the store is rebound), so a
worker never enrolls into a collection that is no longer searched.
"""

from __future__ import annotations

import time
from typing import Callable

from identity.app.core import App
from identity.services.curation.erasure import retry_pending
from identity.services.enrollment.writer import EnrollmentWriter
from identity.services.models.reindex import process_reindex_jobs
from identity.services.queue.loop import (
    EnrollSummary,
    JobResult,
    process_queue,
    seconds_until_others_done,
)

OnResult = Callable[[JobResult], None]


def run_worker(app: App, workers: int = 1, drain: bool = False, poll: float = 5.0,
               subject: str | None = None, on_open: Callable[[], OnResult] = lambda: lambda result: None) -> EnrollSummary:
    """Claim and process jobs; returns what was processed. `on_open` runs once the store first opened
    (the CLI starts its progress bar there, so a refusal stays one line) and gives the per-job callback."""
    summary = EnrollSummary(batch="*")
    on_result: OnResult | None = None
    idle = False
    while not (drain and idle):
        dep = app.deployment(write=True)
        if on_result is None:
            on_result = on_open()
        writer = EnrollmentWriter(dep, subject)
        while dep.follows_store():
            retry_pending(app)
            before = summary.processed
            process_queue(app, writer, None, workers, on_result, summary)
            process_reindex_jobs(app, workers, on_result, summary)
            idle = summary.processed == before
            if drain and idle:
                # Draining means every job is done: jobs still leased to another worker come
                # back to the queue if it died, so wait for them rather than leave them behind.
                due = seconds_until_others_done(app)
                if due is None:
                    break
                idle = False
                time.sleep(min(poll, due + 0.5))
            elif idle:
                time.sleep(poll)
        dep.release()  # the old model's collections (and, embedded, their lock) go; the next round opens the new
    return summary

