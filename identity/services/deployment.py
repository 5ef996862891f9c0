"""Everything a service needs for the active model, opened together and closed together."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

from identity.config import Settings
from identity.faces import FacePipeline, build_pipeline
from identity.services.init import prepare_model
from identity.services.runtime import Runtime
from identity.store.sql.models import Model
from identity.store.sql.queries import count_gallery_persons
from identity.store.vectors import VectorIndex, open_vector_index


@dataclass
class Deployment:
    runtime: Runtime
    pipeline: FacePipeline  # built, not loaded: weights load on first use
    model: Model
    index: VectorIndex

    _gallery_persons: int | None = None

    @property
    def settings(self) -> Settings:
        return self.runtime.settings

    def gallery_persons(self) -> int:
        """Persons with an indexed face, counted once per opening (searches ask on every call)."""
        if self._gallery_persons is None:
            with self.runtime.sessions() as session:
                self._gallery_persons = count_gallery_persons(session, self.model.id)
        return self._gallery_persons


@contextmanager
def open_deployment(settings: Settings, pipeline: FacePipeline | None = None) -> Iterator[Deployment]:
    """Schema at head, the model recorded, its collection open (for the embedded engine: locked)."""
    pipeline = pipeline or build_pipeline(settings)
    with Runtime.open(settings) as runtime:
        model = prepare_model(runtime, pipeline.model_id, pipeline.dim)
        with open_vector_index(settings, pipeline.model_id, pipeline.dim) as index:
            yield Deployment(runtime, pipeline, model, index)
