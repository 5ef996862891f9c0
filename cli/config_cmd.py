"""`identity config show`: the effective settings, secrets masked."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from identity_cli.context import get_settings, open_app
from identity_cli.output import print_json, print_table

if TYPE_CHECKING:
    from identity.config import Settings

app = typer.Typer(no_args_is_help=True, help="Inspect configuration.")


@app.command("show")
def show(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Show every effective setting and where the config file is (secrets masked), and the model in use."""
    settings = get_settings()
    described = settings.describe()
    described["effective_model"], described["effective_model_source"] = _effective_model(settings)
    if as_json:
        print_json(described)
        return
    rows: list[dict[str, Any]] = []
    for key, value in described.items():
        if isinstance(value, dict):
            rows.extend({"setting": f"{key}.{k}", "value": v} for k, v in value.items())
        else:
            rows.append({"setting": key, "value": value})
    print_table(rows, ["setting", "value"], title="identity configuration")


def _effective_model(settings: Settings) -> tuple[str | None, str]:
    """The model in use and why; the store is read as it is (showing settings creates no store and no table)."""
    from identity.app.registry import shown_model
    from identity.app.schema import AS_IS

    with open_app(read_only=True, schema=AS_IS) as core:
        return shown_model(core)
