"""`identity models ...`: the face model packs, their weights and the detector files they need."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import typer

from identity.serialize import to_json
from identity_cli.context import get_settings, open_app
from identity_cli.output import console, print_json, render
from identity_cli.progress import download_progress

app = typer.Typer(no_args_is_help=True, help="List the face model packs, install detector files, convert weights.")


@app.command("list")
def list_models(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables.")) -> None:
    """Every model pack version, built-in and local (fine-tuned), `active` marking the one in use; and the
    detectors that `identity models install` adds, installed or not."""
    from identity.app.schema import AS_IS
    from identity.faces import list_packs
    from identity.services.models.detectors import detector_statuses

    settings = get_settings()
    with open_app(schema=AS_IS) as core:  # a listing creates no schema (Postgres connects to an empty database)
        active = core.model_choice().model
    packs = [dataclasses.asdict(info) for info in list_packs(settings, active=active)]
    detectors = [to_json(status) for status in detector_statuses(settings.data_dir)]
    if as_json:
        print_json({"packs": packs, "detectors": detectors})
        return
    render(
        packs,
        False,
        columns=("model_id", "active", "promoted", "dim", "detector", "recognizer", "recipe", "settings"),
        title="model packs",
    )
    render(
        detectors,
        False,
        columns=("name", "installed", "path", "sha256", "packs"),
        title="detectors (identity models install NAME)",
    )


@app.command("install")
def install(
    name: str = typer.Argument(..., help="The detector to install: yunet."),
    source: Path | None = typer.Option(None, "--from", help="A local copy of the file (checked like a download)."),
    url: str | None = typer.Option(
        None,
        "--url",
        help="A mirror to download from instead of the official URL (the pinned sha256 is still checked).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a line."),
) -> None:
    """Install a detector file that no package ships into <data dir>/detectors/: downloaded from its official URL,
    or --from a local file; refused unless its sha256 is the pinned one. Installing never changes an existing store's
    model (identity reindex --model PACK does)."""
    from identity.errors import InvalidArgument
    from identity.services.models.detectors import install_detector

    if source is not None and url is not None:
        raise InvalidArgument("give --from FILE or --url URL, not both")
    with download_progress(enabled=not as_json and source is None) as progress:
        report = install_detector(get_settings().data_dir, name, source, url, progress)
    if as_json:
        print_json(report)
    elif report.already_installed:
        console.print(
            f"{name} is already installed at {report.path} (sha256 {report.sha256})", highlight=False, markup=False
        )
    else:
        console.print(
            f"installed {name} at {report.path} (sha256 {report.sha256}, from {report.source})",
            highlight=False,
            markup=False,
        )


@app.command("remove")
def remove(
    name: str = typer.Argument(..., help="The detector to remove: yunet."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a line."),
) -> None:
    """Delete an installed detector file; refused (exit 1) while a model of the store detects with it."""
    from identity.app.schema import AS_IS
    from identity.services.models.detectors import remove_detector

    with open_app(schema=AS_IS) as core:  # a missing store is not created just to be asked
        removed = remove_detector(core, name)
    if as_json:
        print_json({"name": name, "removed": removed})
    else:
        console.print(f"removed {name} ({removed})", highlight=False, markup=False)


@app.command("export-onnx")
def export_onnx(
    checkpoint: Path = typer.Argument(..., help="arcface_torch iresnet state dict (.pth)."),
    out: Path = typer.Argument(..., help="Where to write the .onnx recognizer."),
    arch: str = typer.Option("r50", "--arch", help="iresnet depth: r18, r34, r50 or r100."),
) -> None:
    """Convert a torch-iresnet checkpoint into an ONNX recognizer for the insightface-onnx pack."""
    from identity.faces import export_onnx as export

    written = export(checkpoint, out, arch)
    console.print(f'wrote {written}; use it with model = "insightface-onnx" and faces.onnx_recognizer = "{written}"')


@app.command("show")
def show(
    model: str | None = typer.Argument(None, help="A pack reference (default: the model in use)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """A model's record: dimension, collection, decision threshold and where it came from (local packs: their
    manifest)."""
    from identity.services.models.records import show_model

    with open_app() as core:
        info = show_model(core, model)
    render(to_json(info), as_json, title=f"model {info.model}")
