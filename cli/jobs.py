"""`identity jobs ...`: the enrollment queue."""

from __future__ import annotations

import typer

from identity.errors import ExitCode
from identity.serialize import to_json
from identity_cli.context import open_app
from identity_cli.options import JSON
from identity_cli.output import err_console, print_json, render

app = typer.Typer(no_args_is_help=True, help="Inspect, retry and cancel enrollment jobs.")


@app.command("list")
def list_(
    state: str | None = typer.Option(
        None, "--state", help="queued/running/done/failed/cancelled, or an outcome (rejected, duplicate, ...)."
    ),
    batch: str | None = typer.Option(None, "--batch", help="Only this batch."),
    limit: int = typer.Option(100, "--limit", help="At most this many (newest first)."),
    as_json: bool = JSON,
) -> None:
    """List jobs, newest first."""
    from identity.services.queue.jobs import list_jobs

    with open_app(read_only=True) as core:
        rows = [to_json(job) for job in list_jobs(core, state, batch, limit).items]
    render(
        rows,
        as_json,
        ["id", "batch", "status", "outcome", "reason", "attempts", "external_id", "source_path"],
        title=f"{len(rows)} jobs",
    )


@app.command("retry")
def retry(
    failed: bool = typer.Option(True, "--failed/--all", help="Retry failed jobs only, or failed and rejected."),
    cancelled: bool = typer.Option(False, "--cancelled", help="Also queue cancelled jobs again."),
    batch: str | None = typer.Option(None, "--batch", help="Only this batch."),
) -> None:
    """Queue failed jobs again (then run `identity worker --drain`)."""
    from identity.services.queue.jobs import retry_jobs

    with open_app(read_only=True) as core:
        count = retry_jobs(core, failed_only=failed, batch=batch, cancelled=cancelled)
    err_console.print(f"queued {count} jobs again; run `identity worker --drain` to process them")


@app.command("cancel")
def cancel(
    job_ids: list[int] | None = typer.Argument(None, help="Ids of the jobs to cancel (see `identity jobs list`)."),
    state: str | None = typer.Option(None, "--state", help="Only jobs in this state: queued, running or failed."),
    batch: str | None = typer.Option(None, "--batch", help="Only this batch."),
    force: bool = typer.Option(
        False,
        "--force",
        help="Also cancel running jobs under a live lease; their worker then discards what it wrote for them.",
    ),
    as_json: bool = JSON,
) -> None:
    """Take jobs out of the queue for good: no worker claims them, `jobs retry` skips them (unless --cancelled).

    Give job ids, --state, --batch, or several (they narrow each other). Done jobs stay done.
    """
    from identity.services.queue.jobs import CANCELLABLE_STATES, cancel_jobs

    if not (job_ids or state or batch):
        raise typer.BadParameter("give job ids, --state or --batch (cancelling every job takes --state)")
    if state is not None and state not in CANCELLABLE_STATES:
        raise typer.BadParameter(
            f"{state!r}: only queued, running or failed jobs can be cancelled", param_hint="--state"
        )
    with open_app(read_only=True) as core:
        done = cancel_jobs(core, job_ids or (), state, batch, force)
    if as_json:
        print_json(to_json(done))
    else:
        err_console.print(f"cancelled {len(done.cancelled)} jobs")
    if done.running_left_alone:
        err_console.print(
            f"{len(done.running_left_alone)} running jobs under a live lease left alone "
            f"({_ids(done.running_left_alone)}): add --force to cancel them too"
        )
    if done.not_cancellable:
        err_console.print(f"not queued, running or failed, so not cancelled: {_ids(done.not_cancellable)}")
    if done.running_left_alone or done.not_cancellable:
        raise typer.Exit(ExitCode.ERROR)


def _ids(ids: list[int], shown: int = 10) -> str:
    more = f" and {len(ids) - shown} more" if len(ids) > shown else ""
    return ", ".join(map(str, ids[:shown])) + more
