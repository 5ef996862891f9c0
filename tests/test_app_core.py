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
    for command in (["person", "list", "--json"], ["person", "add", "--external-id", "E-1", "--json"], ["doctor", "--json"]):
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
    from identity.app.deployment import deployment

    settings = Settings(data_dir=tmp_path / "data")
    with App.open(settings) as app:
        dep = deployment(app)
        model, dim = dep.model.model_id, dep.model.dim
        assert app.collections(model, dim).faces is dep.index  # opened once, held for the App's lifetime
        assert deployment(app).index is dep.index
        with App.open(settings) as other, pytest.raises(StoreLocked):
            other.collections(model, dim)  # the embedded engine: one holder at a time
        dep.release()
        with App.open(settings) as other:
            with other.borrow(model, dim) as lent:
                assert lent.faces.count() == 0
            with other.borrow(model, dim):  # lent for the block only: closed after it, so it opens again
                pass
        assert deployment(app).index is not dep.index  # asked again after release: a fresh opening


def test_the_app_connects_on_first_use(tmp_path: Path) -> None:
    """A command that needs no store (eval on a folder, detect with a pinned model) creates none."""
    from identity.app.core import App

    settings = Settings(data_dir=tmp_path / "data", model="dlib-resnet@2")
    with App.open(settings) as app:
        assert app.pipeline().model_id.startswith("dlib-resnet@2")
        assert not settings.data_dir.exists()
        assert app.schema_before is None  # first use: the store is created at head
    assert (settings.data_dir / "identity.db").is_file()
