"""`identity worker`: process queued enrollment jobs, then queued reindex jobs (each with its target
model's pack, into its collection), until stopped, or until the queue is drained.

Each round first retries the erasures left pending (identity.services.curation.erasure); completion
webhooks are sent beside the loop (identity.services.queue.webhooks.Sender).

Callable from Python and from a long-running server as from the CLI, on the process's one App. The
deployment is released and asked for again whenever `identity reindex` switches the model (or the store is rebound),
so a
worker never enrolls into a collection that is no longer searched. The server runs it in a thread
(identity.api.context): `stop` ends it (claimed jobs handed back), `wake` cuts an idle wait short,
`analyse` runs the images through the server's inference threads instead of worker processes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

from identity.app.core import App
from identity.faces import process_paths_parallel
from identity.services.curation.erasure import retry_pending
from identity.services.enrollment.writer import EnrollmentWriter
from identity.services.models.reindex import process_reindex_jobs
from identity.services.queue.loop import (
    EnrollSummary,
    JobResult,
    Outcome,
    process_queue,
    seconds_until_others_done,
)
from identity.services.queue.webhooks import Sender

OnResult = Callable[[JobResult], None]
Analyse = Callable[[Iterator[str]], Iterator[tuple[str, Outcome]]]


class Stopped(Exception):
    """Raised into the queue loop when `stop` is set: it hands the jobs it claimed back, and the worker returns."""


def run_worker(
    app: App,
    workers: int = 1,
    drain: bool = False,
    poll: float = 5.0,
    subject: str | None = None,
    on_open: Callable[[], OnResult] = lambda: lambda result: None,
    stop: threading.Event | None = None,
    wake: threading.Event | None = None,
    analyse: Analyse | None = None,
    reindex: bool = True,
    summary: EnrollSummary | None = None,
) -> EnrollSummary:
    """Claim and process jobs; returns what was processed. `on_open` runs once the store first opened
    (the CLI starts its progress bar there, so a refusal stays one line) and gives the per-job callback.

    `stop`/`wake`: events another thread sets to end the worker, or to end an idle wait now (jobs queued).
    `analyse`: how images are detected and embedded (process_queue's; default: `workers` processes).
    `reindex`: also run reindex jobs (each needs its target's pack, in worker processes).
    `summary`: where the figures add up (the server's keeps no per-job results)."""
    stop, wake = stop or threading.Event(), wake or threading.Event()
    summary = summary or EnrollSummary(batch="*")
    on_result: OnResult | None = None
    idle = False

    def pause(seconds: float) -> None:
        wake.wait(seconds)
        wake.clear()

    # Completion webhooks go out from their own thread, so a slow receiver never holds a job back; it makes a
    # last round when the worker returns, so `worker --drain` sends those of the batches it finished.
    sender = Sender(app, poll)
    sender.start()
    try:
        while not stop.is_set() and not (drain and idle):
            dep = app.deployment(write=True)
            if on_result is None:
                on_result = on_open()
            writer = EnrollmentWriter(dep, subject)
            while dep.follows_store() and not stop.is_set():
                retry_pending(app)
                before = summary.processed
                try:
                    process_queue(
                        app, writer, None, workers, on_result, summary, _until(stop, writer, workers, analyse)
                    )
                except Stopped:
                    return summary
                if reindex:
                    process_reindex_jobs(app, workers, on_result, summary)
                idle = summary.processed == before
                if not idle:
                    sender.nudge()  # a batch may be done: its webhook goes now, not at the next poll
                if drain and idle:
                    # Draining means every job is done: jobs still leased to another worker come
                    # back to the queue if it died, so wait for them rather than leave them behind.
                    due = seconds_until_others_done(app)
                    if due is None:
                        break
                    idle = False
                    pause(min(poll, due + 0.5))
                elif idle:
                    pause(poll)
            if not stop.is_set():
                # the old model's collections (and, embedded, their lock) go; the next round opens the new
                dep.release()
    finally:
        sender.finish()
    return summary


def _until(stop: threading.Event, writer: EnrollmentWriter, workers: int, analyse: Analyse | None) -> Analyse:
    """`analyse` (default: the writer's pack in `workers` processes), stopping (Stopped) before the next
    image once `stop` is set."""
    run = analyse or (lambda paths: process_paths_parallel(writer.settings, paths, workers))

    def paths_until_stopped(paths: Iterator[str]) -> Iterator[str]:
        for path in paths:
            if stop.is_set():
                raise Stopped()
            yield path

    return lambda paths: run(paths_until_stopped(paths))
