"""The store's schema: opening it at head, `identity init` and `identity version`.

Migrations run here (and in services.init), never in the CLI or the HTTP API.
"""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

from identity import __version__
from identity.config import Settings
from identity.errors import IdentityError, NoStore
from identity.faces import build_pipeline
from identity.services.active_model import ModelChoice, choose_model, model_id_of, read_active, with_model
from identity.services.init import InitReport, initialize
from identity.services.runtime import Runtime
from identity.store.sql.migrate import current_revision, head_revision, upgrade


@contextmanager
def open_at_head(settings: Settings, must_exist: bool = False) -> Iterator[Runtime]:
    """The store with its schema at head; `must_exist` (read-only commands): NoStore rather than create one."""
    with Runtime.open(settings, must_exist=must_exist) as runtime:
        upgrade(runtime.engine)
        yield runtime


def init_store(settings: Settings, rebind: bool = False, actor: str | None = None) -> InitReport:
    """Create or upgrade the schema and the active model's collection (see services.init.initialize)."""
    with open_at_head(settings) as runtime:  # at head first, so a store from an older schema names its active model
        pipeline = build_pipeline(with_model(settings, choose_model(settings, read_active(runtime))))
        return initialize(runtime, pipeline.model_id, pipeline.dim, rebind, actor)


@dataclass(frozen=True)
class Versions:
    """What `identity version` prints: the package, the schema (code and database) and the model in use."""

    identity: str
    schema_code: str
    schema_database: str | None  # the store's revision, or why there is none to read
    model: str
    model_source: str
    store_active_model: str | None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def versions(settings: Settings) -> Versions:
    """Never raises for the store: a missing or unreadable one is reported in `schema_database` (none is created)."""
    db_schema, choice, source = _store_schema(settings)
    return Versions(identity=__version__, schema_code=head_revision(), schema_database=db_schema,
                    model=model_id_of(choice, settings), model_source=source, store_active_model=choice.store_active)


def _store_schema(settings: Settings) -> tuple[str | None, ModelChoice, str]:
    try:
        with Runtime.open(settings, must_exist=True) as runtime:  # a version check creates no store
            revision = current_revision(runtime.engine)
            choice = choose_model(settings, read_active(runtime))
            return revision, choice, choice.describe()
    except NoStore as exc:
        choice = choose_model(settings, None)
        return exc.message, choice, choice.describe()
    except IdentityError as exc:
        source = "the model setting" if settings.model else "the default; the unreadable store may name another"
        return f"unavailable: {exc}", choose_model(settings, None), source
