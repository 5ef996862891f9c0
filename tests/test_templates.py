"""Person templates follow faces: enrollment, curation, erasure, re-index and doctor keep each
person's template the normalized mean of their indexed face vectors, on real stores and photos.

A template is read back from the templates collection and compared with the face vectors
the face collection holds, so these tests see what a search over templates would see.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from identity.app.core import App, open_deployment
from identity.app.deployment import Deployment
from identity.config import EnrollSettings, Settings
from identity.serialize import to_json
from identity.services.curation.edits import delete_face, delete_person, merge_persons, move_face
from identity.services.enrollment.writer import EnrollmentWriter
from identity.services.maintenance.doctor import diagnose, repair
from identity.services.models.reindex import reindex
from identity.services.queue.loop import process_queue, queue_jobs
from identity.store.sql.db import transaction
from identity.store.sql.jobs import JobSpec
from identity.store.sql.persons import add_person
from identity.store.sql.tables import Face, Person
from identity.store.vectors import VectorPoint, open_vector_index

OLD = "dlib-resnet@2"


@pytest.fixture(params=["sqlite", "postgres", "qdrant-memory"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """SQLite + Qdrant Edge, Postgres + Qdrant Edge, SQLite + qdrant-client's in-memory server path.

    The in-memory store lives as long as its deployment: tests using this fixture stay in one.
    """
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    qdrant = ":memory:" if request.param == "qdrant-memory" else None
    return Settings(data_dir=tmp_path / "data", database_url=url, qdrant_url=qdrant, workers=1)


def photos(lfw_dir: Path, counts: dict[str, int]) -> list[JobSpec]:
    """The first `count` lfw-dev photos of each person, as enrollment jobs."""
    return [
        JobSpec(str(path), person)
        for person, count in counts.items()
        for path in sorted((lfw_dir / person).iterdir())[:count]
    ]


def enroll(dep: Deployment, specs: list[JobSpec]) -> None:
    batch, _ = queue_jobs(dep.app, specs)
    writer = EnrollmentWriter(dep)
    summary = process_queue(dep.app, writer, batch, 1)
    assert summary.counts == {"enrolled": len(specs)}, summary.results


def person_id(dep: Deployment, external_id: str) -> uuid.UUID:
    with dep.app.sessions() as session:
        return session.scalars(select(Person.id).where(Person.external_id == external_id)).one()


def face_ids(dep: Deployment, external_id: str) -> list[uuid.UUID]:
    """The person's face rows under the deployment's model, oldest photo first."""
    with dep.app.sessions() as session:
        return list(
            session.scalars(
                select(Face.id)
                .join(Person, Face.person_id == Person.id)
                .where(Person.external_id == external_id, Face.model_id == dep.model.id)
                .order_by(Face.created_at, Face.id)
            )
        )


def face_vectors(dep: Deployment) -> dict[uuid.UUID, list[np.ndarray]]:
    """Each person's face vectors, as the face collection holds them."""
    pairs = list(dep.index.iter_ids())
    vectors = dep.index.vectors([face for face, _ in pairs])
    grouped: dict[uuid.UUID, list[np.ndarray]] = {}
    for face, person in pairs:
        grouped.setdefault(person, []).append(vectors[face])
    return grouped


def direction(vectors: list[np.ndarray]) -> np.ndarray:
    total = np.sum(vectors, axis=0)  # of unit vectors: the mean's direction
    return total / np.linalg.norm(total)


def templates_of(dep: Deployment) -> dict[uuid.UUID, np.ndarray]:
    return dep.templates.vectors([person for _, person in dep.templates.iter_ids()])


def assert_templates_follow_faces(dep: Deployment) -> None:
    """One template per person with a face, each the normalized mean of that person's face vectors."""
    expected = {person: direction(vectors) for person, vectors in face_vectors(dep).items()}
    held = templates_of(dep)
    assert set(held) == set(expected)
    for person, template in held.items():
        assert np.allclose(template, expected[person], atol=1e-5), person


def test_an_enrolled_persons_template_is_the_normalized_mean_of_their_faces(settings: Settings, lfw_dir: Path) -> None:
    with open_deployment(settings) as dep:
        enroll(dep, photos(lfw_dir, {"Aaron_Peirsol": 2, "Alejandro_Toledo": 1}))
        aaron, toledo = person_id(dep, "Aaron_Peirsol"), person_id(dep, "Alejandro_Toledo")
        first, second = dep.index.vectors(face_ids(dep, "Aaron_Peirsol")).values()
        templates = templates_of(dep)
        assert set(templates) == {aaron, toledo}
        assert np.allclose(templates[aaron], (first + second) / np.linalg.norm(first + second), atol=1e-5)
        [alone] = dep.index.vectors(face_ids(dep, "Alejandro_Toledo")).values()
        assert np.allclose(templates[toledo], alone, atol=1e-5)  # one photo: the template is its face
        [hit] = dep.templates.search(first, k=1)
        assert hit.person_id == aaron
        assert diagnose(dep.app).clean


def test_moving_merging_and_deleting_faces_rewrite_every_affected_template(settings: Settings, lfw_dir: Path) -> None:
    with open_deployment(settings) as dep:
        enroll(dep, photos(lfw_dir, {"Aaron_Peirsol": 2, "Al_Gore": 2, "Alejandro_Toledo": 1}))
        aaron, gore, toledo = (person_id(dep, p) for p in ("Aaron_Peirsol", "Al_Gore", "Alejandro_Toledo"))

        moved, kept = face_ids(dep, "Aaron_Peirsol")
        move_face(dep.app, str(moved), "Al_Gore")
        assert {p: len(v) for p, v in face_vectors(dep).items()} == {aaron: 1, gore: 3, toledo: 1}
        assert_templates_follow_faces(dep)  # both the source's and the target's

        merge_persons(dep.app, "Al_Gore", "Alejandro_Toledo")
        assert toledo not in templates_of(dep)
        assert_templates_follow_faces(dep)

        delete_face(dep.app, str(kept))  # Aaron's last face: no face, no template
        assert set(templates_of(dep)) == {gore}
        assert_templates_follow_faces(dep)
        assert diagnose(dep.app).clean

        delete_person(dep.app, "Al_Gore")
        assert dep.templates.count() == 0 and diagnose(dep.app).clean


def test_reindex_builds_the_new_models_templates_even_when_resumed(
    tmp_path: Path, lfw_dir: Path, save_stand_in, upsert_stopper
) -> None:
    settings = Settings(data_dir=tmp_path / "data", workers=1, enroll=EnrollSettings(chunk_size=2))
    with open_deployment(settings) as dep:
        enroll(dep, photos(lfw_dir, {"Aaron_Peirsol": 2, "Al_Gore": 2, "Alejandro_Toledo": 1}))
    save_stand_in(settings.data_dir)

    upsert_stopper.arm(1)  # the first chunk's faces are stored, the run dies before any template is
    with pytest.raises(upsert_stopper.Stop):
        with App.open(settings) as app:
            reindex(app, "dlib-resnet-ft")
    upsert_stopper.undo()
    with App.open(settings) as app:
        summary = reindex(app, "dlib-resnet-ft")
    assert summary.switched and summary.skipped_already_done == 2

    with open_deployment(settings) as dep:
        assert dep.model.model_id == summary.model_after
        assert dep.templates.count() == 3
        assert_templates_follow_faces(dep)
        assert diagnose(dep.app).clean  # the old model's templates too
        merge_persons(dep.app, "Al_Gore", "Alejandro_Toledo")  # curation reaches the old model's templates
        delete_person(dep.app, "Aaron_Peirsol")
        gore = str(person_id(dep, "Al_Gore"))
        assert diagnose(dep.app).clean
    with open_vector_index(settings, OLD, 128) as old, old.templates() as templates:
        assert [str(person) for _, person in templates.iter_ids()] == [gore]


def test_doctor_finds_stale_missing_and_orphaned_templates_and_repair_rewrites_them(
    settings: Settings, lfw_dir: Path
) -> None:
    with open_deployment(settings) as dep:
        enroll(dep, photos(lfw_dir, {"Aaron_Peirsol": 2, "Al_Gore": 1, "Alejandro_Toledo": 1}))
        with transaction(dep.app.sessions) as session:
            nobody = add_person(session, "No_Faces").id
            add_person(session, "Quiet")  # no face and no template: nothing to say about them
        aaron, gore = person_id(dep, "Aaron_Peirsol"), person_id(dep, "Al_Gore")
        wrong = dep.index.vectors(face_ids(dep, "Al_Gore"))
        dep.templates.upsert(
            [
                VectorPoint(aaron, aaron, *wrong.values()),  # stale: another person's face
                VectorPoint(nobody, nobody, *wrong.values()),
            ]
        )  # orphaned: a person without faces
        dep.templates.delete([gore])  # missing

        report = diagnose(dep.app)
        assert (report.templates.stale, report.templates.missing, report.templates.orphaned) == (
            [aaron],
            [gore],
            [nobody],
        )
        shown = to_json(report)
        assert shown["templates"] == 3 and not shown["clean"]
        assert shown["templates_by_kind"] == {"missing": 1, "stale": 1, "orphaned": 1}

        repair(dep.app, report)
        assert report.repaired == {"templates_rewritten": 3}
        assert diagnose(dep.app).clean
        assert_templates_follow_faces(dep)


class Crash(Exception):
    pass


def test_doctor_repairs_the_templates_a_crash_left_behind(tmp_path: Path, lfw_dir: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", workers=1)
    aaron_photos = photos(lfw_dir, {"Aaron_Peirsol": 2})
    with open_deployment(settings) as dep:
        enroll(dep, aaron_photos[:1])
        real_upsert = dep.templates.upsert

        def crash(points):
            raise Crash()

        dep.templates.upsert = crash  # dies after the faces are marked indexed, before their templates
        with pytest.raises(Crash):
            enroll(dep, [aaron_photos[1], *photos(lfw_dir, {"Alejandro_Toledo": 1})])
        dep.templates.upsert = real_upsert
        report = diagnose(dep.app)
        aaron, toledo = person_id(dep, "Aaron_Peirsol"), person_id(dep, "Alejandro_Toledo")
        assert (report.templates.stale, report.templates.missing) == ([aaron], [toledo])
        repair(dep.app, report)
        assert diagnose(dep.app).clean
        assert_templates_follow_faces(dep)

        real_faces_upsert = dep.index.upsert

        def upsert_then_crash(points):
            real_faces_upsert(points)
            raise Crash()

        dep.index.upsert = upsert_then_crash  # dies with the vector stored and the face still pending
        with pytest.raises(Crash):
            enroll(dep, photos(lfw_dir, {"Al_Gore": 1}))
        dep.index.upsert = real_faces_upsert
        report = diagnose(dep.app)
        assert len(report.pending_with_vector) == 1 and report.templates.problems == 0  # not indexed: no template yet
        repair(dep.app, report)  # marks the face indexed, so its person gets a template
        assert person_id(dep, "Al_Gore") in templates_of(dep)
        assert diagnose(dep.app).clean
        assert_templates_follow_faces(dep)


def test_cli_doctor_reports_templates_and_repairs_them(
    capsys: pytest.CaptureFixture[str], clean_env, lfw_dir: Path
) -> None:
    from identity_cli.main import main

    for name in ("Aaron_Peirsol", "Al_Gore"):
        paths = [spec.source_path for spec in photos(lfw_dir, {name: 2})]
        assert main(["enroll", "--person", name, *paths, "--workers", "1"]) == 0
    capsys.readouterr()
    with open_vector_index(Settings.load(), OLD, 128) as index, index.templates() as templates:
        held = [person for person, _ in templates.iter_ids()]
        assert len(held) == 2
        templates.delete(held[:1])
    assert main(["doctor", "--json"]) == 1
    found = json.loads(capsys.readouterr().out)
    assert (found["templates"], found["templates_by_kind"]["missing"]) == (1, 1)
    assert main(["doctor", "--repair", "--json"]) == 0
    fixed = json.loads(capsys.readouterr().out)
    # repaired, so not clean (exit 0: nothing remains); a second look is clean
    assert not fixed["clean"] and fixed["templates"] == 0 and fixed["repaired"] == {"templates_rewritten": 1}
    assert main(["doctor", "--json"]) == 0 and json.loads(capsys.readouterr().out)["clean"]


def sql_snapshot(settings: Settings) -> dict[str, object]:
    """Every table's row count, and the model rows and the binding in full: what a read must leave as it was."""
    from sqlalchemy import inspect, text

    from identity.store.sql.db import make_engine

    engine = make_engine(settings.sql_url)
    try:
        with engine.connect() as conn:
            counts = {
                t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar() for t in inspect(engine).get_table_names()
            }
            models = [tuple(row) for row in conn.execute(text("SELECT * FROM models ORDER BY id"))]
            binding = [tuple(row) for row in conn.execute(text("SELECT * FROM deployment"))]
    finally:
        engine.dispose()
    return {"counts": counts, "models": models, "binding": binding}


def test_a_read_of_a_store_from_before_templates_exits_4_and_init_builds_them(
    capsys: pytest.CaptureFixture[str], clean_env, lfw_dir: Path
) -> None:
    from identity_cli.main import main

    paths = [spec.source_path for spec in photos(lfw_dir, {"Aaron_Peirsol": 2})]
    assert main(["enroll", "--person", "Aaron_Peirsol", *paths, "--workers", "1"]) == 0
    settings = Settings.load()
    with open_vector_index(settings, OLD, 128) as index, index.templates() as templates:
        templates.delete([person for person, _ in templates.iter_ids()])  # as a store written before templates
    before = sql_snapshot(settings)
    capsys.readouterr()
    for command in (["search", paths[0], "--json"], ["audit", "Aaron_Peirsol", "--json"]):
        assert main(command) == 4, command
        error = json.loads(capsys.readouterr().out)
        assert error["error_type"] == "TemplatesMissing" and "run `identity init`" in error["error"], command
    assert sql_snapshot(settings) == before  # no row, model record or binding written
    with open_vector_index(settings, OLD, 128) as index, index.templates() as templates:
        assert templates.count() == 0  # nor a template
    assert main(["init", "--json"]) == 0
    with open_vector_index(settings, OLD, 128) as index, index.templates() as templates:
        assert templates.count() == 1
    capsys.readouterr()
    assert main(["search", paths[0], "--json"]) == 0
    [face] = json.loads(capsys.readouterr().out)["results"][0]["faces"]
    assert face["decision"] == "match" and face["candidates"][0]["person"]["external_id"] == "Aaron_Peirsol"


def test_a_writing_command_builds_missing_templates(
    capsys: pytest.CaptureFixture[str], clean_env, lfw_dir: Path
) -> None:
    from identity_cli.main import main

    paths = [spec.source_path for spec in photos(lfw_dir, {"Aaron_Peirsol": 2})]
    assert main(["enroll", "--person", "Aaron_Peirsol", paths[0], "--workers", "1"]) == 0
    with open_vector_index(Settings.load(), OLD, 128) as index, index.templates() as templates:
        templates.delete([person for person, _ in templates.iter_ids()])
    assert (
        main(
            [
                "enroll",
                "--person",
                "Al_Gore",
                *[s.source_path for s in photos(lfw_dir, {"Al_Gore": 1})],
                "--workers",
                "1",
            ]
        )
        == 0
    )
    with open_vector_index(Settings.load(), OLD, 128) as index, index.templates() as templates:
        assert templates.count() == 2  # the back-filled one and the new person's
