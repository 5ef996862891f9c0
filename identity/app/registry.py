"""The model registry: the only code that resolves, records and activates models.

Which model pack a command uses: a pinned setting, else the store's active model, else the default
(`default_model`: the best pack installed now, e.g. YuNet's once its file is installed). The default
is resolved once: the first command that writes records it as the store's active model, so
installing a detector later never changes an existing store (`identity reindex --model` does).

`Settings.model` None means "follow the store": `identity reindex` switches the active
model in SQL and every later command picks it up without a configuration change. A
value (IDENTITY_MODEL, the config file) pins a model for this process only; the
store's pointer is left alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from identity.config import Settings
from identity.errors import IdentityError, NoStore
from identity.faces import build_pack, resolve
from identity.faces.packs import default_model
from identity.store.sql.db import Session, transaction
from identity.store.sql.model_rows import activate_model, active_model, ensure_model, find_model, records_active_model
from identity.store.sql.tables import Model

if TYPE_CHECKING:
    from identity.app.core import App


@dataclass(frozen=True)
class ModelChoice:
    model: str  # a reference build_pack accepts
    source: str  # "setting", "store" or "default"
    store_active: str | None  # the store's active model id, whether or not it is used
    default_reason: str | None = None  # source "default": why default_model picked this pack

    def describe(self) -> str:
        if self.source == "setting":
            note = (
                f"; the store's active model is {self.store_active}"
                if self.store_active not in (None, self.model)
                else ""
            )
            return f"pinned by the model setting (IDENTITY_MODEL or the config file){note}"
        if self.source == "store":
            return "the store's active model"
        return f"the default: the store has no active model yet ({self.default_reason})"


def choose_model(settings: Settings, store_active: str | None) -> ModelChoice:
    if settings.model:
        return ModelChoice(settings.model, "setting", store_active)
    if store_active:
        return ModelChoice(store_active, "store", store_active)
    model, reason = default_model(settings)
    return ModelChoice(model, "default", None, reason)


def read_active(app: App) -> str | None:
    """The store's active model id; None before the schema records one (new store, older schema read as is)."""
    if not records_active_model(app.engine):
        return None
    with app.sessions() as session:
        model = active_model(session)
        return model.model_id if model else None


def resolve_model(app: App, ask_store: bool = False) -> ModelChoice:
    """The model for this process; asks the store only when no setting pins one (or `ask_store`).

    A store that does not exist yet is not created just to be asked.
    """
    settings = app.settings
    if settings.model and not ask_store:
        return choose_model(settings, None)
    return choose_model(settings, read_active(app) if app.store_exists() else None)


def measured_model(settings: Settings) -> str:
    """The pack an evaluation measures: the pinned one, else the default, never silently the store's pointer."""
    return choose_model(settings, None).model


def shown_model(app: App) -> tuple[str | None, str]:
    """The model in use and why, for showing the settings: the store is read as the App's policy allows; a store
    that does not exist gives the setting's model or the default, one that cannot be read says so."""
    try:
        choice = resolve_model(app, ask_store=True)
    except NoStore:
        choice = choose_model(app.settings, None)
    except IdentityError as exc:  # the settings are still worth showing when the store is down
        return app.settings.model, f"unknown: {exc}"
    return model_id_of(choice, app.settings), choice.describe()


def model_id_of(choice: ModelChoice, settings: Settings) -> str:
    """The chosen model's id (with its weights digest), loading no weights."""
    return choice.model if choice.source == "store" else build_pack(choice.model, settings).model_id


def detector_of(choice: ModelChoice, settings: Settings) -> str:
    """The detector the chosen pack runs, as `identity models list` names it (why: choice.describe())."""
    return resolve(choice.model, settings.data_dir).info.detector


def chosen_model_row(app: App) -> Model | None:
    """The record of the model this process uses (None while it has none)."""
    model_id = model_id_of(resolve_model(app), app.settings)
    with app.sessions() as session:
        return find_model(session, model_id)


def recorded_model(app: App, model_id: str) -> Model | None:
    """The model's record, if a command that writes made one (a read never does)."""
    with app.sessions() as session:
        return find_model(session, model_id)


def record_model(app: App, model_id: str, dim: int, activate_first: bool = True) -> Model:
    """The model's record, created on first use; a store's first model becomes its active one
    (unless not `activate_first`: a record that only names the model, as a search log entry's)."""
    with transaction(app.sessions) as session:
        model = ensure_model(session, model_id, dim)
        if activate_first and active_model(session) is None:
            activate_model(session, model)
        return model


def record_target(session: Session, model_id: str, dim: int) -> Model:
    """The record of a model a re-index fills, in the caller's transaction; not active until switch_to()."""
    return ensure_model(session, model_id, dim)


def switch_to(session: Session, model: Model) -> Model | None:
    """Make `model` the store's active one (the caller's transaction makes it atomic); the one it replaces."""
    return activate_model(session, model)
