"""`identity eval` and `identity calibrate`."""

from __future__ import annotations

from pathlib import Path

import typer

from identity.serialize import to_json
from identity_cli.context import open_app
from identity_cli.options import JSON
from identity_cli.output import err_console, print_json, render
from identity_cli.progress import stage_progress

GALLERY_IMAGES = typer.Option(
    1,
    "--gallery-images",
    help="Gallery photos per person: the first N of each person with more than N form the gallery, the rest "
    "are probes; everyone else gives only their first photo, as a distractor.",
)


def register(app: typer.Typer) -> None:
    app.command("eval")(evaluate)
    app.command("calibrate")(calibrate)


def evaluate(
    folder: Path = typer.Argument(..., help="Labelled folder: one sub-folder of images per person."),
    workers: int = typer.Option(0, "--workers", "-w", help="Processes (0: one per core)."),
    out: Path | None = typer.Option(
        None, "--out", help="Write PNG plots (CMC, ROC, score histograms) and summary.html here."
    ),
    use_store: bool = typer.Option(
        False, "--use-store", help="Enroll the gallery into your store instead of a temporary one."
    ),
    pair_cap: int = typer.Option(20000, "--pairs", help="Genuine pairs at most (and as many impostor pairs)."),
    seed: int = typer.Option(20240, "--seed", help="Seed of the pair sampling."),
    gallery_images: int = GALLERY_IMAGES,
    as_json: bool = JSON,
) -> None:
    """Measure accuracy on labelled photos: identification (CMC), verification (ROC) and open-set."""
    from identity.render.eval_report import write_report
    from identity.services.accuracy.evaluate import EvalOptions, evaluate_folder

    options = EvalOptions(
        workers=workers, pair_cap=pair_cap, seed=seed, use_store=use_store, gallery_images=gallery_images
    )
    with open_app() as core, stage_progress() as stage:
        report = evaluate_folder(core, folder, options, stage)
    if out:
        for path in write_report(report, out):
            err_console.print(f"wrote {path}")
    if as_json:
        print_json(to_json(report))
    else:
        render(to_json(report), False, title=f"evaluation of {report.figures.model} on {folder}")


def calibrate(
    folder: Path = typer.Argument(..., help="Labelled folder: one sub-folder of images per person."),
    far: float | None = typer.Option(
        None, "--far", help="Target false-accept rate per comparison, for 1:1 use (default 1e-3)."
    ),
    fpir: float | None = typer.Option(
        None,
        "--fpir",
        help="Target share of searches for people not enrolled that return a match (eval's open-set protocol).",
    ),
    gallery_images: int = GALLERY_IMAGES,
    workers: int = typer.Option(0, "--workers", "-w", help="Processes (0: one per core)."),
    as_json: bool = JSON,
) -> None:
    """Set the active model's decision threshold from a target FAR (1:1) or FPIR (search) on labelled photos."""
    from identity.errors import InvalidArgument
    from identity.services.accuracy.evaluate import EvalOptions, calibrate_fpir
    from identity.services.accuracy.evaluate import calibrate as by_far

    if fpir is not None:
        if far is not None:
            raise InvalidArgument("give --far (1:1 comparisons) or --fpir (searches), not both")
        options = EvalOptions(workers=workers, gallery_images=gallery_images)
        with open_app() as core, stage_progress() as stage:
            by_fpir = calibrate_fpir(core, folder, fpir, options, stage)
        render(to_json(by_fpir), as_json, title="calibrated")
        return
    far = 1e-3 if far is None else far
    if not 0 < far < 1:
        raise typer.BadParameter("must be between 0 and 1", param_hint="--far")
    with open_app() as core, stage_progress() as stage:
        result = by_far(core, folder, far, workers, stage)
    render(to_json(result), as_json, title="calibrated")
