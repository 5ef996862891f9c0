"""What an enrollment run reports: the per-input CSV (`identity enroll --report`) and the summary record.

The CLI prints them; a Python caller or the HTTP API gets the same rows and figures.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from identity.services.curation.consistency import InconsistentPerson
from identity.services.enrollment.duplicates import Duplicate
from identity.services.queue.loop import EnrollSummary

REPORT_COLUMNS = ["job_id", "source_path", "external_id", "outcome", "reason", "faces_found", "named_by", "flags"]


def report_rows(
    summary: EnrollSummary, named_by: dict[tuple[str, str], str], flagged: Sequence[InconsistentPerson]
) -> list[list[Any]]:
    """One row per input, in REPORT_COLUMNS order; inputs that never became jobs leave the job fields empty."""
    flags = {p.external_id: p.flag for p in flagged}
    rows = []
    for r in summary.results:
        queued = r.job_id is not None
        rows.append(
            [
                r.job_id if queued else "",
                r.source_path,
                r.external_id,
                r.outcome,
                r.reason or "",
                r.faces_found if queued else "",
                named_by.get((r.source_path, r.external_id), ""),
                flags.get(r.external_id, ""),
            ]
        )
    return rows


def write_report(
    path: Path, summary: EnrollSummary, named_by: dict[tuple[str, str], str], flagged: Sequence[InconsistentPerson]
) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(REPORT_COLUMNS)
        writer.writerows(report_rows(summary, named_by, flagged))


@dataclass(frozen=True)
class EnrollmentFigures:
    """The run's figures as `identity enroll --json` prints them."""

    batch: str
    queued: int
    processed: int
    counts: dict[str, int]
    faces_enrolled: int
    seconds: float
    images_per_second: float | None
    inconsistent_persons: list[InconsistentPerson]
    duplicates: list[Duplicate]  # inputs with the bytes of an earlier one, enrolled once


def summary_record(summary: EnrollSummary, flagged: Sequence[InconsistentPerson]) -> EnrollmentFigures:
    return EnrollmentFigures(
        summary.batch,
        summary.queued,
        summary.processed,
        summary.counts,
        summary.faces_enrolled,
        round(summary.seconds, 2),
        round(summary.processed / summary.seconds, 2) if summary.seconds else None,
        list(flagged),
        duplicates(summary),
    )


def duplicates(summary: EnrollSummary) -> list[Duplicate]:
    """The inputs left unprocessed because an earlier path of the run holds the same bytes."""
    return [Duplicate(r.source_path, r.duplicate_of) for r in summary.results if r.duplicate_of]
