"""`identity models ...`: the face model packs and their weights."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import typer

from identity_cli.context import get_settings
from identity_cli.output import console, render

app = typer.Typer(no_args_is_help=True, help="List the face model packs and convert their weights.")


@app.command("list")
def list_models(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """Every model pack version; `active` marks the one the settings (`model`) select."""
    from identity.faces import list_packs

    rows = [dataclasses.asdict(info) for info in list_packs(get_settings())]
    render(rows, as_json, columns=("model_id", "active", "dim", "detector", "recognizer", "recipe", "settings"), title="model packs")


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
def show(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """The active model's record: dimension, collection, decision threshold and where it came from."""
    from identity.faces import build_pipeline
    from identity.services.init import prepare_model
    from identity.services.runtime import Runtime
    from identity.services.thresholds import resolve_threshold

    settings = get_settings()
    pipeline = build_pipeline(settings)
    with Runtime.open(settings) as runtime:
        model = prepare_model(runtime, pipeline.model_id, pipeline.dim)
    threshold = resolve_threshold(model, pipeline)
    info = {
        "model": model.model_id, "dim": model.dim, "metric": model.metric, "collection": model.collection,
        "threshold": threshold.value, "threshold_far": threshold.far, "threshold_source": threshold.source,
        "calibrated_at": model.calibrated_at.isoformat() if model.calibrated_at else None,
    }
    render(info, as_json, title=f"model {model.model_id}")
