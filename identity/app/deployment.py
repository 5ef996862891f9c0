"""The active model's view of the App (App.deployment()): what most services need, gathered and checked once.

Two ways to ask for it, and only one of them writes:

- for a read (search, audit, listings): the vector store is checked against the binding,
  the model's record looked up, its collections opened; nothing is recorded. A store that
  holds faces but no person templates (one from before them) is refused (TemplatesMissing,
  exit 4: "run `identity init`") rather than back-filled. A store with no record of the
  model yet reads as an empty one.
- for writes (`write=True`: enrollment, curation, erasure, workers, reindex, `identity init`,
  `doctor --repair`): the vector store is bound, the model recorded (a store's first model
  becomes its active one) and missing templates built.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from identity.app.binding import bind_vector_store, check_vector_store, still_bound
from identity.app.collections import ModelCollections
from identity.app.registry import ModelChoice, read_active, record_model, recorded_model
from identity.app.templates import build_missing_templates, lacks_templates
from identity.config import Settings
from identity.errors import DimensionMismatch, TemplatesMissing
from identity.faces import FacePipeline
from identity.store.sql.faces import count_gallery_persons
from identity.store.sql.model_rows import models_with_row_ids, split_model_id
from identity.store.sql.tables import Model
from identity.store.vectors import FaceIndex, VectorIndex
from identity.store.vectors.base import collection_name
from identity.store.vectors.store_ref import StoreRef

if TYPE_CHECKING:
    from identity.app.core import App

__all__ = ["Deployment", "ModelCollections", "model_collections", "prepare_deployment"]


@dataclass
class Deployment:
    app: App
    pipeline: FacePipeline  # built, not loaded: weights load on first use
    model: Model  # its row; for a read of a store that never recorded the model, an unsaved one (id None)
    index: FaceIndex
    templates: VectorIndex  # the model's person templates (identity.app.templates)
    choice: ModelChoice  # why this model: a setting, the store's pointer, or the default
    store: StoreRef  # the vector store the deployment is bound to (for a read: checked against)
    unknown: VectorIndex | None = None  # faces searches returned as unknown; open only when settings keep them
    writes: bool = False  # prepared for writes: bound, the model recorded, missing templates built

    _gallery_persons: int | None = None
    _missing_vectors: list[str] | None = None  # search's warning when faces lack vectors (services/integrity.py)

    @property
    def settings(self) -> Settings:
        """The App's settings with `model` naming this deployment's model (worker processes build the same pack)."""
        return self.app.settings.replace(model=self.choice.model)

    def follows_store(self) -> bool:
        """False once `identity reindex` switched the store away from the model this deployment follows,
        or `identity init --rebind` bound the deployment to another vector store.

        Long-running processes (workers) check it between rounds and ask for the deployment again
        (after release()), so they do not keep enrolling into the old model's collection (or a
        store no longer bound: asking again refuses them).
        """
        same_model = self.choice.source == "setting" or read_active(self.app) in (None, self.model.model_id)
        return same_model and still_bound(self.app, self.store)

    def release(self) -> None:
        """Close this model's collections in the App (the embedded engine's lock with them)."""
        self.app.release(self.model.model_id)

    def unknown_faces(self) -> VectorIndex:
        """The kept unknown faces' collection, opened now if settings did not keep it open (clustering, expiry)."""
        if self.unknown is None:
            self.unknown = self.app.unknown_faces(self.model.model_id, self.model.dim)
        return self.unknown

    def recorded_model(self) -> Model:
        """The model's row for a record that names it (a search log entry): made now, not activated, when a read
        found none; choosing the store's active model stays the first writing command's."""
        if self.model.id is None:
            self.model = record_model(self.app, self.model.model_id, self.model.dim, activate_first=False)
        return self.model

    @property
    def collections(self) -> ModelCollections:
        return ModelCollections(self.index, self.templates)

    def gallery_persons(self) -> int:
        """Persons with an indexed face, counted once per deployment (searches ask on every call)."""
        if self._gallery_persons is None:
            with self.app.sessions() as session:
                self._gallery_persons = count_gallery_persons(session, self.model.id)
        return self._gallery_persons


def prepare_deployment(app: App, pipeline: FacePipeline | None = None, write: bool = False) -> Deployment:
    """The deployment of `pipeline`'s model when given, else of the one the registry picks (App.deployment() keeps
    it). Where the App must find an existing store and none exists, NoStore is raised and nothing created.

    `write`: bind the vector store, record the model and build missing templates first; else check and read only.
    """
    # The store is checked (or bound) before anything opens, or creates, a collection.
    store = bind_vector_store(app) if write else check_vector_store(app)
    choice = app.model_choice()
    if pipeline is not None:
        choice = dataclasses.replace(choice, model=pipeline.model_id, source="setting")
    pipeline = pipeline or app.pipeline(choice.model)
    if write:
        model = record_model(app, pipeline.model_id, pipeline.dim)
    else:
        model = _recorded_for_reading(app, pipeline)
    held = app.collections(pipeline.model_id, pipeline.dim)
    if write and model.id is not None:
        build_missing_templates(app.sessions, held, model.id)
    elif lacks_templates(held):
        raise TemplatesMissing(
            f"the store holds {held.faces.count()} faces of model {model.model_id} and no person templates (it is "
            "from a version before them), so a search would find nobody: run `identity init` to build them",
            model=model.model_id,
            faces=held.faces.count(),
        )
    unknown = app.unknown_faces(pipeline.model_id, pipeline.dim) if app.settings.review.keep_unknown_faces else None
    return Deployment(app, pipeline, model, held.faces, held.templates, choice, store, unknown, writes=write)


def _recorded_for_reading(app: App, pipeline: FacePipeline) -> Model:
    """The model's row; an unsaved one when no command recorded it yet (the store reads as empty)."""
    model = recorded_model(app, pipeline.model_id)
    if model is None:
        name, version = split_model_id(pipeline.model_id)
        return Model(name=name, version=version, dim=pipeline.dim, collection=collection_name(pipeline.model_id))
    if model.dim != pipeline.dim:
        raise DimensionMismatch(
            f"model {pipeline.model_id} is recorded with {model.dim} dimensions, the pack produces {pipeline.dim}"
        )
    return model


@contextmanager
def model_collections(dep: Deployment, model_row_ids: Iterable[int]) -> Iterator[dict[int, ModelCollections]]:
    """The collections of the given models by row id: the deployment's own, and any other borrowed here.

    Other models' collections are those kept after a re-index; erasure and curation
    must reach them too, or a rollback would bring back what was deleted.
    """
    wanted = set(model_row_ids)
    with dep.app.sessions() as session:
        models = models_with_row_ids(session, wanted - {dep.model.id})
    with ExitStack() as stack:
        collections = {dep.model.id: dep.collections} if dep.model.id in wanted else {}
        for model in models:
            collections[model.id] = stack.enter_context(dep.app.borrow(model.model_id, model.dim))
        yield collections
