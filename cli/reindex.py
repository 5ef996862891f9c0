"""`identity reindex --model NEW`: re-embed every face with another model pack, then switch to it."""

from __future__ import annotations

import typer

from identity.errors import ExitCode
from identity.serialize import to_json
from identity_cli.context import open_app
from identity_cli.options import JSON
from identity_cli.output import console, err_console, print_json, print_table
from identity_cli.progress import outcome_progress


def register(app: typer.Typer) -> None:
    app.command("reindex")(reindex)


def reindex(
    model: str = typer.Option(
        ...,
        "--model",
        "-m",
        help="The pack to switch to: a built-in (dlib-resnet@1) or a local one (NAME or NAME@VERSION).",
    ),
    workers: int = typer.Option(0, "--workers", "-w", help="Worker processes (0: one per core)."),
    force: bool = typer.Option(
        False, "--force", help="Switch even if some faces failed; allow an unpromoted local pack."
    ),
    actor: str | None = typer.Option(None, "--actor", help="Who does this (recorded in the audit log)."),
    as_json: bool = JSON,
) -> None:
    """Re-embed every indexed face with MODEL and make it the active model once all are done.

    Search keeps using the current model until the switch. Stopped runs resume where they
    left off; the old model's vectors are kept, so `identity reindex --model OLD` rolls back.
    Exits 5 if some faces failed (the switch then waits for a re-run, or --force).
    """
    from identity.services.models.reindex import reindex as run

    with (
        open_app() as core,
        outcome_progress(None, "re-indexing", ("reindexed", "rejected", "failed"), unit="faces") as tracker,
    ):
        summary = run(core, model, workers, force, actor, on_plan=tracker.set_total, on_face=tracker)
    if as_json:
        print_json(to_json(summary))
    else:
        for warning in summary.warnings:
            err_console.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)
        if summary.message:
            console.print(summary.message, highlight=False)
        else:
            rows = [{"model": m, "indexed faces": n} for m, n in summary.indexed.items()]
            print_table(
                rows,
                ["model", "indexed faces"],
                title=f"{summary.faces} faces: {summary.reindexed} re-indexed, {summary.rejected} rejected, "
                f"{summary.skipped_already_done} already done, {len(summary.failed)} failed "
                f"in {summary.seconds:.1f}s",
            )
            for failure in summary.failed[:10]:
                err_console.print(f"failed: face {failure.face_id}: {failure.reason}", highlight=False, markup=False)
            active = summary.model_after if summary.switched else summary.model_before
            console.print(
                f"active model: {active}"
                + ("" if summary.switched else " (not switched: re-run after fixing the failures, or pass --force)"),
                highlight=False,
            )
    if summary.failed and not summary.switched:
        raise typer.Exit(ExitCode.PARTIAL)
