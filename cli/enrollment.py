"""`identity enroll` and `identity worker`: bulk enrollment through the job queue."""

from __future__ import annotations

import signal
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from identity.errors import ExitCode, IdentityError
from identity.pathnames import shown
from identity_cli.context import open_app
from identity_cli.options import JSON
from identity_cli.output import err_console, print_json, print_table
from identity_cli.progress import outcome_progress

if TYPE_CHECKING:
    from identity.services.curation.consistency import InconsistentPerson
    from identity.services.queue.loop import EnrollSummary

WORKERS = typer.Option(0, "--workers", "-w", help="Worker processes (0: one per core).")


def register(app: typer.Typer) -> None:
    app.command("enroll")(enroll)
    app.command("worker")(worker)


def enroll(
    paths: list[Path] | None = typer.Argument(
        None, help="DIR with one sub-folder per person, or images with --person."
    ),
    manifest: Path | None = typer.Option(
        None, "--manifest", help="CSV: path, external_id[, display_name, attributes...]."
    ),
    person: str | None = typer.Option(None, "--person", help="Enroll the given images for this external id."),
    name: str | None = typer.Option(None, "--name", help="Display name for a new --person."),
    person_from: str | None = typer.Option(
        None,
        "--person-from",
        help="Which folder of DIR names the person: top (PERSON/.../photo), leaf (the folder "
        "holding the photo, e.g. DEPT/PERSON/photo) or depth:N. Needed when person folders hold sub-folders.",
    ),
    subject: str | None = typer.Option(
        None,
        "--subject",
        help="A photo with several faces enrolls: dominant (the largest, if twice the next; the "
        "default), central (nearest the centre, as eval picks), all, or reject.",
    ),
    workers: int = WORKERS,
    queue_only: bool = typer.Option(
        False, "--queue-only", help="Only queue the jobs; `identity worker` processes them."
    ),
    report: Path | None = typer.Option(None, "--report", help="Write one CSV row per entry: final state and reason."),
    as_json: bool = JSON,
) -> None:
    """Enroll photos: every entry ends enrolled, rejected, failed, duplicate, conflict or skipped."""
    from identity.fsutil import check_writable_file
    from identity.services.enrollment.inputs import UnclearInputs, choose_inputs
    from identity.services.enrollment.run import enroll as run
    from identity.services.enrollment.run import named_by
    from identity.services.queue.jobs import queue_enrollment
    from identity.services.queue.loop import EnrollSummary

    _check_subject(subject, queue_only)
    if report:
        check_writable_file(report, "report")  # before any work, not after hours of it
    try:
        inputs = choose_inputs(paths or [], person, name, manifest, person_from)
    except UnclearInputs as exc:
        raise typer.BadParameter(exc.message) from None
    for warning in inputs.warnings:
        err_console.print(shown(f"warning: {warning}"), highlight=False, markup=False)
    if not inputs.specs:
        first = inputs.unqueued[0] if inputs.unqueued else None
        raise IdentityError(
            "nothing to enroll: no image files found"
            + (f" ({len(inputs.unqueued)} entries, e.g. {first.source_path}: {first.reason})" if first else "")
        )

    if queue_only:
        with open_app() as core:
            batch, queued = queue_enrollment(core, inputs.specs)
        summary = EnrollSummary(batch=batch, queued=queued)
        for row in inputs.unqueued:
            summary.add_unqueued(row)
        _finish(summary, report, as_json, queued_only=True, named_by=named_by(inputs))
        return
    with open_app(deployment=True) as core, outcome_progress(None, "enrolling") as advance:
        done = run(core, inputs, workers, subject, on_queued=advance.set_total, on_result=advance)
    _finish(done.summary, report, as_json, named_by=done.named_by, flagged=done.flagged)


def _check_subject(subject: str | None, queue_only: bool) -> None:
    from identity.services.enrollment.writer import SUBJECT_RULES

    if subject is None:
        return
    if subject not in SUBJECT_RULES:
        raise typer.BadParameter(f"--subject {subject!r}: expected one of {', '.join(SUBJECT_RULES)}")
    if queue_only:
        raise typer.BadParameter(
            "--subject applies where jobs are processed: give it to `identity worker` (or set IDENTITY_ENROLL__SUBJECT)"
        )


def worker(
    workers: int = typer.Option(1, "--workers", "-w", help="Processes for the models in this worker."),
    drain: bool = typer.Option(
        False,
        "--drain",
        help="Exit once every queued job is done (waiting for jobs that other workers hold)"
        " instead of waiting for more.",
    ),
    poll: float = typer.Option(5.0, "--poll", help="Seconds between looks at an empty queue."),
    subject: str | None = typer.Option(
        None, "--subject", help="A photo with several faces enrolls: dominant (default), central, all or reject."
    ),
    as_json: bool = JSON,
) -> None:
    """Process queued enrollment jobs, then reindex jobs: any number with a Qdrant server, one at a time with the
    embedded store."""
    from identity.services.queue.worker import run_worker

    _check_subject(subject, queue_only=False)
    signal.signal(signal.SIGTERM, _stop)  # `docker stop`: hand claimed jobs back, as Ctrl-C does
    with open_app() as core, ExitStack() as stack:  # one App for the worker's lifetime
        summary = run_worker(
            core, workers, drain, poll, subject, on_open=lambda: stack.enter_context(outcome_progress(None, "worker"))
        )
    _finish(summary, None, as_json)


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _finish(
    summary: EnrollSummary,
    report: Path | None,
    as_json: bool,
    queued_only: bool = False,
    named_by: dict[tuple[str, str], str] | None = None,
    flagged: list[InconsistentPerson] | None = None,
) -> None:
    from identity.services.enrollment.report import summary_record, write_report

    named_by, flagged = named_by or {}, flagged or []
    if report:
        write_report(report, summary, named_by, flagged)
    data = summary_record(summary, flagged)
    if as_json:
        print_json(data)
    elif queued_only:
        err_console.print(
            f"queued {summary.queued} jobs in batch {summary.batch}; run `identity worker` to process them"
        )
    else:
        rows = [{"outcome": k, "images": v} for k, v in sorted(summary.counts.items())]
        print_table(
            rows,
            ["outcome", "images"],
            title=f"batch {summary.batch}: {summary.processed} images in {summary.seconds:.1f}s",
        )
        problems = [r for r in summary.results if r.outcome in ("failed", "conflict")][:10]
        for r in problems:
            err_console.print(shown(f"{r.outcome}: {r.source_path}: {r.reason}"), highlight=False, markup=False)
        copies = data.duplicates
        for copy in copies[:10]:
            err_console.print(
                shown(f"duplicate: {copy.path}: same file as {copy.duplicate_of} (enrolled once)"),
                highlight=False,
                markup=False,
            )
        if len(copies) > 10:
            err_console.print(f"... {len(copies) - 10} more copies (--json or --report lists them)", highlight=False)
        for p in flagged:
            err_console.print(
                shown(
                    f"inconsistent_person: {p.external_id}: only {p.agreeing_pairs_share:.0%} of the pairs of "
                    f"its {p.faces} faces match; one folder may hold several people (see --person-from)"
                ),
                highlight=False,
                markup=False,
            )
    if summary.counts.get("failed") or summary.counts.get("conflict"):
        raise typer.Exit(ExitCode.PARTIAL)
