"""A model pack's record as `identity models show` reports it: dimension, collection, threshold, origin."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from identity.app.core import App
from identity.config import Settings
from identity.faces import FacePipeline, load_local_pack, resolve
from identity.serialize import json_field
from identity.services.search.thresholds import resolve_threshold
from identity.store.sql.model_rows import find_model
from identity.store.sql.tables import Model


@dataclass(frozen=True)
class LocalPackInfo:
    """Where a local (fine-tuned) pack came from, as its manifest says."""

    promoted: bool
    base: str | None
    folder: str
    created_at: str | None
    training: dict[str, Any] | None


@dataclass(frozen=True)
class ModelInfo:
    model: str
    store_active: bool  # the store's active model (the one searches use unless a setting pins another)
    in_store: bool  # recorded in the store; a pack only looked at is not
    dim: int
    metric: str
    collection: str | None
    threshold: float
    threshold_far: float | None
    threshold_source: str
    threshold_fpir: float | None
    threshold_gallery_persons: int | None
    calibrated_at: str | None
    detector: str  # what the pack detects faces with
    model_source: str  # why this model (and so this detector) is the one shown
    # built-in packs: None; flat, as the command has always printed it
    local_pack: LocalPackInfo | None = field(default=None, metadata=json_field(flatten=True))


def show_model(app: App, model: str | None = None) -> ModelInfo:
    """`model` a pack reference, else the model in use. A read: its record is shown where a command that writes
    made one (in_store), and a store that does not exist is not created to be asked."""
    choice = app.model_choice(ask_store=True)
    pipeline = app.pipeline(model or choice.model)
    record = _find(app, pipeline.model_id) if app.store_exists() else None
    source = "named on the command line" if model else choice.describe()
    return _info(app.settings, pipeline, record, choice.store_active, source)


def _find(app: App, model_id: str) -> Model | None:
    """Looking at a pack records nothing."""
    with app.sessions() as session:
        return find_model(session, model_id)


def _info(
    settings: Settings, pipeline: FacePipeline, record: Model | None, store_active: str | None, source: str
) -> ModelInfo:
    threshold = resolve_threshold(record, pipeline)
    return ModelInfo(
        model=pipeline.model_id,
        store_active=pipeline.model_id == store_active,
        in_store=record is not None,
        dim=record.dim if record else pipeline.dim,
        metric=record.metric if record else "cosine",
        collection=record.collection if record else None,
        threshold=threshold.value,
        threshold_far=threshold.far,
        threshold_source=threshold.source,
        threshold_fpir=threshold.fpir,
        threshold_gallery_persons=threshold.gallery_persons,
        calibrated_at=record.calibrated_at.isoformat() if record and record.calibrated_at else None,
        detector=resolve(pipeline.model_id, settings.data_dir).info.detector,
        model_source=source,
        local_pack=_local_pack(settings, pipeline.model_id),
    )


def _local_pack(settings: Settings, model_id: str) -> LocalPackInfo | None:
    if resolve(model_id, settings.data_dir).info.promoted is None:  # a built-in pack
        return None
    pack = load_local_pack(settings.data_dir, model_id.partition("+")[0])
    return LocalPackInfo(
        promoted=pack.promoted,
        base=pack.manifest.get("base"),
        folder=str(pack.path),
        created_at=pack.manifest.get("created_at"),
        training=pack.manifest.get("training"),
    )
