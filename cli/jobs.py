"""`identity jobs ...`: the enrollment queue."""

from __future__ import annotations

from typing import Optional

import typer

from identity_cli.context import get_settings
from identity_cli.options import JSON
from identity_cli.output import err_console, render

app = typer.Typer(no_args_is_help=True, help="Inspect and retry enrollment jobs.")


@app.command("list")
def list_(
    state: Optional[str] = typer.Option(None, "--state", help="queued/running/done/failed, or an outcome (rejected, duplicate, ...)."),
    batch: Optional[str] = typer.Option(None, "--batch", help="Only this batch."),
    limit: int = typer.Option(100, "--limit", help="At most this many (newest first)."),
    as_json: bool = JSON,
) -> None:
    """List jobs, newest first."""
    from identity.services.runtime import Runtime
    from identity.store.sql import jobs

    with Runtime.open(get_settings()) as runtime, runtime.sessions() as session:
        rows = [jobs.job_record(j) for j in jobs.list_jobs(session, state, batch, limit)]
    render(rows, as_json, ["id", "batch", "status", "outcome", "reason", "external_id", "source_path"],
           title=f"{len(rows)} jobs")


@app.command("retry")
def retry(
    failed: bool = typer.Option(True, "--failed/--all", help="Retry failed jobs only, or failed and rejected."),
    batch: Optional[str] = typer.Option(None, "--batch", help="Only this batch."),
) -> None:
    """Queue failed jobs again (then run `identity worker --drain`)."""
    from identity.services.runtime import Runtime
    from identity.store.sql import jobs
    from identity.store.sql.db import transaction

    with Runtime.open(get_settings()) as runtime, transaction(runtime.sessions) as session:
        count = jobs.retry(session, failed_only=failed, batch=batch)
    err_console.print(f"queued {count} jobs again; run `identity worker --drain` to process them")
