"""The services behind the CLI's person, jobs, schema and model commands, called from Python as the
HTTP API will call them; and the rule that the CLI reaches the store only through services."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from identity.app.core import App
from identity.app.schema import AS_IS, UPGRADE
from identity.config import Settings
from identity.errors import IdentityError, NoStore, NotFound
from identity.serialize import to_json
from identity.services.maintenance.store_info import init_store, versions
from identity.services.models.records import LocalPackInfo, show_model
from identity.services.queue.jobs import (
    CANCELLABLE_STATES,
    CancelReport,
    cancel_jobs,
    list_jobs,
    queue_enrollment,
    retry_jobs,
)
from identity.services.records.persons import add_person, list_people, show_person, update_person
from identity.store.sql import jobs as job_rows
from identity.store.sql.db import transaction

CLI_DIR = Path(__file__).resolve().parent.parent / "cli"


@pytest.fixture(params=["sqlite", "postgres"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    url = None if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    return Settings(data_dir=tmp_path / "data", database_url=url, workers=1)


@pytest.fixture
def app(settings: Settings) -> Iterator[App]:
    """The application core's SQL side, opened once as a long-running process would."""
    with App.open(settings) as opened:
        yield opened


# --- persons ----------------------------------------------------------------------------


def test_person_services_add_list_show_update(app: App) -> None:
    added = add_person(app, "p1", "P One", {"team": "a"})
    assert list(to_json(added)) == ["id", "external_id", "display_name", "attributes", "created_at", "faces"]
    assert (added.external_id, added.display_name, added.attributes, added.faces) == ("p1", "P One", {"team": "a"}, 0)
    assert add_person(app, "p2").display_name is None
    with pytest.raises(IdentityError, match="person 'p1' already exists"):
        add_person(app, "p1")

    assert [(p.external_id, p.faces) for p in list_people(app).items] == [("p1", 0), ("p2", 0)]
    assert [p.external_id for p in list_people(app, query="one").items] == ["p1"]
    assert [p.external_id for p in list_people(app, limit=1).items] == ["p1"]
    shown = show_person(app, added.id)
    assert shown == show_person(app, "p1")
    assert (shown.id, shown.display_name, shown.attributes, shown.faces) == (added.id, "P One", {"team": "a"}, 0)
    with pytest.raises(NotFound, match="no person with external id or uuid 'nobody'"):
        show_person(app, "nobody")

    updated = update_person(app, "p1", "Uno", {"room": "3"}, remove=["team"])
    assert (updated.display_name, updated.attributes, updated.faces) == ("Uno", {"room": "3"}, 0)
    assert to_json(updated)["faces"] == 0  # a count on every answer, `person update --json` and PATCH as GET
    assert show_person(app, "p1").attributes == {"room": "3"}


@pytest.mark.parametrize(
    "command",
    [
        ["person", "list"],
        ["person", "show", "x"],
        ["jobs", "list"],
        ["jobs", "retry"],
        ["jobs", "cancel", "--state", "queued"],
    ],
    ids=["person list", "person show", "jobs list", "jobs retry", "jobs cancel"],
)
def test_read_only_commands_on_an_empty_data_dir_create_nothing(capsys, clean_env, command) -> None:
    from identity_cli.main import main

    settings = Settings.load()
    assert main([*command, "--json"] if command[-1] != "retry" else command) == 4
    assert f"no identity store at {settings.data_dir}: run `identity init`" in capsys.readouterr().err
    assert not settings.data_dir.exists()
    with pytest.raises(NoStore):  # what they open: the core's store, read-only
        _ = App.open(settings, must_exist=True).sessions  # connecting is where it refuses


# --- jobs -------------------------------------------------------------------------------


def test_job_services_list_retry_cancel(app: App) -> None:
    batch, queued = queue_enrollment(app, [job_rows.JobSpec(f"/img/{i}.jpg", f"P{i}") for i in range(3)])
    assert queued == 3
    listed = list_jobs(app).items
    assert [j.external_id for j in listed] == ["P2", "P1", "P0"]  # newest first
    assert {(j.batch, j.status, j.attempts) for j in listed} == {(batch, "queued", 0)}
    assert list(to_json(listed[0])) == [
        "id",
        "batch",
        "status",
        "outcome",
        "reason",
        "source_path",
        "external_id",
        "attempts",
        "lease_owner",
        "updated_at",
    ]
    ids = {j.external_id: j.id for j in listed}
    assert [j.external_id for j in list_jobs(app, batch=batch, limit=1).items] == ["P2"]

    _claim_one(app, fail_with="empty file")  # P0: a worker fails it
    [failed] = list_jobs(app, state="failed").items
    assert (failed.external_id, failed.outcome, failed.reason) == ("P0", "failed", "empty file")
    assert retry_jobs(app) == 1 and list_jobs(app, state="queued").total == 3

    report = cancel_jobs(app, [ids["P1"], 999])
    assert report == CancelReport(cancelled=[ids["P1"]], running_left_alone=[], not_cancellable=[999])
    assert to_json(report) == {"cancelled": [ids["P1"]], "running_left_alone": [], "not_cancellable": [999]}
    _claim_one(app)  # P0 again: running under a live lease
    assert cancel_jobs(app, state="running").running_left_alone == [ids["P0"]]
    assert cancel_jobs(app, state="running", force=True).cancelled == [ids["P0"]]
    assert retry_jobs(app, failed_only=False) == 0  # cancelled jobs come back only when asked
    assert retry_jobs(app, cancelled=True, batch=batch) == 2
    assert CANCELLABLE_STATES == ("queued", "running", "failed")


def _claim_one(app: App, fail_with: str | None = None) -> None:
    """What a worker does to the oldest queued job: claim it, and fail it when `fail_with` is given."""
    with transaction(app.sessions) as session:
        [job] = job_rows.claim(session, "w", 1, lease_seconds=600)
        if fail_with:
            job_rows.finish(session, job.id, "failed", fail_with)


# --- schema and models ------------------------------------------------------------------


def test_versions_on_a_fresh_and_an_initialised_store(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    with App.open(settings, must_exist=True, schema=AS_IS) as app:
        fresh = versions(app)
    assert fresh.schema_database == f"no identity store at {settings.data_dir}: run `identity init` (or enroll)"
    assert fresh.store_active_model is None and fresh.model_source.startswith(
        "the default: the store has no active model yet ("
    )
    assert not settings.data_dir.exists()  # asking created nothing

    with App.open(settings, schema=UPGRADE) as app:
        report = init_store(app)
    assert report.schema_after == fresh.schema_code
    with App.open(settings, must_exist=True, schema=AS_IS) as app:
        after = versions(app)
    assert (after.schema_database, after.model, after.store_active_model) == (
        fresh.schema_code,
        report.model_id,
        report.model_id,
    )
    assert after.model_source == "the store's active model"
    assert list(to_json(after)) == [
        "identity",
        "schema_code",
        "schema_database",
        "model",
        "model_source",
        "store_active_model",
        "detector",
        "faces_device",
        "detector_runs_on",
        "recognizer_runs_on",
    ]  # what runs where: added by issue 24
    assert after.detector.startswith("dlib HOG")


def test_versions_of_an_unreachable_store_say_why() -> None:
    with App.open(
        Settings(database_url="postgresql://postgres@127.0.0.1:1/identity"), must_exist=True, schema=AS_IS
    ) as app:
        down = versions(app)
    assert down.schema_database.startswith("unavailable: cannot reach database")
    assert down.model_source == "the default; the unreadable store may name another"


def test_show_model_is_a_read_that_records_nothing(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    with App.open(settings) as app:
        looked = show_model(app, "dlib-resnet@2")
        in_use = show_model(app)
    assert (looked.in_store, looked.collection, looked.dim, looked.local_pack) == (False, None, 128, None)
    assert (in_use.in_store, in_use.store_active, in_use.model) == (False, False, looked.model)
    assert not settings.data_dir.exists()  # a fresh data dir is not created to be asked
    with App.open(settings) as app:
        app.deployment(write=True)  # what the first command that writes does
    with App.open(settings) as app:
        recorded = show_model(app)
    assert recorded.in_store and recorded.store_active and recorded.collection
    shown = to_json(recorded)
    assert shown["threshold"] == recorded.threshold and "local_pack" not in shown and "promoted" not in shown


def test_show_model_of_a_local_pack_adds_its_manifest(tmp_path: Path, save_stand_in) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    ref = save_stand_in(settings.data_dir, "team-ft", training={"epochs": 2})
    with App.open(settings) as app:
        info = show_model(app, ref)
    assert info.local_pack == LocalPackInfo(
        promoted=True,
        base="dlib-resnet@2",
        folder=str(settings.data_dir / "models" / ref),
        created_at=info.local_pack.created_at,
        training={"epochs": 2},
    )
    shown = to_json(info)
    assert list(shown)[-5:] == ["promoted", "base", "folder", "created_at", "training"]  # flat, after the record


# --- layering ---------------------------------------------------------------------------


def test_no_cli_module_imports_identity_store() -> None:
    files = sorted(CLI_DIR.rglob("*.py"))
    assert files, CLI_DIR
    offenders = [
        f"{path.name}:{line}: {name}"
        for path in files
        for line, name in _imports(path)
        if name == "identity.store" or name.startswith("identity.store.")
    ]
    assert offenders == []


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every module (and `from X import name` as X.name) a file imports, wherever the import sits."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found
