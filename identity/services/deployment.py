"""The active model's view of the App: what most services need, gathered and checked once."""

from __future__ import annotations

import dataclasses
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Iterable, Iterator

from identity.app.binding import bind_vector_store, still_bound
from identity.app.core import App, ModelCollections
from identity.app.registry import ModelChoice, read_active, record_model
from identity.config import Settings
from identity.faces import FacePipeline
from identity.services.search.templates import refresh_templates
from identity.store.sql.model_rows import models_with_row_ids
from identity.store.sql.tables import Model
from identity.store.sql.persons import indexed_face_ids
from identity.store.sql.faces import count_gallery_persons
from identity.store.vectors import FaceIndex, VectorIndex
from identity.store.vectors.store_ref import StoreRef

__all__ = ["Deployment", "ModelCollections", "deployment", "model_collections", "open_deployment"]


@dataclass
class Deployment:
    app: App
    pipeline: FacePipeline  # built, not loaded: weights load on first use
    model: Model
    index: FaceIndex
    templates: VectorIndex  # the model's person templates (identity.services.search.templates)
    choice: ModelChoice  # why this model: a setting, the store's pointer, or the default
    store: StoreRef  # the vector store the deployment is bound to
    unknown: VectorIndex | None = None  # faces searches returned as unknown; open only when settings keep them

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

    @property
    def collections(self) -> ModelCollections:
        return ModelCollections(self.index, self.templates)

    def gallery_persons(self) -> int:
        """Persons with an indexed face, counted once per deployment (searches ask on every call)."""
        if self._gallery_persons is None:
            with self.app.sessions() as session:
                self._gallery_persons = count_gallery_persons(session, self.model.id)
        return self._gallery_persons


def deployment(app: App, pipeline: FacePipeline | None = None) -> Deployment:
    """The vector store checked against the deployment's binding, the model chosen and recorded, its
    collections open in the App (for the embedded engine: locked until the App closes or releases them).

    The model is `pipeline`'s when given, else the one the registry picks. Where the App
    must find an existing store and none exists, NoStore is raised and nothing created.
    """
    store = bind_vector_store(app)  # before anything opens (or creates) a collection
    choice = app.model_choice()
    if pipeline is not None:
        choice = dataclasses.replace(choice, model=pipeline.model_id, source="setting")
    pipeline = pipeline or app.pipeline(choice.model)
    model = record_model(app, pipeline.model_id, pipeline.dim)
    held = app.collections(pipeline.model_id, pipeline.dim)
    _build_missing_templates(app, held, model.id)
    unknown = app.unknown_faces(pipeline.model_id, pipeline.dim) if app.settings.review.keep_unknown_faces else None
    return Deployment(app, pipeline, model, held.faces, held.templates, choice, store, unknown)


def _build_missing_templates(app: App, store: ModelCollections, model_row_id: int) -> None:
    """A store from before templates (faces, no templates) gets them on its first open, once.

    Without them search would find nobody; later gaps are doctor's to find.
    """
    if store.templates.count() > 0 or store.faces.count() == 0:
        return
    with app.sessions() as session:
        persons = list(indexed_face_ids(session, model_row_id))
    refresh_templates(app.sessions, store.faces, store.templates, model_row_id, persons)
    store.templates.optimize()


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


@contextmanager
def open_deployment(settings: Settings, pipeline: FacePipeline | None = None,
                    read_only: bool = False) -> Iterator[Deployment]:
    """For scripts and tests: an App of their own around one deployment, closed with it.

    A long-running process opens one App and asks it for deployment() instead.
    """
    with App.open(settings, must_exist=read_only) as app:
        yield deployment(app, pipeline)
