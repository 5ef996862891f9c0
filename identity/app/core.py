"""The application object: what every entry point (CLI command, worker, HTTP server) opens once per process.

An App owns the one SQL engine and session factory, the face pipelines it builds and the
vector collections it opens (lazily, per model, kept until it closes); the model
registry (identity.app.registry) answers which model it uses. Every service receives
it. Nothing here is global, so tests build one against a real Postgres or a temporary
SQLite file, and a long-running process keeps one for its lifetime.

The store is connected on first use: a command that turns out not to need it (an
evaluation on a folder, `faces detect` with a pinned model) never creates one. The
schema policy (identity.app.schema) is applied at that first use; `must_exist` makes a
missing store a NoStore error rather than a new store. A fresh database is refused
(StoreMismatch) before anything is created when its vector store already belongs to a
deployment (identity.app.store_owner).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from identity.app.collections import ModelCollections
from identity.app.schema import AS_IS, CREATE, prepare_schema
from identity.app.store_owner import refuse_if_store_in_use
from identity.config import Settings, mask_url
from identity.errors import ConfigError, NoStore
from identity.store.sql.db import (
    Engine,
    SessionFactory,
    check_connection,
    make_engine,
    parse_database_url,
    session_factory,
)
from identity.store.sql.migrate import current_revision
from identity.store.vectors import VectorIndex, open_vector_index
from identity.store.vectors.base import UNKNOWN

if TYPE_CHECKING:
    from identity.app.deployment import Deployment
    from identity.app.registry import ModelChoice
    from identity.faces import FacePipeline

__all__ = ["App", "ModelCollections", "open_deployment"]


class App:
    def __init__(self, settings: Settings, must_exist: bool = False, schema: str = CREATE) -> None:
        """`must_exist`: for commands that only read; NoStore rather than create a store.
        `schema`: identity.app.schema's policy (`identity init` upgrades, `identity version` reads as is)."""
        self.settings = settings
        self._must_exist = must_exist
        self._policy = schema
        self._engine: Engine | None = None
        self._sessions: SessionFactory | None = None
        self._schema_before: str | None = None
        self._prepared = False
        self._pipelines: dict[str, FacePipeline] = {}
        self._collections: dict[str, ModelCollections] = {}
        self._unknown: dict[str, VectorIndex] = {}
        self._deployments: dict[str | None, Deployment] = {}  # by pinned pack (None: the registry's choice)
        self._lock = threading.RLock()  # threads that share the App prepare each deployment once

    @classmethod
    def open(cls, settings: Settings, must_exist: bool = False, schema: str = CREATE) -> App:
        return cls(settings, must_exist, schema)

    # -- SQL ---------------------------------------------------------------------------------------
    @property
    def engine(self) -> Engine:
        self._prepare()
        assert self._engine is not None
        return self._engine

    @property
    def sessions(self) -> SessionFactory:
        """The session factory, the store's schema prepared by the policy first."""
        self._prepare()
        assert self._sessions is not None
        return self._sessions

    @property
    def schema_before(self) -> str | None:
        """The store's revision when this App first used it (None: it had no schema)."""
        self._prepare()
        return self._schema_before

    def store_exists(self) -> bool:
        """False for an embedded SQLite file that is not there yet (connecting would create it)."""
        return _sqlite_file_exists(self.settings.sql_url)

    def _connect(self) -> None:
        if self._engine is not None:
            return
        settings = self.settings
        default_dir = settings.database_url is None  # only the default data directory is created
        if self._must_exist and not self.store_exists():
            if not default_dir:
                make_engine(settings.sql_url).dispose()  # a configured folder that is missing is the clearer error
            raise _no_store(settings)
        if self._policy != AS_IS and not self.store_exists():
            refuse_if_store_in_use(settings)  # before connecting creates the SQLite file
        engine = make_engine(settings.sql_url, create_folder=default_dir)
        try:
            check_connection(engine)
            if self._must_exist and current_revision(engine) is None:
                raise _no_store(settings)
        except BaseException:
            engine.dispose()
            raise
        self._engine, self._sessions = engine, session_factory(engine)

    def _prepare(self) -> None:
        if self._prepared:
            return
        self._connect()
        assert self._engine is not None
        guard = partial(refuse_if_store_in_use, self.settings)  # a fresh database takes no store in use
        self._schema_before = prepare_schema(self._engine, self._policy, before_create=guard)
        self._prepared = True

    # -- models ------------------------------------------------------------------------------------
    def model_choice(self, ask_store: bool = False) -> ModelChoice:
        """Which model this process uses, and why (identity.app.registry)."""
        from identity.app.registry import resolve_model

        return resolve_model(self, ask_store)

    def model_settings(self, choice: ModelChoice | None = None) -> Settings:
        """Settings whose `model` names the chosen model, for what is built from them (worker processes too)."""
        return self.settings.replace(model=(choice or self.model_choice()).model)

    def pipeline(self, model: str | None = None) -> FacePipeline:
        """The face pipeline of `model` (a pack reference; default: the chosen one), built once; weights load on first
        use."""
        from identity.faces import build_pipeline

        reference = model or self.model_choice().model
        if reference not in self._pipelines:
            self._pipelines[reference] = build_pipeline(self.settings.replace(model=reference))
        return self._pipelines[reference]

    # -- the deployment ------------------------------------------------------------------------------
    def deployment(self, pipeline: FacePipeline | None = None, write: bool = False) -> Deployment:
        """The active model's deployment (of `pipeline`'s model when given), kept until its model is released.

        A read (the default) writes nothing and refuses a store that lacks its templates; `write=True`, asked
        by every service that writes, binds the vector store, records the model and builds missing templates
        first (identity.app.deployment).
        """
        from identity.app.deployment import prepare_deployment

        key = pipeline.model_id if pipeline is not None else None
        with self._lock:
            held = self._deployments.get(key)
            if held is None or (write and not held.writes):
                held = prepare_deployment(self, pipeline, write)
                self._deployments[key] = held
            return held

    # -- vectors -----------------------------------------------------------------------------------
    def collections(self, model_id: str, dim: int) -> ModelCollections:
        """The model's face collection and templates, opened on first use and held until close() or release().

        The embedded engine locks a collection for the process that opened it: a process
        that only visits a collection uses borrow() instead.
        """
        if model_id not in self._collections:
            faces = open_vector_index(self.settings, model_id, dim)
            try:
                self._collections[model_id] = ModelCollections(faces, faces.templates())
            except BaseException:
                faces.close()
                raise
        return self._collections[model_id]

    @contextmanager
    def borrow(self, model_id: str, dim: int) -> Iterator[ModelCollections]:
        """The model's collections for one block: those this App holds, else opened for the block and closed after."""
        held = model_id in self._collections
        try:
            yield self.collections(model_id, dim)
        finally:
            if not held:
                self.release(model_id)

    def unknown_faces(self, model_id: str, dim: int) -> VectorIndex:
        """The model's collection of faces searches returned as unknown (kept only where settings say so),
        opened on first use and held like the others."""
        if model_id not in self._unknown:
            self._unknown[model_id] = self.collections(model_id, dim).faces.sibling(UNKNOWN)
        return self._unknown[model_id]

    def release(self, model_id: str) -> None:
        """Close the model's collections (the embedded engine's lock with them); unknown models are ignored.

        Its deployments go with them: asked for again, they open afresh."""
        for key, held in list(self._deployments.items()):
            if held.model.model_id == model_id:
                del self._deployments[key]
        unknown = self._unknown.pop(model_id, None)
        if unknown is not None:
            unknown.close()
        store = self._collections.pop(model_id, None)
        if store is not None:
            try:
                store.templates.close()
            finally:
                store.faces.close()

    # -- lifetime ----------------------------------------------------------------------------------
    def close(self) -> None:
        try:
            for model_id in list(self._collections):
                self.release(model_id)
        finally:
            if self._engine is not None:
                self._engine.dispose()
                self._engine = self._sessions = None

    def __enter__(self) -> App:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def open_deployment(
    settings: Settings, pipeline: FacePipeline | None = None, read_only: bool = False
) -> Iterator[Deployment]:
    """For scripts and tests: an App of their own around one deployment (prepared for writes unless
    `read_only`), closed with it. A long-running process opens one App and asks it for deployment() instead."""
    with App.open(settings, must_exist=read_only) as app:
        yield app.deployment(pipeline, write=not read_only)


def _sqlite_file_exists(url: str) -> bool:
    try:
        parsed = parse_database_url(url)
    except ConfigError:  # make_engine names the malformed URL
        return True
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return True
    return Path(parsed.database).expanduser().is_file()


def _no_store(settings: Settings) -> NoStore:
    where = str(settings.data_dir) if not settings.database_url else mask_url(settings.database_url)
    return NoStore(f"no identity store at {where}: run `identity init` (or enroll)", store=where)
