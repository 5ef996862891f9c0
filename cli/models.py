"""`identity models ...`: the face model packs and their weights."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

import typer

from identity_cli.context import get_settings, open_app
from identity_cli.output import console, render

app = typer.Typer(no_args_is_help=True, help="List the face model packs and convert their weights.")


@app.command("list")
def list_models(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """Every model pack version, built-in and local (fine-tuned); `active` marks the one in use."""
    from identity.app.schema import AS_IS
    from identity.faces import list_packs

    with open_app(schema=AS_IS) as core:  # a listing creates no schema (Postgres connects to an empty database)
        active = core.model_choice().model
    rows = [dataclasses.asdict(info) for info in list_packs(get_settings(), active=active)]
    render(rows, as_json, columns=("model_id", "active", "promoted", "dim", "detector", "recognizer", "recipe", "settings"),
           title="model packs")


@app.command("export-onnx")
def export_onnx(
    checkpoint: Path = typer.Argument(..., help="arcface_torch iresnet state dict (.pth)."),
    out: Path = typer.Argument(..., help="Where to write the .onnx recognizer."),
    arch: str = typer.Option("r50", "--arch", help="iresnet depth: r18, r34, r50 or r100."),
) -> None:
    """Convert a torch-iresnet checkpoint into an ONNX recognizer for the insightface-onnx pack."""
    from identity.faces import export_onnx as export

    written = export(checkpoint, out, arch)
    console.print(f"wrote {written}; use it with model = \"insightface-onnx\" and faces.onnx_recognizer = \"{written}\"")


@app.command("show")
def show(
    model: Optional[str] = typer.Argument(None, help="A pack reference (default: the model in use)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """A model's record: dimension, collection, decision threshold and where it came from (local packs: their manifest)."""
    from identity.services.models import show_model

    with open_app() as core:
        info = show_model(core, model)
    render(info.as_dict(), as_json, title=f"model {info.model}")
