"""The application core: one place makes engines, one place changes the schema, and by which policy."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from identity.config import Settings
from identity.store.sql.db import make_engine
from identity.store.sql.migrate import current_revision, head_revision, upgrade
from identity_cli.main import main

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = [p for folder in ("identity", "cli") for p in (ROOT / folder).rglob("*.py")]


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def callers_of(name: str) -> set[str]:
    """Product modules that call `name(...)` (a plain or attribute call)."""
    found = set()
    for path in PRODUCT:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
                if called == name:
                    found.add(str(path.relative_to(ROOT)))
    return found


def test_one_place_makes_engines_and_one_place_migrates() -> None:
    assert callers_of("make_engine") == {"identity/app/core.py"}
    assert callers_of("upgrade") == {"identity/app/schema.py", "identity/store/sql/migrate.py"}  # alembic's own


def older_store(settings: Settings) -> str:
    """A store left at the revision before head, as an older version of identity would leave it."""
    settings.data_dir.mkdir(parents=True)
    engine = make_engine(settings.sql_url)
    upgrade(engine, "0004")
    revision = current_revision(engine)
    engine.dispose()
    return revision


def test_an_older_store_is_upgraded_only_by_init(capsys, clean_env) -> None:
    settings = Settings.load()
    before = older_store(settings)
    for command in (
        ["person", "list", "--json"],
        ["person", "add", "--external-id", "E-1", "--json"],
        ["doctor", "--json"],
    ):
        code, out, err = run(capsys, *command)
        assert code == 4, (command, err)
        error = json.loads(out)
        assert error["error_type"] == "SchemaOutdated" and "run `identity init`" in error["error"], command
    code, out, _ = run(capsys, "version", "--json")  # a version check reads the store as it is
    assert code == 0 and json.loads(out)["schema_database"] == before
    engine = make_engine(settings.sql_url)
    assert current_revision(engine) == before  # nothing above changed it
    code, out, err = run(capsys, "init", "--json")
    assert code == 0, err
    assert (json.loads(out)["schema_before"], current_revision(engine)) == (before, head_revision())
    engine.dispose()
    assert run(capsys, "person", "add", "--external-id", "E-1")[0] == 0


def test_a_fresh_store_is_created_by_a_command_that_writes(capsys, clean_env) -> None:
    assert run(capsys, "person", "list")[0] == 4  # reading creates nothing
    assert not (Settings.load().data_dir / "identity.db").exists()
    assert run(capsys, "person", "add", "--external-id", "E-1")[0] == 0  # writing creates the store at head
    engine = make_engine(Settings.load().sql_url)
    assert current_revision(engine) == head_revision()
    engine.dispose()


def test_the_app_holds_each_collection_once_and_lends_the_others_for_a_block(tmp_path: Path) -> None:
    from identity.app.core import App
    from identity.errors import StoreLocked

    settings = Settings(data_dir=tmp_path / "data")
    with App.open(settings) as app:
        dep = app.deployment(write=True)
        model, dim = dep.model.model_id, dep.model.dim
        assert app.collections(model, dim).faces is dep.index  # opened once, held for the App's lifetime
        assert app.deployment() is dep  # kept per App: prepared for writes serves reads too
        with App.open(settings) as other, pytest.raises(StoreLocked):
            other.collections(model, dim)  # the embedded engine: one holder at a time
        dep.release()
        with App.open(settings) as other:
            with other.borrow(model, dim) as lent:
                assert lent.faces.count() == 0
            with other.borrow(model, dim):  # lent for the block only: closed after it, so it opens again
                pass
        assert app.deployment().index is not dep.index  # asked again after release: a fresh opening


def test_the_app_connects_on_first_use(tmp_path: Path) -> None:
    """A command that needs no store (eval on a folder, detect with a pinned model) creates none."""
    from identity.app.core import App

    settings = Settings(data_dir=tmp_path / "data", model="dlib-resnet@2")
    with App.open(settings) as app:
        assert app.pipeline().model_id.startswith("dlib-resnet@2")
        assert not settings.data_dir.exists()
        assert app.schema_before is None  # first use: the store is created at head
    assert (settings.data_dir / "identity.db").is_file()


def test_only_the_registry_records_and_activates_models() -> None:
    """ensure_model and activate_model are the registry's (identity/app/registry.py); model_rows defines them."""
    importers = set()
    for path in PRODUCT:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and {"ensure_model", "activate_model"} & {a.name for a in node.names}:
                importers.add(str(path.relative_to(ROOT)))
    assert importers == {"identity/app/registry.py"}
    assert callers_of("ensure_model") == callers_of("activate_model") == {"identity/app/registry.py"}


def store_state(settings: Settings) -> tuple[list[tuple], list[tuple]]:
    """The model rows and the binding record, as SQL holds them."""
    from sqlalchemy import text

    engine = make_engine(settings.sql_url)
    try:
        with engine.connect() as conn:
            models = [tuple(r) for r in conn.execute(text("SELECT name, version, activated_at FROM models"))]
            binding = [tuple(r) for r in conn.execute(text("SELECT vector_store FROM deployment"))]
    finally:
        engine.dispose()
    return models, binding


def test_a_deployment_for_reading_writes_nothing_and_one_for_writes_records_and_binds(clean_env) -> None:
    from identity.app.core import App

    settings = Settings.load()
    with App.open(settings) as app:
        _ = app.sessions  # a store with its schema, and nothing else (as `person add` leaves it)
    with App.open(settings, must_exist=True) as app:
        dep = app.deployment()
        assert (dep.writes, dep.model.id) == (False, None)  # a store that never recorded the model reads as empty
        assert dep.gallery_persons() == 0 and app.deployment() is dep
    assert store_state(settings) == ([], [])  # no model row, no binding
    with App.open(settings) as app:
        dep = app.deployment(write=True)
        assert dep.writes and dep.model.id is not None
        assert app.deployment() is dep
    models, binding = store_state(settings)
    assert len(models) == 1 and models[0][2] is not None  # recorded and, the store's first, active
    assert len(binding) == 1 and binding[0][0] == dep.store.uri


def test_reads_on_a_store_without_a_model_row_record_none(capsys, clean_env, lfw_dir: Path) -> None:
    """audit and person list record nothing; search keeps its JSON (an empty gallery) and logs the search,
    whose row names the model, which stays inactive: choosing the store's model is the first writer's."""
    assert run(capsys, "person", "add", "--external-id", "E-1")[0] == 0
    settings = Settings.load()
    for command in (["audit", "E-1", "--json"], ["person", "list", "--json"], ["searches", "list", "--json"]):
        code, _, err = run(capsys, *command)
        assert code == 0, (command, err)
    assert store_state(settings) == ([], [])
    photo = next(p for p in sorted((lfw_dir / "Aaron_Peirsol").iterdir()))
    code, out, err = run(capsys, "search", str(photo), "--json")
    assert code == 0, err
    [result] = json.loads(out)["results"]
    assert result["search_id"] and [f["decision"] for f in result["faces"]] == ["unknown"]
    assert "the gallery is empty" in err
    models, binding = store_state(settings)
    assert [m[2] for m in models] == [None] and binding == []
