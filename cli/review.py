"""`identity review ...` (confirm or reject a search's match) and `identity report reviews`."""

from __future__ import annotations

from datetime import datetime

import typer

from identity.serialize import to_json
from identity_cli.context import open_app
from identity_cli.options import ACTOR, JSON
from identity_cli.output import console, err_console, print_json, print_table, render

app = typer.Typer(
    no_args_is_help=True, help="Confirm or reject the matches searches made; list them with their reviews."
)
report_app = typer.Typer(no_args_is_help=True, help="Reports over the deployment's records.")

NOTE = typer.Option(None, "--note", help="Why (kept with the review; dropped if the person is erased).")
PERSON = typer.Option(
    None,
    "--person",
    help="Which candidate of that face (external id or uuid); default: the first, the one the decision named.",
)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="review")
    root.add_typer(report_app, name="report")


@app.command("list")
def list_(
    person: str | None = typer.Option(None, "--person", help="Only faces whose first candidate was this person."),
    unreviewed: bool = typer.Option(False, "--unreviewed", help="Only faces not reviewed yet."),
    decision: str | None = typer.Option(None, "--decision", help="Only faces decided match, or unknown."),
    since: datetime | None = typer.Option(None, "--since", help="Only searches at or after this time (UTC)."),
    limit: int = typer.Option(100, "--limit", min=1, help="At most this many, newest first."),
    as_json: bool = JSON,
) -> None:
    """Searched faces, newest first: the person each decision named and the review in force on it."""
    from identity.services.review.matches import list_reviews

    with open_app(read_only=True) as core:
        rows = list_reviews(core, person, unreviewed, decision, since, limit)
    if as_json:
        print_json(rows)
        return
    print_table(
        [to_json(row) for row in rows],
        ["when", "search_id", "face_index", "person", "score", "decision", "review", "reviewed_by"],
        title=f"{len(rows)} searched faces",
    )


SEARCH_ID = typer.Argument(..., help="The search (identity searches list).")
FACE_INDEX = typer.Argument(..., help="Which face of it (0 = the first).")


@app.command("confirm")
def confirm(
    search_id: str = SEARCH_ID,
    face_index: int = FACE_INDEX,
    person: str | None = PERSON,
    note: str | None = NOTE,
    actor: str | None = ACTOR,
    as_json: bool = JSON,
) -> None:
    """The face is that person: the match was right."""
    _review(search_id, face_index, "confirmed", person, note, actor, None, False, as_json)


@app.command("reject")
def reject(
    search_id: str = SEARCH_ID,
    face_index: int = FACE_INDEX,
    person: str | None = PERSON,
    note: str | None = NOTE,
    actual: str | None = typer.Option(
        None, "--actual", help="Who the face really is: an enrolled person (external id or uuid)."
    ),
    enroll: bool = typer.Option(
        False, "--enroll", help="Also enroll the searched face (its stored thumbnail) for the --actual person."
    ),
    actor: str | None = ACTOR,
    as_json: bool = JSON,
) -> None:
    """The face is not that person; searching the same photo again never matches them."""
    _review(search_id, face_index, "rejected", person, note, actor, actual, enroll, as_json)


def _review(
    search_id: str,
    face_index: int,
    verdict: str,
    person: str | None,
    note: str | None,
    actor: str | None,
    actual: str | None,
    enroll: bool,
    as_json: bool,
) -> None:
    from identity.services.review.matches import review_match

    with open_app() as core:
        review = review_match(core, search_id, face_index, verdict, person, note, actor, actual, enroll)
    negation = "" if verdict == "confirmed" else "not "
    title = f"{verdict}: face {face_index} of search {search_id} is {negation}{review.person}"
    if review.actual_person:
        title += f"; it is {review.actual_person}"
    if review.enrolled:
        title += f" (enrollment: {review.enrolled}{': ' + review.enroll_reason if review.enroll_reason else ''})"
    if review.superseded_by:
        title += f"; supersedes {review.superseded} by {review.superseded_by} at {review.superseded_at}"
    render(review, as_json, title=title)


@report_app.command("reviews")
def reviews(
    since: datetime | None = typer.Option(None, "--since", help="Only searches at or after this time (UTC)."),
    warn_below: float | None = typer.Option(
        None,
        "--warn-below",
        help="Warn when precision is below this (default: settings review.precision_warning, 0.95).",
    ),
    as_json: bool = JSON,
) -> None:
    """How often reviewers confirmed the `match` decisions: the deployment's precision, with a 95% interval."""
    from identity.services.review.matches import report_reviews

    with open_app(read_only=True) as core:
        report = report_reviews(core, since, warn_below)
    for warning in report.warnings:
        err_console.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)
    if as_json:
        print_json(report)
        return
    rows = [
        {**to_json(row), "model": row.model or "all", "interval": _interval(row.interval)}
        for row in [*report.groups, report.overall]
    ]
    print_table(
        rows,
        ["model", "threshold", "matches", "reviewed", "confirmed", "rejected", "precision", "interval"],
        title="match decisions confirmed by review" + (f" since {report.since}" if report.since else ""),
    )
    console.print(f"warning level: precision below {report.warn_below:.0%}", highlight=False)


def _interval(interval: tuple[float, float] | None) -> str | None:
    return None if interval is None else f"{interval[0]:.3f} to {interval[1]:.3f}"
