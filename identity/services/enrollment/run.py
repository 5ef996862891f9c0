"""`identity enroll` as one call, for the CLI, Python callers and the HTTP API alike.

Queue the inputs (identity.services.enrollment.inputs) as one batch, run it through the
queue loop with the deployment's writer, then flag the persons whose faces mostly
disagree (one folder holding several people).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from identity.app.core import App
from identity.services.curation.consistency import (
    InconsistentPerson,
    inconsistent_persons,
)
from identity.services.enrollment.inputs import EnrollInputs
from identity.services.enrollment.report import EnrollmentFigures, summary_record, write_report
from identity.services.enrollment.writer import EnrollmentWriter
from identity.services.queue.loop import (
    EnrollSummary,
    JobResult,
    Outcome,
    process_queue,
    queue_jobs,
)


@dataclass
class EnrollmentRun:
    summary: EnrollSummary
    named_by: dict[tuple[str, str], str]  # (source path, external id) -> what named the person
    flagged: list[InconsistentPerson] = field(default_factory=list)

    def __json__(self) -> EnrollmentFigures:
        """The run's figures as `identity enroll --json` prints them."""
        return summary_record(self.summary, self.flagged)

    def write_report(self, path: Path) -> None:
        """One CSV row per input: its final state and reason (`identity enroll --report`)."""
        write_report(path, self.summary, self.named_by, self.flagged)


def enroll(
    app: App,
    inputs: EnrollInputs,
    workers: int = 0,
    subject: str | None = None,
    on_queued: Callable[[int], None] = lambda queued: None,
    on_result: Callable[[JobResult], None] = lambda result: None,
    analyse: Callable[[Iterator[str]], Iterator[tuple[str, Outcome]]] | None = None,
) -> EnrollmentRun:
    """Enroll every input; `on_queued` gets the number of jobs queued, `on_result` each job's outcome.

    `analyse`: how the images are detected and embedded (process_queue's; default: `workers` processes)."""
    dep = app.deployment(write=True)
    writer = EnrollmentWriter(dep, subject)  # a bad subject rule fails before anything is queued
    batch, queued = queue_jobs(app, inputs.specs)
    run = EnrollmentRun(EnrollSummary(batch=batch, queued=queued), named_by(inputs))
    for row in inputs.unqueued:
        run.summary.add_unqueued(row)
    on_queued(queued)
    process_queue(app, writer, batch, workers or dep.settings.worker_count, on_result, run.summary, analyse)
    run.flagged = inconsistent_persons(app, [r.external_id for r in run.summary.results if r.job_id is not None])
    return run


def named_by(inputs: EnrollInputs) -> dict[tuple[str, str], str]:
    named = dict(inputs.named_by)
    named.update({(row.source_path, row.external_id): row.named_by for row in inputs.unqueued})
    return named
