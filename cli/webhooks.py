"""`identity webhooks ...`: the completion webhooks' delivery log."""

from __future__ import annotations

import typer

from identity.serialize import to_json
from identity_cli.context import open_app
from identity_cli.options import JSON
from identity_cli.output import render

app = typer.Typer(no_args_is_help=True, help="Show the completion webhooks of queued enrollments.")


@app.command("list")
def list_(
    status: str | None = typer.Option(
        None, "--status", help="waiting/pending/delivered/failed/dropped (pending: being retried)."
    ),
    limit: int = typer.Option(100, "--limit", help="At most this many (newest first)."),
    as_json: bool = JSON,
) -> None:
    """List webhook deliveries, newest first, with each one's attempts and last error."""
    from identity.services.queue.webhooks import list_deliveries

    with open_app(read_only=True) as core:
        rows = [to_json(row) for row in list_deliveries(core, status, limit).items]
    render(
        rows,
        as_json,
        ["id", "batch", "status", "attempts", "last_status", "last_error", "next_attempt_at", "url"],
        title=f"{len(rows)} webhook deliveries",
    )
