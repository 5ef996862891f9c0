"""`identity init` and `identity version`: the store's schema as the user sees it.

Migrations run only under identity.app.schema's policy; `init` is the one command that
upgrades an older store.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from identity import __version__
from identity.config import Settings
from identity.errors import IdentityError, NoStore
from identity.faces import build_pipeline
from identity.app.registry import ModelChoice, choose_model, model_id_of, read_active, with_model
from identity.services.init import InitReport, initialize
from identity.app.runtime import Runtime
from identity.app.schema import AS_IS, UPGRADE
from identity.store.sql.migrate import current_revision, head_revision


def init_store(settings: Settings, rebind: bool = False, actor: str | None = None) -> InitReport:
    """Create or upgrade the schema and the active model's collection (see services.init.initialize)."""
    with Runtime.open(settings, schema=UPGRADE) as runtime:  # at head first, so an older store names its active model
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
        with Runtime.open(settings, must_exist=True, schema=AS_IS) as runtime:  # a version check changes nothing
            revision = current_revision(runtime.engine)
            if revision != head_revision():  # the model rows have columns this store lacks: not read
                choice = choose_model(settings, None)
                return revision, choice, f"{choice.describe()}; the store's schema is older: run `identity init`"
            choice = choose_model(settings, read_active(runtime))
            return revision, choice, choice.describe()
    except NoStore as exc:
        choice = choose_model(settings, None)
        return exc.message, choice, choice.describe()
    except IdentityError as exc:
        source = "the model setting" if settings.model else "the default; the unreadable store may name another"
        return f"unavailable: {exc}", choose_model(settings, None), source
