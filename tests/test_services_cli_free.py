"""The services behind the CLI's person, jobs, schema and model commands, called from Python as the
HTTP API will call them; and the rule that the CLI reaches the store only through services."""

from __future__ import annotations

from pathlib import Path

import pytest

from identity.config import Settings
from identity.errors import IdentityError, NoStore, NotFound
from identity.services.persons import add_person, list_people, show_person, update_person
from identity.services.schema import init_store, versions


@pytest.fixture(params=["sqlite", "postgres"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    url = None if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    return Settings(data_dir=tmp_path / "data", database_url=url, workers=1)


# --- persons ----------------------------------------------------------------------------

def test_person_services_add_list_show_update(settings: Settings) -> None:
    added = add_person(settings, "p1", "P One", {"team": "a"})
    assert list(added.as_dict()) == ["id", "external_id", "display_name", "attributes", "created_at", "faces"]
    assert (added.external_id, added.display_name, added.attributes, added.faces) == ("p1", "P One", {"team": "a"}, 0)
    assert add_person(settings, "p2").display_name is None
    with pytest.raises(IdentityError, match="person 'p1' already exists"):
        add_person(settings, "p1")

    assert [(p.external_id, p.faces) for p in list_people(settings)] == [("p1", 0), ("p2", 0)]
    assert [p.external_id for p in list_people(settings, query="one")] == ["p1"]
    assert [p.external_id for p in list_people(settings, limit=1)] == ["p1"]
    shown = show_person(settings, added.id)
    assert shown == show_person(settings, "p1")
    assert (shown.id, shown.display_name, shown.attributes, shown.faces) == (added.id, "P One", {"team": "a"}, 0)
    with pytest.raises(NotFound, match="no person with external id or uuid 'nobody'"):
        show_person(settings, "nobody")

    updated = update_person(settings, "p1", "Uno", {"room": "3"}, remove=["team"])
    assert (updated.display_name, updated.attributes, updated.faces) == ("Uno", {"room": "3"}, None)
    assert "faces" not in updated.as_dict()  # an update counts no faces, as `person update --json` prints
    assert show_person(settings, "p1").attributes == {"room": "3"}


@pytest.mark.parametrize("read", [
    lambda s: list_people(s), lambda s: show_person(s, "x"),
], ids=["list_people", "show_person"])
def test_read_only_services_on_an_empty_data_dir_create_nothing(tmp_path: Path, read) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    with pytest.raises(NoStore, match=f"no identity store at {settings.data_dir}: run `identity init`"):
        read(settings)
    assert not settings.data_dir.exists()


# --- schema and models ------------------------------------------------------------------

def test_versions_on_a_fresh_and_an_initialised_store(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    fresh = versions(settings)
    assert fresh.schema_database == f"no identity store at {settings.data_dir}: run `identity init` (or enroll)"
    assert (fresh.store_active_model, fresh.model_source) == (None, "the default: the store has no active model yet")
    assert not settings.data_dir.exists()  # asking created nothing

    report = init_store(settings)
    assert report.schema_after == fresh.schema_code
    after = versions(settings)
    assert (after.schema_database, after.model, after.store_active_model) == (
        fresh.schema_code, report.model_id, report.model_id)
    assert after.model_source == "the store's active model"
    assert list(after.as_dict()) == ["identity", "schema_code", "schema_database", "model", "model_source",
                                     "store_active_model"]


def test_versions_of_an_unreachable_store_say_why() -> None:
    down = versions(Settings(database_url="postgresql://postgres@127.0.0.1:1/identity"))
    assert down.schema_database.startswith("unavailable: cannot reach database")
    assert down.model_source == "the default; the unreadable store may name another"

