"""`identity enroll` and `identity worker`: bulk enrollment through the job queue."""

from __future__ import annotations

import csv
import signal
import time
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional

import typer

from identity.errors import ExitCode, IdentityError
from identity_cli.context import get_settings
from identity_cli.options import JSON
from identity_cli.output import err_console, print_json, print_table
from identity_cli.progress import outcome_progress

if TYPE_CHECKING:
    from identity.services.enroll import EnrollSummary

WORKERS = typer.Option(0, "--workers", "-w", help="Worker processes (0: one per core).")


def register(app: typer.Typer) -> None:
    app.command("enroll")(enroll)
    app.command("worker")(worker)


def enroll(
    paths: Optional[List[Path]] = typer.Argument(None, help="DIR with one sub-folder per person, or images with --person."),
    manifest: Optional[Path] = typer.Option(None, "--manifest", help="CSV: path, external_id[, display_name, attributes...]."),
    person: Optional[str] = typer.Option(None, "--person", help="Enroll the given images for this external id."),
    name: Optional[str] = typer.Option(None, "--name", help="Display name for a new --person."),
    workers: int = WORKERS,
    queue_only: bool = typer.Option(False, "--queue-only", help="Only queue the jobs; `identity worker` processes them."),
    report: Optional[Path] = typer.Option(None, "--report", help="Write one CSV row per image: final state and reason."),
    as_json: bool = JSON,
) -> None:
    """Enroll photos: every image ends enrolled, rejected, failed, duplicate or conflict."""
    from identity.services import enroll_inputs
    from identity.services.deployment import open_deployment
    from identity.services.enroll import EnrollmentWriter, EnrollSummary, process_queue, queue_jobs
    from identity.services.runtime import Runtime
    from identity.store.sql.migrate import upgrade

    paths = paths or []
    if sum(bool(x) for x in (manifest, person, paths and not person)) != 1:
        raise typer.BadParameter("give one of: DIR, --manifest FILE, or --person ID IMG...")
    if person and not paths:
        raise typer.BadParameter("--person needs at least one image")
    if not person and len(paths) > 1:
        raise typer.BadParameter("give one DIR (or use --person ID IMG...)")
    if manifest:
        specs = list(enroll_inputs.from_manifest(manifest))
    elif person:
        specs = list(enroll_inputs.from_files(person, paths, name))
    else:
        specs = list(enroll_inputs.from_directory(paths[0]))
    if not specs:
        raise IdentityError("nothing to enroll: no image files found")

    settings = get_settings()
    if queue_only:
        with Runtime.open(settings) as runtime:
            upgrade(runtime.engine)
            batch, queued = queue_jobs(runtime, specs)
        _finish(EnrollSummary(batch=batch, queued=queued), report, as_json, queued_only=True)
        return
    with open_deployment(settings) as dep:
        batch, queued = queue_jobs(dep.runtime, specs)
        summary = EnrollSummary(batch=batch, queued=queued)
        writer = EnrollmentWriter(dep.runtime, dep.index, dep.model.id)
        with outcome_progress(queued, "enrolling") as advance:
            process_queue(dep.runtime, writer, batch, workers or settings.worker_count, advance, summary)
    _finish(summary, report, as_json)


def worker(
    workers: int = typer.Option(1, "--workers", "-w", help="Processes for the models in this worker."),
    drain: bool = typer.Option(False, "--drain", help="Exit when the queue is empty instead of waiting for more."),
    poll: float = typer.Option(5.0, "--poll", help="Seconds between looks at an empty queue."),
    as_json: bool = JSON,
) -> None:
    """Process queued enrollment jobs: any number with a Qdrant server, one at a time with the embedded store."""
    from identity.services.deployment import open_deployment
    from identity.services.enroll import EnrollmentWriter, EnrollSummary, process_queue

    settings = get_settings()
    summary = EnrollSummary(batch="*")
    signal.signal(signal.SIGTERM, _stop)  # `docker stop`: hand claimed jobs back, as Ctrl-C does
    advance = None
    with ExitStack() as stack:
        idle = False
        while not (drain and idle):
            with open_deployment(settings) as dep:  # reopened when `identity reindex` switches the model
                if advance is None:  # the bar starts once the store opened, so a refusal stays one line
                    advance = stack.enter_context(outcome_progress(None, "worker"))
                writer = EnrollmentWriter(dep.runtime, dep.index, dep.model.id)
                while dep.follows_store():
                    before = summary.processed
                    process_queue(dep.runtime, writer, None, workers, advance, summary)
                    idle = summary.processed == before
                    if drain and idle:
                        break
                    if idle:
                        time.sleep(poll)
    _finish(summary, None, as_json)


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _finish(summary: "EnrollSummary", report: Optional[Path], as_json: bool, queued_only: bool = False) -> None:
    if report:
        with report.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["job_id", "source_path", "external_id", "outcome", "reason", "faces_found"])
            for r in summary.results:
                writer.writerow([r.job_id, r.source_path, r.external_id, r.outcome, r.reason or "", r.faces_found])
    data = {
        "batch": summary.batch, "queued": summary.queued, "processed": summary.processed,
        "counts": summary.counts, "faces_enrolled": summary.faces_enrolled,
        "seconds": round(summary.seconds, 2),
        "images_per_second": round(summary.processed / summary.seconds, 2) if summary.seconds else None,
    }
    if as_json:
        print_json(data)
    elif queued_only:
        err_console.print(f"queued {summary.queued} jobs in batch {summary.batch}; run `identity worker` to process them")
    else:
        rows = [{"outcome": k, "images": v} for k, v in sorted(summary.counts.items())]
        print_table(rows, ["outcome", "images"], title=f"batch {summary.batch}: {summary.processed} images "
                    f"in {summary.seconds:.1f}s")
        problems = [r for r in summary.results if r.outcome in ("failed", "conflict")][:10]
        for r in problems:
            err_console.print(f"{r.outcome}: {r.source_path}: {r.reason}", highlight=False, markup=False)
    if summary.counts.get("failed") or summary.counts.get("conflict"):
        raise typer.Exit(ExitCode.PARTIAL)
