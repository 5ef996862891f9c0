"""`identity config show`: the effective settings, secrets masked."""

from __future__ import annotations

import typer

from identity_cli.context import get_settings
from identity_cli.output import print_json, print_table

app = typer.Typer(no_args_is_help=True, help="Inspect configuration.")


@app.command("show")
def show(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Show every effective setting and where the config file is (secrets masked)."""
    described = get_settings().describe()
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
