"""`identity models ...`: the face model packs and their weights."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

import typer

from identity_cli.context import get_settings
from identity_cli.output import console, render

app = typer.Typer(no_args_is_help=True, help="List the face model packs and convert their weights.")


@app.command("list")
def list_models(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """Every model pack version, built-in and local (fine-tuned); `active` marks the one in use."""
    from identity.faces import list_packs
    from identity.services.active_model import resolve_model

    settings = get_settings()
    rows = [dataclasses.asdict(info) for info in list_packs(settings, active=resolve_model(settings).model)]
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
    from identity.faces import build_pipeline, load_local_pack, resolve
    from identity.services.active_model import choose_model, read_active, with_model
    from identity.services.init import record_model
    from identity.services.runtime import Runtime
    from identity.services.thresholds import resolve_threshold
    from identity.store.sql.migrate import upgrade
    from identity.store.sql.queries import find_model

    settings = get_settings()
    with Runtime.open(settings) as runtime:
        upgrade(runtime.engine)
        choice = choose_model(settings.replace(model=model) if model else settings, read_active(runtime))
        pipeline = build_pipeline(with_model(settings, choice))
        if model:  # looking at a pack records nothing
            with runtime.sessions() as session:
                record = find_model(session, pipeline.model_id)
        else:
            record = record_model(runtime, pipeline.model_id, pipeline.dim)
    threshold = resolve_threshold(record, pipeline)
    info = {
        "model": pipeline.model_id, "store_active": pipeline.model_id == choice.store_active,
        "in_store": record is not None, "dim": record.dim if record else pipeline.dim,
        "metric": record.metric if record else "cosine", "collection": record.collection if record else None,
        "threshold": threshold.value, "threshold_far": threshold.far, "threshold_source": threshold.source,
        "threshold_fpir": threshold.fpir, "threshold_gallery_persons": threshold.gallery_persons,
        "calibrated_at": record.calibrated_at.isoformat() if record and record.calibrated_at else None,
    }
    if resolve(pipeline.model_id, settings.data_dir).info.promoted is not None:  # a local pack
        pack = load_local_pack(settings.data_dir, pipeline.model_id.partition("+")[0])
        info.update({"promoted": pack.promoted, "base": pack.manifest.get("base"), "folder": str(pack.path),
                     "created_at": pack.manifest.get("created_at"), "training": pack.manifest.get("training")})
    render(info, as_json, title=f"model {pipeline.model_id}")
