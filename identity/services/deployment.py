"""Everything a service needs for the active model, opened together and closed together."""

from __future__ import annotations

import dataclasses
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Iterable, Iterator

from identity.config import Settings
from identity.faces import FacePipeline, build_pipeline
from identity.app.registry import ModelChoice, choose_model, read_active, record_model, with_model
from identity.app.binding import bind_vector_store, still_bound
from identity.app.runtime import Runtime
from identity.services.templates import refresh_templates
from identity.store.sql.model_rows import models_with_row_ids
from identity.store.sql.models import Model
from identity.store.sql.persons import indexed_face_ids
from identity.store.sql.queries import count_gallery_persons
from identity.store.vectors import VectorIndex, open_vector_index
from identity.store.vectors.store_ref import StoreRef


@dataclass
class Deployment:
    runtime: Runtime
    pipeline: FacePipeline  # built, not loaded: weights load on first use
    model: Model
    index: VectorIndex
    templates: VectorIndex  # the model's person templates (identity.services.templates)
    choice: ModelChoice  # why this model: a setting, the store's pointer, or the default
    store: StoreRef  # the vector store the deployment is bound to

    _gallery_persons: int | None = None

    @property
    def settings(self) -> Settings:
        return self.runtime.settings

    def follows_store(self) -> bool:
        """False once `identity reindex` switched the store away from the model this deployment follows,
        or `identity init --rebind` bound the deployment to another vector store.

        Long-running processes (workers) check it between rounds and reopen, so they
        do not keep enrolling into the old model's collection (or a store no longer bound:
        reopening refuses them).
        """
        same_model = self.choice.source == "setting" or read_active(self.runtime) in (None, self.model.model_id)
        return same_model and still_bound(self.runtime, self.store)

    @property
    def collections(self) -> "ModelCollections":
        return ModelCollections(self.index, self.templates)

    def gallery_persons(self) -> int:
        """Persons with an indexed face, counted once per opening (searches ask on every call)."""
        if self._gallery_persons is None:
            with self.runtime.sessions() as session:
                self._gallery_persons = count_gallery_persons(session, self.model.id)
        return self._gallery_persons


@contextmanager
def open_deployment(
    settings: Settings, pipeline: FacePipeline | None = None, read_only: bool = False
) -> Iterator[Deployment]:
    """The store open (its schema by identity.app.schema's policy), the vector store checked against the
    deployment's binding, the model chosen and recorded, its collections open (for the embedded engine:
    locked).

    The model is `pipeline`'s when given, else the one identity.app.registry.choose_model picks;
    `dep.settings.model` names it, so worker processes build the same pack.
    `read_only`: for commands that only ask; where no store exists they raise NoStore
    and create nothing.
    """
    with Runtime.open(settings, must_exist=read_only) as runtime:
        store = bind_vector_store(runtime)  # before anything opens (or creates) a collection
        choice = choose_model(settings, read_active(runtime))
        if pipeline is not None:
            choice = dataclasses.replace(choice, model=pipeline.model_id, source="setting")
        runtime = dataclasses.replace(runtime, settings=with_model(settings, choice))
        pipeline = pipeline or build_pipeline(runtime.settings)
        model = record_model(runtime, pipeline.model_id, pipeline.dim)
        with open_vector_index(runtime.settings, pipeline.model_id, pipeline.dim) as index, \
                index.templates() as templates:
            _build_missing_templates(runtime, index, templates, model.id)
            yield Deployment(runtime, pipeline, model, index, templates, choice, store)


def _build_missing_templates(runtime: Runtime, index: VectorIndex, templates: VectorIndex, model_row_id: int) -> None:
    """A store from before templates (faces, no templates) gets them on its first open, once.

    Without them search would find nobody; later gaps are doctor's to find.
    """
    if templates.count() > 0 or index.count() == 0:
        return
    with runtime.sessions() as session:
        persons = list(indexed_face_ids(session, model_row_id))
    refresh_templates(runtime.sessions, index, templates, model_row_id, persons)
    templates.optimize()


@dataclass(frozen=True)
class ModelCollections:
    """One model's face collection and its person templates: what changes a person's faces changes both."""

    faces: VectorIndex
    templates: VectorIndex


@contextmanager
def model_collections(dep: Deployment, model_row_ids: Iterable[int]) -> Iterator[dict[int, ModelCollections]]:
    """The collections of the given models by row id: the deployment's own, and any other opened here.

    Other models' collections are those kept after a re-index; erasure and curation
    must reach them too, or a rollback would bring back what was deleted.
    """
    wanted = set(model_row_ids)
    with dep.runtime.sessions() as session:
        models = models_with_row_ids(session, wanted - {dep.model.id})
    with ExitStack() as stack:
        collections = {dep.model.id: dep.collections} if dep.model.id in wanted else {}
        for model in models:
            faces = stack.enter_context(open_vector_index(dep.settings, model.model_id, model.dim))
            collections[model.id] = ModelCollections(faces, stack.enter_context(faces.templates()))
        yield collections
