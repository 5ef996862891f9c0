"""`identity init` and `identity version`: the store's schema and the active model's collection as the user sees them.

Migrations run only under identity.app.schema's policy, applied by the App: `init` opens it
with the upgrade policy (the one command that upgrades an older store), `version` as it is.
`init` is safe to run any number of times: migrations are idempotent and the model record,
collection and person templates are created only when missing (App.deployment(write=True)).
It binds a new deployment to its vector store, and with `rebind` moves that binding (see
identity.app.binding).
"""

from __future__ import annotations

from dataclasses import dataclass

from identity import __version__
from identity.app.binding import rebind_vector_store
from identity.app.core import App
from identity.app.registry import ModelChoice, choose_model, detector_of, model_id_of, read_active
from identity.config import Settings
from identity.errors import IdentityError, NoStore
from identity.faces import build_pack
from identity.store.sql.migrate import current_revision, head_revision


@dataclass(frozen=True)
class InitReport:
    database: str
    schema_before: str | None
    schema_after: str | None
    model_id: str
    dim: int
    collection: str
    vectors: int
    vector_engine: str
    vector_store: str  # the store this deployment is bound to (see identity.app.binding)
    rebound_from: str | None = None  # with --rebind: the store it was bound to before


def init_store(app: App, rebind: bool = False, actor: str | None = None) -> InitReport:
    """Create or upgrade the schema (by the App's policy) and the active model's record and collection.

    `rebind`: bind the deployment to this process's vector store, whatever it was bound to (audited).
    """
    schema_before = app.schema_before  # the policy first, so an older store names its active model
    rebound_from = rebind_vector_store(app, actor) if rebind else None
    dep = app.deployment(write=True)  # binds the store, records the model, builds missing templates
    return InitReport(
        database=app.engine.url.render_as_string(hide_password=True),
        schema_before=schema_before,
        schema_after=current_revision(app.engine),
        model_id=dep.model.model_id,
        dim=dep.model.dim,
        collection=dep.model.collection,
        vectors=dep.index.count(),
        vector_engine="qdrant-edge" if app.settings.embedded else "qdrant-server",
        vector_store=dep.store.uri,
        rebound_from=rebound_from,
    )


@dataclass(frozen=True)
class Versions:
    """What `identity version` prints: the package, the schema (code and database),
    the model in use and where it runs."""

    identity: str
    schema_code: str
    schema_database: str | None  # the store's revision, or why there is none to read
    model: str
    model_source: str
    store_active_model: str | None
    detector: str  # what the model's pack detects faces with; why it runs: model_source
    faces_device: str  # the faces.device setting (IDENTITY_FACES__DEVICE)
    detector_runs_on: str  # e.g. "cpu (dlib HOG runs on the CPU only)"; ONNX detectors: their providers
    recognizer_runs_on: str  # the torch device or the ONNX Runtime providers the setting gives on this machine


def versions(app: App) -> Versions:
    """Never raises for the store: a missing or unreadable one is reported in `schema_database` (none is created).

    Open the App with must_exist and the as-is schema policy: a version check changes nothing.
    """
    db_schema, choice, source = _store_schema(app)
    detector_runs_on, recognizer_runs_on = _runs_on(choice.model, app.settings)
    return Versions(
        identity=__version__,
        schema_code=head_revision(),
        schema_database=db_schema,
        model=model_id_of(choice, app.settings),
        model_source=source,
        store_active_model=choice.store_active,
        detector=detector_of(choice, app.settings),
        faces_device=app.settings.faces.device,
        detector_runs_on=detector_runs_on,
        recognizer_runs_on=recognizer_runs_on,
    )


def _runs_on(model: str, settings: Settings) -> tuple[str, str]:
    """Where the pack's detector and recognizer run: the pack is built, not loaded (no weights are read)."""
    try:
        pack = build_pack(model, settings)
    except IdentityError as exc:  # e.g. a pinned pack whose weights file is gone: the version still prints
        return f"unavailable: {exc}", f"unavailable: {exc}"
    return pack.detector.runs_on(), pack.recognizer.runs_on()


def _store_schema(app: App) -> tuple[str | None, ModelChoice, str]:
    settings = app.settings
    try:
        revision = current_revision(app.engine)
        if revision != head_revision():  # the model rows have columns this store lacks: not read
            choice = choose_model(settings, None)
            return revision, choice, f"{choice.describe()}; the store's schema is older: run `identity init`"
        choice = choose_model(settings, read_active(app))
        return revision, choice, choice.describe()
    except NoStore as exc:
        choice = choose_model(settings, None)
        return exc.message, choice, choice.describe()
    except IdentityError as exc:
        source = "the model setting" if settings.model else "the default; the unreadable store may name another"
        return f"unavailable: {exc}", choose_model(settings, None), source
