"""`identity config show`: the effective settings, secrets masked."""

from __future__ import annotations

import typer

from identity_cli.context import get_settings, open_app
from identity_cli.output import print_json, print_table

app = typer.Typer(no_args_is_help=True, help="Inspect configuration.")


@app.command("show")
def show(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Show every effective setting and where the config file is (secrets masked), and the model in use."""
    from identity.errors import IdentityError
    from identity.app.registry import model_id_of

    settings = get_settings()
    described = settings.describe()
    try:
        with open_app() as core:
            choice = core.model_choice(ask_store=True)
        described["effective_model"] = model_id_of(choice, settings)
        described["effective_model_source"] = choice.describe()
    except IdentityError as exc:  # the settings are still worth showing when the store is down
        described["effective_model"] = settings.model
        described["effective_model_source"] = f"unknown: {exc}"
    if as_json:
        print_json(described)
        return
    rows = []
    for key, value in described.items():
        if isinstance(value, dict):
            rows.extend({"setting": f"{key}.{k}", "value": v} for k, v in value.items())
        else:
            rows.append({"setting": key, "value": value})
    print_table(rows, ["setting", "value"], title="identity configuration")
