"""`identity person ...`: the people the organization enrolls."""

from __future__ import annotations

import typer

from identity.serialize import to_json
from identity_cli.context import open_app
from identity_cli.options import JSON, parse_attrs
from identity_cli.output import render

app = typer.Typer(no_args_is_help=True, help="Add, list, show, update, merge and delete people.")
COLUMNS = ["external_id", "display_name", "faces", "attributes", "id"]


@app.command("add")
def add(
    external_id: str = typer.Option(
        ..., "--external-id", help="The organization's key (employee number, badge id...)."
    ),
    name: str | None = typer.Option(None, "--name", help="Display name."),
    attr: list[str] | None = typer.Option(None, "--attr", help="Attribute key=value (repeatable)."),
    as_json: bool = JSON,
) -> None:
    """Add a person."""
    from identity.services.records.persons import add_person

    with open_app() as core:
        record = add_person(core, external_id, name, parse_attrs(attr))
    render(to_json(record), as_json, title="person added")


@app.command("list")
def list_(
    query: str | None = typer.Option(None, "--query", "-q", help="Match external id, name or attributes."),
    limit: int = typer.Option(100, "--limit", help="At most this many."),
    as_json: bool = JSON,
) -> None:
    """List people (with their number of searchable faces under the active model)."""
    from identity.services.records.persons import list_people

    with open_app(read_only=True) as core:
        rows = [to_json(person) for person in list_people(core, query, limit).items]
    render(rows, as_json, COLUMNS, title=f"{len(rows)} people")


@app.command("show")
def show(person: str = typer.Argument(..., help="External id or uuid."), as_json: bool = JSON) -> None:
    """Show one person."""
    from identity.services.records.persons import show_person

    with open_app(read_only=True) as core:
        record = show_person(core, person)
    render(to_json(record), as_json, title=record.external_id)


@app.command("update")
def update(
    person: str = typer.Argument(..., help="External id or uuid."),
    name: str | None = typer.Option(None, "--name", help="New display name."),
    attr: list[str] | None = typer.Option(None, "--attr", help="Set attribute key=value (repeatable)."),
    unset: list[str] | None = typer.Option(None, "--unset", help="Remove attribute (repeatable)."),
    as_json: bool = JSON,
) -> None:
    """Change a person's name or attributes."""
    from identity.services.records.persons import update_person

    with open_app() as core:
        record = update_person(core, person, name, parse_attrs(attr), unset or [])
    render(to_json(record), as_json, title=record.external_id)


@app.command("merge")
def merge(
    keep: str = typer.Argument(..., help="The person who stays (external id or uuid)."),
    absorb: str = typer.Argument(..., help="The duplicate record whose faces move to KEEP and which is removed."),
    actor: str | None = typer.Option(None, "--actor", help="Who does this (recorded)."),
    as_json: bool = JSON,
) -> None:
    """Merge two records of one person: ABSORB's faces and search history move to KEEP."""
    from identity.services.curation.edits import merge_persons

    with open_app(deployment=True) as core:
        render(merge_persons(core, keep, absorb, actor), as_json, title="merged")


@app.command("delete")
def delete(
    person: str = typer.Argument(..., help="External id or uuid."),
    actor: str | None = typer.Option(None, "--actor", help="Who does this (recorded)."),
    as_json: bool = JSON,
) -> None:
    """Erase a person from every store (vectors purged from the files, rows deleted, search log redacted).

    An audit event remains without biometric or identifying data; a second delete answers
    "already erased", or finishes an erasure a failure left pending ("completed_pending": true).
    --json reports what was removed per store.
    """
    from identity.services.curation.edits import delete_person

    with open_app(deployment=True) as core:
        result = delete_person(core, person, actor)
    if as_json or result.already_deleted:
        render(result, as_json, title="already erased" if result.already_deleted else "erased")
        return
    removed = result.removed
    render(
        result.subject, False, title="erased (finished its pending erasure)" if result.completed_pending else "erased"
    )
    assert removed is not None  # an erasure not already done says what it removed
    stores = [{"store": "sql", **(removed.sql or {})}] + [
        {"store": f"vectors {name}", **to_json(report)} for name, report in (removed.vectors or {}).items()
    ]
    render([{"store": r.pop("store"), "removed": r} for r in stores], False, ["store", "removed"], title="removed")
