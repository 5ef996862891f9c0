"""`identity keys ...`: API keys for `identity serve`, each with a role."""

from __future__ import annotations

import typer

from identity_cli.context import open_app
from identity_cli.options import ACTOR, JSON
from identity_cli.output import err_console, render

app = typer.Typer(no_args_is_help=True, help="Create, list and revoke API keys for the HTTP API.")


@app.command("create")
def create(
    name: str = typer.Argument(..., help="The key's name: the actor in the search log and audit events."),
    role: str = typer.Option(..., "--role", help="search, enroll, audit or admin."),
    expires_in: str | None = typer.Option(
        None,
        "--expires-in",
        help="When the key stops working: Nd, Nh or Nm "
        "from now (90d, 12h, 30m) or an ISO date/time (UTC unless zoned).",
    ),
    actor: str | None = ACTOR,
    as_json: bool = JSON,
) -> None:
    """Create a key and print it once (only a salted hash of it is stored)."""
    from identity.services.access.keys import create_key, parse_expiry

    expires_at = parse_expiry(expires_in) if expires_in is not None else None  # a bad format fails before any write
    with open_app() as core:
        created = create_key(core, name, role, actor, expires_at)
    render(created, as_json, title=f"API key {name!r} ({role})")
    if not as_json:
        err_console.print("the key is shown this once: store it now", highlight=False)


@app.command("list")
def list_(as_json: bool = JSON) -> None:
    """Every key: name, role, when created, last used, when it expires and revoked (never the key)."""
    from identity.services.access.keys import list_keys

    with open_app(read_only=True) as core:
        keys = list_keys(core).items
    render(
        keys,
        as_json,
        ["name", "role", "key_id", "created_at", "last_used_at", "expires_at", "revoked_at"],
        title=f"{len(keys)} API keys",
    )


@app.command("revoke")
def revoke(
    name: str = typer.Argument(..., help="The key's name."), actor: str | None = ACTOR, as_json: bool = JSON
) -> None:
    """Revoke a key: requests with it get 401 from then on, and its review UI sessions end."""
    from identity.services.access.keys import revoke_key

    with open_app(read_only=True) as core:
        render(revoke_key(core, name, actor), as_json, title="revoked")
