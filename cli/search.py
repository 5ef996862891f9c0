"""`identity search`, `identity searches list` and `identity audit`."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import typer
from rich.markup import escape

from identity.errors import ExitCode
from identity.pathnames import shown
from identity.serialize import to_json
from identity_cli.context import open_app
from identity_cli.options import JSON, parse_filters
from identity_cli.output import console, err_console, print_json, print_table, render

searches_app = typer.Typer(no_args_is_help=True, help="The append-only log of searches.")
ACTOR = typer.Option(None, "--actor", help="Who is asking (recorded); default: the OS user.")


def register(app: typer.Typer) -> None:
    app.command("search")(search)
    app.command("audit")(audit)
    app.add_typer(searches_app, name="searches")


def search(
    # readable=False: an unreadable file is reported with the others, not a usage error that stops all.
    images: list[Path] = typer.Argument(..., readable=False, help="Photos to search."),
    top_k: int = typer.Option(5, "--top-k", "-k", min=1, max=100, help="Persons per face."),
    threshold: float | None = typer.Option(
        None,
        "--threshold",
        help="Decision threshold on the face's decision_score (see --json; default: calibrated, else the pack's).",
    ),
    min_score: float | None = typer.Option(None, "--min-score", help="Hide candidates scoring below this (-1 to 1)."),
    filters: list[str] | None = typer.Option(
        None,
        "--filter",
        help="Only persons whose attribute KEY=VALUE (repeatable: every key must match, "
        "a key given twice matches either value).",
    ),
    all_faces: bool = typer.Option(True, "--all-faces/--largest-face", help="Search every face, or the largest only."),
    actor: str | None = ACTOR,
    as_json: bool = JSON,
) -> None:
    """Who is in these photos: top-k persons per face, and a match/unknown decision (not_searched: too small)."""
    from identity.services.enrollment.duplicates import unique_files
    from identity.services.search.identify import SearchFailure, SearchOptions, search_one

    options = SearchOptions(
        top_k=top_k,
        threshold=threshold,
        min_score=min_score,
        filters=parse_filters(filters),
        largest_face_only=not all_faces,
        actor=actor,
    )
    results, errors, code = [], [], ExitCode.OK
    paths, duplicates = unique_files([str(image) for image in images])  # a copy is searched (and logged) once
    with open_app(read_only=True, deployment=True) as core:
        for path in paths:
            outcome = search_one(core, path, options)
            if isinstance(outcome, SearchFailure):
                errors.append(to_json(outcome))
                code = ExitCode.ERROR if ExitCode.ERROR in (code, outcome.exit_code) else outcome.exit_code
            else:
                results.append(outcome)
    for warning in dict.fromkeys(w for result in results for w in result.warnings):  # once, not per image
        err_console.print(f"[yellow]warning:[/yellow] {escape(shown(warning))}", highlight=False)
    if as_json:
        print_json(
            {"results": [to_json(r) for r in results], "errors": errors, "duplicates": [to_json(d) for d in duplicates]}
        )
    else:
        for result in results:
            _show(result)
        for error in errors:
            err_console.print(f"[red]error:[/red] {escape(shown(error['error']))}", highlight=False)
        for copy in duplicates:
            err_console.print(
                shown(f"duplicate: {copy.path}: same file as {copy.duplicate_of} (searched once)"),
                highlight=False,
                markup=False,
            )
    if code:
        raise typer.Exit(code)


def _show(result) -> None:
    console.print(
        f"[bold]{escape(shown(result.path))}[/bold]  model {result.model}, threshold {result.threshold.value:.3f} "
        f"on the {result.threshold.rule} score ({result.threshold.source})",
        highlight=False,
    )
    for face in result.faces:
        if face.reason is not None:  # not searched: no candidates to list, the reason instead
            console.print(
                f"face {face.face_index} at {[int(v) for v in face.bbox]}: [dim]{face.decision}[/dim]: "
                f"{escape(face.reason)}",
                highlight=False,
            )
            continue
        colour = "green" if face.decision == "match" else "yellow"
        rows = [
            {
                "rank": c.rank,
                "score": c.score,
                "faces": c.matched_faces,
                "external_id": c.person.external_id,
                "name": c.person.display_name,
                "attributes": c.person.attributes,
            }
            for c in face.candidates
        ]
        scored = "" if face.decision_score is None else f" (decision score {face.decision_score:.3f})"
        title = f"face {face.face_index} at {[int(v) for v in face.bbox]}: [{colour}]{face.decision}[/{colour}]{scored}"
        print_table(rows, ["rank", "score", "faces", "external_id", "name", "attributes"], title=title)


@searches_app.command("list")
def list_searches(
    person: str | None = typer.Option(None, "--person", help="Only searches that returned this person."),
    since: datetime | None = typer.Option(None, "--since", help="Only searches at or after this time (UTC)."),
    limit: int = typer.Option(100, "--limit", help="At most this many, newest first."),
    decision: str | None = typer.Option(
        None,
        "--decision",
        help="Only searches where some face matched (match), or none did (unknown; faces not searched included).",
    ),
    review: str | None = typer.Option(
        None, "--review", help="Only searches with a match that is confirmed, rejected, or unreviewed."
    ),
    as_json: bool = JSON,
) -> None:
    """List logged searches, newest first."""
    from identity.services.search.log import list_searches as query

    with open_app(read_only=True) as core:
        rows = query(core, person, since, limit, decision=decision, review=review).items
    render(
        rows,
        as_json,
        ["when", "actor", "query_name", "faces", "not_searched", "best", "decision", "matched", "review", "search_id"],
        title=f"{len(rows)} searches",
    )


def audit(
    person: str = typer.Argument(..., help="External id or uuid."),
    html: Path | None = typer.Option(
        None, "--html", help="Also write a self-contained HTML page with face thumbnails."
    ),
    actor: str | None = ACTOR,
    as_json: bool = JSON,
) -> None:
    """What is held on a person, which searches matched them, look-alikes and outlier faces."""
    from identity.render.audit_html import render_audit_html
    from identity.services.records.audit import audit_person

    with open_app(read_only=True, deployment=True) as core:
        report = audit_person(core, person, actor)
        if html:
            html.write_text(render_audit_html(core, report), encoding="utf-8")
    if as_json:
        print_json(report)
        return
    p = report.person
    console.print(
        f"[bold]{escape(shown(p.display_name or p.external_id))}[/bold]  external id "
        f"{escape(shown(p.external_id))}  "
        f"uuid {p.id}  attributes {escape(shown(p.attributes))}",
        highlight=False,
    )
    faces = [
        {**to_json(f), "image": Path(f.source_path).name, "similarity": f.similarity_to_own_template}
        for f in report.faces
    ]
    print_table(
        faces, ["face_id", "status", "image", "det_score", "blur", "similarity", "outlier"], title=f"{len(faces)} faces"
    )
    searches = [to_json(s) for s in report.searches]
    print_table(
        searches,
        ["when", "actor", "rank", "score", "decision", "review", "search_id"],
        title=f"{len(report.searches)} searches returned this person",
    )
    print_table(
        [{"external_id": other.person.external_id, "score": other.score} for other in report.lookalikes],
        ["external_id", "score"],
        title=f"look-alikes (margin to threshold {report.lookalike_margin})",
    )
    if html:
        err_console.print(f"wrote {html}")
