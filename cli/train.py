"""`identity finetune`: CosFace/ArcFace fine-tuning of the recognizer on your own people."""

from __future__ import annotations

from pathlib import Path

import typer

from identity.serialize import to_json
from identity_cli.context import open_app
from identity_cli.options import JSON
from identity_cli.output import console, print_json, print_table
from identity_cli.progress import stage_progress


def register(app: typer.Typer) -> None:
    app.command("finetune")(finetune)


def finetune(
    folder: Path | None = typer.Argument(
        None, help="Labelled folder (one sub-folder per person); default: the enrolled people."
    ),
    mode: str = typer.Option(
        "full", "--mode", help="head: a projection over frozen embeddings (minutes); full: the whole backbone."
    ),
    epochs: int = typer.Option(3, "--epochs", min=1),
    lr: float | None = typer.Option(None, "--lr", help="Learning rate (default 1e-5 full, 1e-3 head)."),
    batch_size: int = typer.Option(32, "--batch-size", min=2),
    loss: str = typer.Option("cosface", "--loss", help="cosface (LMCL) or arcface."),
    scale: float = typer.Option(64.0, "--scale", help="The margin loss's scale s."),
    margin: float = typer.Option(0.35, "--margin", help="The margin m (CosFace paper: 0.35)."),
    val_fraction: float = typer.Option(0.2, "--val-fraction", help="Share of persons held out for validation."),
    patience: int = typer.Option(
        1, "--patience", min=1, help="Stop after this many epochs without a better validation rank-1."
    ),
    seed: int = typer.Option(7, "--seed"),
    name: str | None = typer.Option(
        None, "--name", help="Local pack to save the model as (next version); default BASE-ft."
    ),
    force: bool = typer.Option(False, "--force", help="Save and promote the model even if validation did not improve."),
    workers: int = typer.Option(0, "--workers", "-w", help="Processes cutting face chips (0: one per core)."),
    as_json: bool = JSON,
) -> None:
    """Fine-tune the recognizer with a large-margin cosine loss; report validation figures before and after.

    Persons are split into training and validation; only held-out persons judge the model.
    A model that is not better on validation is not promoted unless --force. Switch search to a
    promoted model with `identity reindex --model NAME`.
    """
    from identity.services.models.finetune import (
        FULL,
        HEAD,
        FinetuneRequest,
        TrainOptions,
    )
    from identity.services.models.finetune import finetune as run

    if mode not in (HEAD, FULL):
        raise typer.BadParameter("use 'head' or 'full'", param_hint="--mode")
    if loss not in ("cosface", "arcface"):
        raise typer.BadParameter("use 'cosface' or 'arcface'", param_hint="--loss")
    if not 0 < val_fraction < 1:
        raise typer.BadParameter("must be between 0 and 1", param_hint="--val-fraction")
    options = TrainOptions(
        mode=mode,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        loss=loss,
        scale=scale,
        margin=margin,
        patience=patience,
        seed=seed,
    )
    request = FinetuneRequest(folder, options, val_fraction, name, force, workers)
    with open_app() as core, stage_progress() as stage:
        report = run(core, request, stage)
    if as_json:
        print_json(to_json(report))
        return
    rows = [
        {"model": f"{report.base_model} (before)", **_figures(report.before)},
        {"model": f"fine-tuned, {report.mode}, epoch {report.best_epoch}", **_figures(report.after)},
    ]
    print_table(
        rows,
        ["model", "val rank-1", "val TAR@FAR=1e-3", "threshold"],
        title=f"validation: {report.val_persons} held-out persons, {report.val_faces} faces "
        f"(trained on {report.train_persons} persons, {report.train_faces} faces, {report.train_seconds:.0f}s)",
    )
    gain = report.rank1_gain_points
    if report.saved and report.promoted:
        note = "" if report.better else " (forced: not better on validation)"
        console.print(
            f"saved and promoted {report.saved}{note}; rank-1 {gain:+.2f} points. "
            f"Switch search to it with: identity reindex --model {report.saved}",
            highlight=False,
        )
    elif report.saved:
        console.print(
            f"saved {report.saved} but did not promote it: rank-1 {gain:+.2f} points, TAR "
            f"{report.tar_gain_points:+.2f} points (use --force to promote)",
            highlight=False,
        )
    else:
        console.print(
            f"not saved: no epoch beat the starting model on validation (rank-1 {gain:+.2f} points); "
            "use --force to keep it anyway",
            highlight=False,
        )


def _figures(figures: dict[str, float]) -> dict[str, str]:
    return {
        "val rank-1": f"{figures['rank1']:.2%}",
        "val TAR@FAR=1e-3": f"{figures['tar']:.2%}",
        "threshold": f"{figures['threshold']:.3f}",
    }
