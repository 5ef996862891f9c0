"""The services behind the CLI's person, jobs, schema and model commands, called from Python as the
HTTP API will call them; and the rule that the CLI reaches the store only through services."""

from __future__ import annotations

from pathlib import Path

from identity.config import Settings
from identity.services.schema import init_store, versions


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

