"""`identity finetune`: train the recognizer on the organization's own people and save it as a pack.

The data is the enrolled faces of the active model (or a labelled folder), split by
person; the figures that decide promotion come from the held-out persons only. The
trained network is saved as the next version of a local pack (torch checkpoint +
ONNX recognizer); it is promoted, i.e. selectable by name and usable by `identity
reindex` without --force, only when it beats the starting model on validation (or
with --force). Search is not switched here: that is reindex's job.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from identity.app.core import App
from identity.app.registry import chosen_model_row
from identity.config import Settings
from identity.faces.packs import ModelPack, save_local_pack
from identity.serialize import to_json
from identity.store.sql.faces import indexed_face_sources
from identity.train.backbones import Backbone
from identity.train.data import (
    ChipSet,
    FaceRef,
    collect_chips,
    folder_faces,
    require_enough,
)
from identity.train.finetune import FULL, HEAD, Stage, TrainOptions, TrainResult, train

__all__ = [
    "FULL",
    "HEAD",
    "FinetuneReport",
    "FinetuneRequest",
    "TrainOptions",
    "finetune",
]  # the CLI's whole vocabulary
from identity.train.validation import FAR, TAR_TOLERANCE, split_by_person


@dataclass(frozen=True)
class FinetuneRequest:
    folder: Path | None = None  # None: the enrolled faces of the active model
    options: TrainOptions = TrainOptions()
    val_fraction: float = 0.2
    name: str | None = None  # None: the base pack's name + "-ft"
    force: bool = False  # save and promote even when validation did not improve
    workers: int = 0


@dataclass(frozen=True)
class FinetuneReport:
    """What `identity finetune` prints (fields in output order); the saved pack's manifest keeps it too."""

    base_model: str
    source: str
    mode: str
    options: dict[str, Any]
    train_persons: int
    train_faces: int
    val_persons: int
    val_faces: int
    skipped_faces: int
    before: dict[str, Any]  # validation figures of the base model: rank1, tar, threshold, ...
    after: dict[str, Any]  # the same for the best epoch
    rank1_gain_points: float
    tar_gain_points: float
    epochs: list[dict[str, Any]]
    best_epoch: int
    stopped_early: bool
    better: bool
    data_seconds: float
    train_seconds: float
    promoted: bool
    saved: str | None  # the local pack's reference, None when nothing was worth keeping
    seconds: float


def finetune(app: App, request: FinetuneRequest, stage: Stage) -> FinetuneReport:
    from identity.train.backbones import load_backbone, use_all_cores

    started = time.perf_counter()
    settings = app.model_settings()  # pinned, for the chip cutter's worker processes
    base = app.pipeline().pack
    backbone = load_backbone(base, settings)  # before the data: an unusable base fails at once
    use_all_cores()
    chips = _chips(app, settings, request, stage)
    source = str(request.folder) if request.folder else f"enrolled faces ({base.model_id})"
    require_enough(chips, source)
    split = split_by_person(chips.labels, request.val_fraction, request.options.seed)
    data_seconds = time.perf_counter() - started
    result = train(backbone.network, chips.chips, chips.labels, split, request.options, stage, base.mirror)
    train_seconds = time.perf_counter() - started - data_seconds
    better = result.after.better_than(result.before)
    report: dict[str, Any] = {
        "base_model": base.model_id,
        "source": source,
        "mode": request.options.mode,
        "options": {
            **asdict(request.options),
            "lr": request.options.learning_rate,
            "val_fraction": request.val_fraction,
        },
        "train_persons": split.train_persons,
        "train_faces": len(split.train),
        "val_persons": split.val_persons,
        "val_faces": len(split.val),
        "skipped_faces": len(chips.skipped),
        "before": to_json(result.before),
        "after": to_json(result.after),
        "rank1_gain_points": round(100 * (result.after.rank1 - result.before.rank1), 2),
        "tar_gain_points": round(100 * (result.after.tar - result.before.tar), 2),
        "epochs": [
            {
                "epoch": e.epoch,
                "loss": e.loss,
                "val_rank1": e.figures.rank1,
                "val_tar": e.figures.tar,
                "seconds": round(e.seconds, 1),
            }
            for e in result.epochs
        ],
        "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early,
        "better": better,
        "data_seconds": round(data_seconds, 1),
        "train_seconds": round(train_seconds, 1),
    }
    promoted = better or request.force
    report["promoted"] = promoted
    saved = _save(settings, request, base, backbone, result, report, promoted)
    return FinetuneReport(**report, saved=saved, seconds=round(time.perf_counter() - started, 1))


def _chips(app: App, settings: Settings, request: FinetuneRequest, stage: Stage) -> ChipSet:
    refs = folder_faces(request.folder) if request.folder is not None else enrolled_faces(app)
    return collect_chips(settings, refs, request.workers, stage("cutting face chips", len(refs)))


def enrolled_faces(app: App) -> list[FaceRef]:
    """(source path, person external id, stored box) of every indexed face of the active model."""
    # SQL only: the vector store (and the embedded engine's lock) is not needed to list faces.
    model = chosen_model_row(app)
    if model is None:
        return []
    with app.sessions() as session:
        rows = indexed_face_sources(session, model.id)
    return [(path, person, tuple(float(v) for v in bbox)) for path, person, bbox in rows]


def _save(
    settings: Settings,
    request: FinetuneRequest,
    base: ModelPack,
    backbone: Backbone,
    result: TrainResult,
    report: dict[str, Any],
    promoted: bool,
) -> str | None:
    """The new pack's reference, or None when there is nothing worth keeping."""
    if not promoted and result.after.rank1 <= result.before.rank1:
        return None  # no epoch beat the starting model: a copy of a worse network helps no one
    from identity.train.export import export_recognizer, save_checkpoint

    size = backbone.network.input_size
    with tempfile.TemporaryDirectory(dir=settings.data_dir if settings.data_dir.is_dir() else None) as scratch:
        onnx = Path(scratch) / "recognizer.onnx"
        export_error = export_recognizer(result.model, onnx, size)
        checkpoint = save_checkpoint(result.model, Path(scratch) / "checkpoint.pt", {"base": base.model_id, **report})
        after = result.after
        manifest = {
            "base": base.model_id,
            "aligner": backbone.aligner,
            "input_size": size,
            "dim": backbone.network.dim,
            "mirror": base.mirror,
            "promoted": promoted,
            "threshold": {
                "value": after.threshold,
                "far": FAR,
                "source": f"fine-tuning validation: {after.impostor_pairs:,} cross-person pairs of "
                f"{report['val_persons']} held-out persons",
            },
            "training": {
                **report,
                "onnx_max_error": export_error,
                "promotion_rule": f"rank-1 up, TAR@FAR=1e-3 down at most {TAR_TOLERANCE:.1%}",
            },
        }
        return save_local_pack(settings.data_dir, request.name or f"{base.name}-ft", onnx, checkpoint, manifest)
