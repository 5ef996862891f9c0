"""`identity verify A B` / `identity verify A --person P`: one face against another, or against a person (1:1)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from identity.errors import InvalidArgument
from identity.pathnames import shown
from identity_cli.context import open_app
from identity_cli.options import ACTOR, JSON
from identity_cli.output import console, err_console, print_json


def register(app: typer.Typer) -> None:
    app.command("verify")(verify)


def verify(
    image_a: Path = typer.Argument(..., readable=False, help="The photo whose face is verified."),
    image_b: Path | None = typer.Argument(None, readable=False, help="A second photo (or give --person)."),
    person: str | None = typer.Option(None, "--person", help="Verify against this person (external id or uuid)."),
    face_index_a: int | None = typer.Option(
        None, "--face-index-a", min=0, help="Which face of the first photo (identity faces detect); default: largest."
    ),
    face_index_b: int | None = typer.Option(
        None, "--face-index-b", min=0, help="Which face of the second photo; default: largest."
    ),
    actor: str | None = ACTOR,
    as_json: bool = JSON,
) -> None:
    """Are these two faces one person, or is this face that person? A match/no_match at the 1:1 threshold."""
    from identity.services.search.verify import VerifyImage
    from identity.services.search.verify import verify as verify_faces

    if (image_b is None) == (person is None):
        raise InvalidArgument("give a second photo or --person, one of them")
    if face_index_b is not None and image_b is None:
        raise InvalidArgument("--face-index-b goes with a second photo")
    second = VerifyImage(str(image_b), face_index_b) if image_b is not None else None
    with open_app(read_only=True, deployment=True) as core:
        result = verify_faces(core, VerifyImage(str(image_a), face_index_a), second, person, actor)
    for warning in result.warnings:
        err_console.print(f"[yellow]warning:[/yellow] {escape(shown(warning))}", highlight=False)
    if as_json:
        print_json(result)
        return
    colour = "green" if result.decision == "match" else "yellow"
    against = (
        f"{shown(result.face_b.image)} face {result.face_b.face_index}"
        if result.face_b
        else f"person {result.person.external_id if result.person else '?'} (template)"
    )
    console.print(
        f"{escape(shown(result.face_a.image))} face {result.face_a.face_index} vs {escape(against)}: "
        f"[{colour}]{result.decision}[/{colour}] score {result.score:.3f}, threshold {result.threshold:.3f} "
        f"({escape(result.threshold_source)})",
        highlight=False,
    )
    if result.best_face:
        console.print(f"best enrolled face {result.best_face.face_id}: {result.best_face.score:.3f}", highlight=False)
