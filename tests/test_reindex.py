"""`identity reindex`: re-embedding a real gallery with a stand-in fine-tuned pack, switching,
rolling back, resuming after failures, and erasure reaching every model's collection."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from sqlalchemy import func, select

from identity.app.core import App, open_deployment
from identity.config import EnrollSettings, Settings
from identity.errors import IdentityError
from identity.services.curation.edits import delete_person
from identity.services.enrollment.inputs import from_directory
from identity.services.enrollment.writer import EnrollmentWriter
from identity.services.maintenance.doctor import diagnose, repair
from identity.services.models.reindex import reindex
from identity.services.queue.loop import process_queue, queue_jobs
from identity.services.records.audit import audit_person
from identity.services.search.identify import SearchOptions, search_image
from identity.services.search.log import list_searches
from identity.store.sql.tables import AuditEvent, Face, FaceStatus, Model
from identity.store.vectors import open_vector_index

PEOPLE = ["Aaron_Peirsol", "Al_Gore", "Alejandro_Toledo"]
OLD = "dlib-resnet@2"


@pytest.fixture(params=["sqlite", "postgres"])
def gallery(request, tmp_path: Path, lfw_dir: Path, save_stand_in) -> tuple[Settings, Path]:
    """3 people x 2 lfw-dev photos enrolled with the default pack, and the stand-in pack saved."""
    url = None if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    settings = Settings(data_dir=tmp_path / "data", database_url=url, workers=1, enroll=EnrollSettings(chunk_size=2))
    root = tmp_path / "photos"
    for person in PEOPLE:
        (root / person).mkdir(parents=True)
        for image in sorted((lfw_dir / person).iterdir())[:2]:
            shutil.copy(image, root / person / image.name)
    with open_deployment(settings) as dep:
        batch, _ = queue_jobs(dep.app, from_directory(root))
        writer = EnrollmentWriter(dep)
        summary = process_queue(dep.app, writer, batch, 1)
        assert summary.counts == {"enrolled": 6}, summary.counts
    save_stand_in(settings.data_dir)
    return settings, root


def photo(root: Path, person: str, index: int = 0) -> Path:
    return sorted((root / person).iterdir())[index]


def faces_per_model(settings: Settings) -> dict[str, int]:
    with open_deployment(settings) as dep, dep.app.sessions() as session:
        rows = session.execute(
            select(Model, func.count()).join(Face, Face.model_id == Model.id).group_by(Model).order_by(Model.id)
        ).all()
        assert session.scalar(select(func.count()).select_from(Face).where(Face.status == FaceStatus.pending)) == 0
    return {model.model_id: count for model, count in rows}


def test_reindex_switches_keeps_history_rolls_back_and_erasure_reaches_both(gallery) -> None:
    settings, root = gallery
    with open_deployment(settings) as dep:
        before = search_image(dep.app, str(photo(root, "Al_Gore")), SearchOptions(actor="tester"))
        assert dep.model.model_id == OLD and dep.choice.source == "store"
        audit_person(dep.app, "Al_Gore", actor="auditor")

    with App.open(settings) as app:
        summary = reindex(app, "dlib-resnet-ft")
    assert (summary.model_before, summary.faces, summary.reindexed, summary.failed) == (OLD, 6, 6, [])
    assert summary.switched and summary.model_after.startswith("dlib-resnet-ft@1+")
    assert summary.indexed == {OLD: 6, summary.model_after: 6}
    new = summary.model_after

    with open_deployment(settings) as dep:
        assert dep.model.model_id == new and dep.choice.source == "store"
        [face] = search_image(dep.app, str(photo(root, "Al_Gore", 1)), SearchOptions()).faces
        assert (
            face.best.person.external_id == "Al_Gore" and face.best.faces[0].score > 0.999
        )  # the same bytes as enrolled
        assert before.search_id in [s.search_id for s in list_searches(dep.app, "Al_Gore").items]
        report = audit_person(dep.app, "Al_Gore")
        assert len(report.faces) == 2  # the active model's rows, not both models'
        assert before.search_id in [s.search_id for s in report.searches]
        with dep.app.sessions() as session:
            [switch] = session.scalars(select(AuditEvent).where(AuditEvent.action == "switch_model")).all()
            earlier = session.scalars(select(AuditEvent.actor).where(AuditEvent.action == "audit")).all()
        assert (switch.details["from"], switch.details["to"]) == (OLD, new)
        assert "auditor" in earlier
        doctor = diagnose(dep.app)
        assert doctor.clean and list(doctor.other_models) == [OLD]

    with App.open(settings) as app:
        assert reindex(app, "dlib-resnet-ft").message == f"{new} is already the active model; nothing to do"
    with App.open(settings) as app:
        back = reindex(app, OLD)  # rollback: the old rows are still there, nothing is re-embedded
    assert back.switched and (back.skipped_already_done, back.reindexed) == (6, 0)
    with App.open(settings) as app:
        again = reindex(app, "dlib-resnet-ft")
    assert again.switched and (again.skipped_already_done, again.reindexed) == (6, 0)
    assert faces_per_model(settings) == {OLD: 6, new: 6}

    with open_deployment(settings) as dep:
        erased = delete_person(dep.app, "Al_Gore")
        assert erased.subject.faces_erased == 2  # photos, not rows
        gore = erased.subject.person_id
    for model_id in (OLD, new):
        with open_vector_index(settings, model_id, 128) as index:
            held = [str(person) for _, person in index.iter_ids()]
        assert len(held) == 4 and gore not in held


def test_failed_or_stopped_runs_leave_the_old_model_active_and_a_rerun_completes(
    gallery, capsys, monkeypatch, upsert_stopper
) -> None:
    from identity_cli.main import main

    settings, root = gallery

    upsert_stopper.arm(1)  # the second chunk's rows are pending, their vectors never written
    with pytest.raises(upsert_stopper.Stop):
        with App.open(settings) as app:
            reindex(app, "dlib-resnet-ft")
    upsert_stopper.undo()
    with open_deployment(settings) as dep:
        assert dep.model.model_id == OLD

    # The first run stored Aaron's two faces and stopped with Al Gore's pending; Toledo's photos are to come.
    missing, changed = photo(root, "Alejandro_Toledo", 1), photo(root, "Alejandro_Toledo", 0)
    hidden, original = missing.rename(missing.with_suffix(".away")), changed.read_bytes()
    shutil.copy(photo(root, "Aaron_Peirsol"), changed)  # other bytes under the enrolled name
    for key, value in {
        "IDENTITY_DATA_DIR": str(settings.data_dir),
        "IDENTITY_DATABASE_URL": settings.database_url,
        "IDENTITY_WORKERS": "1",
        "IDENTITY_ENROLL__CHUNK_SIZE": "2",
    }.items():
        if value:
            monkeypatch.setenv(key, value)
        else:
            monkeypatch.delenv(key, raising=False)
    monkeypatch.delenv("IDENTITY_MODEL", raising=False)
    assert main(["reindex", "--model", "dlib-resnet-ft", "--json"]) == 5
    partial = json.loads(capsys.readouterr().out)
    assert (partial["switched"], partial["skipped_already_done"], partial["reindexed"]) == (False, 2, 2)
    assert sorted(f["reason"] for f in partial["failed"]) == [
        f"{changed} changed since enrollment",
        f"{missing} is missing",
    ]
    assert main(["version", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["model"] == OLD

    hidden.rename(missing)
    changed.write_bytes(original)
    assert main(["reindex", "--model", "dlib-resnet-ft", "--json"]) == 0
    done = json.loads(capsys.readouterr().out)
    assert done["switched"] and (done["skipped_already_done"], done["reindexed"], done["failed"]) == (4, 2, [])
    assert main(["version", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["model"] == done["model_after"] and shown["model_source"] == "the store's active model"
    assert faces_per_model(settings) == {OLD: 6, done["model_after"]: 6}
    with open_vector_index(settings, OLD, 128) as index:  # the kept collection loses a vector
        index.delete([next(index.iter_ids())[0]])
    with open_deployment(settings) as dep:
        report = diagnose(dep.app)
        assert not report.clean and report.other_models[OLD].missing_vectors
        repair(dep.app, report)  # dropped from the old model, which no longer runs here
        assert report.repaired == {"faces_dropped": 1} and diagnose(dep.app).clean


def test_unpromoted_packs_need_force_and_the_cli_shows_local_packs(capsys, clean_env, save_stand_in) -> None:
    from identity_cli.main import main

    data_dir = Path(clean_env["IDENTITY_DATA_DIR"])
    draft = save_stand_in(data_dir, "team-ft", promoted=False)
    with pytest.raises(IdentityError, match="team-ft@1 is not promoted"):
        with App.open(Settings.load()) as app:
            reindex(app, draft)
    assert main(["reindex", "--model", draft]) == 1
    assert "pass --force" in capsys.readouterr().err

    assert main(["models", "list", "--json"]) == 0
    rows = {r["model_id"]: r for r in json.loads(capsys.readouterr().out)["packs"]}
    assert rows["team-ft@1"]["promoted"] is False and rows["dlib-resnet@2"]["active"] is True

    assert main(["reindex", "--model", draft, "--force", "--json"]) == 0  # an empty store: nothing to re-embed
    summary = json.loads(capsys.readouterr().out)
    assert summary["switched"] and summary["model_after"].startswith("team-ft@1+") and summary["faces"] == 0
    assert main(["models", "show", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["model"] == summary["model_after"] and shown["store_active"] and shown["promoted"] is False
    assert shown["training"] == {"weights": "random, for tests"} and shown["threshold_far"] is None
    assert main(["config", "show", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["effective_model"] == summary["model_after"]
