"""`identity face ...`: move or delete one enrolled face."""

from __future__ import annotations

import typer

from identity_cli.context import open_app
from identity_cli.options import ACTOR, JSON
from identity_cli.output import render

app = typer.Typer(no_args_is_help=True, help="Move or delete single enrolled faces.")


@app.command("move")
def move(
    face: str = typer.Argument(..., help="Face id (from `identity audit`)."),
    to: str = typer.Option(..., "--to", help="The person the face belongs to (external id or uuid)."),
    actor: str | None = ACTOR,
    as_json: bool = JSON,
) -> None:
    """Re-label a face as another person's."""
    from identity.services.curation.edits import move_face

    with open_app(deployment=True) as core:
        render(move_face(core, face, to, actor), as_json, title="moved")


@app.command("delete")
def delete(face: str = typer.Argument(..., help="Face id."), actor: str | None = ACTOR, as_json: bool = JSON) -> None:
    """Delete one face and its vector."""
    from identity.services.curation.edits import delete_face

    with open_app(deployment=True) as core:
        render(delete_face(core, face, actor), as_json, title="deleted")
