"""Store-wide commands: init and version."""

from __future__ import annotations

import dataclasses

import typer

import identity
from identity_cli.context import get_settings
from identity_cli.output import render


def register(app: typer.Typer) -> None:
    app.command("init")(init)
    app.command("version")(version)


def init(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Create or upgrade the database schema and the active model's vector collection (safe to re-run)."""
    from identity.faces import pack_spec
    from identity.services.init import initialize
    from identity.services.runtime import Runtime

    settings = get_settings()
    spec = pack_spec(settings.model)
    with Runtime.open(settings) as runtime:
        report = initialize(runtime, spec.model_id, spec.dim)
    render(dataclasses.asdict(report), as_json, title="identity init")


def version(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Print the versions of the package, the schema (database and code) and the active model pack."""
    from identity.errors import IdentityError
    from identity.faces import pack_spec
    from identity.store.sql.db import check_connection, make_engine
    from identity.store.sql.migrate import current_revision, head_revision

    settings = get_settings()
    try:
        engine = make_engine(settings.sql_url)
        check_connection(engine)
        db_schema = current_revision(engine) or "not initialised (run `identity init`)"
        engine.dispose()
    except IdentityError as exc:
        db_schema = f"unavailable: {exc}"
    info = {
        "identity": identity.__version__,
        "schema_code": head_revision(),
        "schema_database": db_schema,
        "model": pack_spec(settings.model).model_id,
    }
    render(info, as_json, title="identity version")
