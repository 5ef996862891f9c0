"""`identity person delete` erases: no byte of the person is left in any store's files or rows.

A person is enrolled from three lfw-dev photos under a telltale file name, searched for
once, then deleted through the CLI; every file under the data directory is scanned for
their embeddings and person template (as stored, and as written to the vector store's
log), their ids, name and source paths, and on Postgres every row of every table is
searched for them.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import create_engine, select, text

from identity.app.core import App, open_deployment
from identity.app.templates import template_of
from identity.config import Settings
from identity.serialize import to_json
from identity.services.curation.edits import delete_person
from identity.store.sql.db import make_engine, session_factory, transaction
from identity.store.sql.erasure import erase_person_rows
from identity.store.sql.migrate import upgrade
from identity.store.sql.model_rows import ensure_model
from identity.store.sql.tables import AuditEvent, Base, Face, Image, Job, Person
from identity.store.vectors import EdgeIndex, open_vector_index
from identity.store.vectors.base import as_matrix
from identity_cli.main import main

PERSON, NAME = "Erase_Me", "Erase Me"
SOURCE, OTHER = "Alejandro_Toledo", "Al_Gore"  # lfw-dev folders: the erased person's photos, a kept person's


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, object]:
    code = main(list(args))
    out = capsys.readouterr().out
    return code, json.loads(out) if "--json" in args and out.strip() else out


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, clean_env, monkeypatch: pytest.MonkeyPatch) -> str | None:
    if request.param == "sqlite":
        return None
    url = request.getfixturevalue("postgres_url")
    monkeypatch.setenv("IDENTITY_DATABASE_URL", url)
    return url


def test_person_delete_leaves_no_trace_in_any_file_or_row(
    database, tmp_path: Path, lfw_dir: Path, capsys, monkeypatch, find_traces
) -> None:
    data_dir = tmp_path / "data"
    photos = tmp_path / "photos_of_Erase_Me"
    photos.mkdir()
    sources = sorted((lfw_dir / SOURCE).iterdir())
    paths = [photos / f"Erase_Me_secret_{n}.jpg" for n in range(3)]
    for source, path in zip(sources[:3], paths):
        shutil.copy(source, path)
    probe = tmp_path / "who_is_Erase_Me.jpg"
    shutil.copy(sources[5], probe)
    kept = tmp_path / "gallery" / OTHER
    kept.mkdir(parents=True)
    for source in sorted((lfw_dir / OTHER).iterdir())[:2]:
        shutil.copy(source, kept / source.name)

    sent: list = []  # the vectors and templates as written to the vector store (its log holds these bytes)
    real_upsert = EdgeIndex.upsert

    def upsert_and_keep(self, points):
        sent.extend(points)
        return real_upsert(self, points)

    monkeypatch.setattr(EdgeIndex, "upsert", upsert_and_keep)
    assert cli(capsys, "enroll", "--person", PERSON, "--name", NAME, *map(str, paths), "--workers", "1")[0] == 0
    assert cli(capsys, "enroll", str(kept.parent), "--workers", "1")[0] == 0
    code, shown = cli(capsys, "person", "show", PERSON, "--json")
    assert code == 0 and shown["faces"] == 3
    person_id = uuid.UUID(shown["id"])
    mine = [p for p in sent if p.person_id == person_id and p.face_id != person_id]
    templates_sent = [p.vector for p in sent if p.face_id == person_id]  # a template's point id is its person's
    assert len(mine) == 3 and templates_sent
    code, found = cli(capsys, "search", str(probe), "--json")
    assert code == 0 and f'"{PERSON}"' in json.dumps(found)  # the search named them: its log entry gets redacted
    settings = Settings(data_dir=data_dir, database_url=database)
    with App.open(settings) as app:
        active = app.model_choice().model
    with open_vector_index(settings, active, 128) as index:
        stored = list(index.vectors([p.face_id for p in mine]).values())
    assert len(stored) == 3

    with open_deployment(settings) as dep:  # as a server would: its connections stay open meanwhile
        template = dep.templates.vectors([person_id])[person_id]
        assert np.allclose(template, template_of(stored), atol=1e-5)
        assert find_traces(data_dir, vectors=[template])  # the scan below sees a template where there is one
        erased = delete_person(dep.app, PERSON, actor="dpo")
        json.dumps(to_json(erased))  # what `person delete --json` prints
        sql = erased.removed.sql
        assert (sql["faces"], sql["images"], sql["jobs"]) == (3, 3, 3)
        assert sql["search_hits_redacted"] >= 1 and sql["search_events_redacted"] == 1
        vectors = erased.removed.vectors
        assert vectors[dep.index.collection].face_rows == 3
        assert vectors[dep.index.collection].purge.points_kept == 2  # Al Gore's two faces stay
        assert vectors[dep.templates.collection].purge.points_kept == 1  # and his template
        assert not dep.templates.vectors([person_id])

        templates = [template, *as_matrix(np.stack(templates_sent), 128)]
        embeddings = stored + list(as_matrix(np.stack([p.vector for p in mine]), 128)) + templates
        ids = [person_id, *(p.face_id for p in mine)]
        digests = [hashlib.sha256(p.read_bytes()).hexdigest() for p in [*paths, probe]]
        strings = [PERSON, NAME, str(photos), *map(str, paths), str(probe), *digests]
        assert find_traces(data_dir, vectors=embeddings, ids=ids, strings=strings) == {}
        if database:
            assert rows_containing(database, [*strings, str(person_id), *(str(p.face_id) for p in mine)]) == []
        for vector in embeddings:  # neither the float vectors nor their int8 copies answer a search
            assert not {p.face_id for p in mine} & {h.face_id for h in dep.index.search(vector, k=5)}
            assert person_id not in {h.person_id for h in dep.templates.search(vector, k=5)}

    code, found = cli(capsys, "search", str(probe), "--json")
    assert code == 0 and f'"{PERSON}"' not in json.dumps(found)
    code, logged = cli(capsys, "searches", "list", "--json")
    first = next(s for s in logged if s["query_name"] is None)  # the search happened, when and by whom
    assert first["when"] and first["actor"] and first["query_sha256"] is None

    for ref in (PERSON, str(person_id)):  # a repeated delete answers from the keyed tokens
        code, again = cli(capsys, "person", "delete", ref, "--json")
        assert code == 0 and again["already_deleted"] is True and again["by"] == "dpo"
    engine = create_engine(settings.sql_url)
    with engine.connect() as conn:
        [event] = conn.execute(select(AuditEvent).where(AuditEvent.action == "delete_person")).all()
    engine.dispose()
    assert event.person_id is None and event.subject not in (PERSON, str(person_id))
    assert event.details["faces_erased"] == 3 and event.details["vectors"]
    assert cli(capsys, "person", "add", "--external-id", "No_Faces")[0] == 0
    code, table = cli(capsys, "person", "delete", "No_Faces")  # the table form, for people
    assert code == 0 and "erased" in table and "sql" in table


def rows_containing(url: str, needles: list[str]) -> list[tuple[str, str]]:
    """(table, needle) for every needle found in any row of any table, every column as text."""
    engine = create_engine(url)
    found = []
    with engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            rows = conn.execute(text(f"SELECT CAST(t AS text) FROM {table.name} t")).scalars().all()
            found += [(table.name, n) for n in needles if any(n in row for row in rows)]
    engine.dispose()
    return found


def test_a_photo_shared_with_another_persons_face_stays_under_their_path(database_url: str) -> None:
    engine = make_engine(database_url)
    upgrade(engine)
    sessions = session_factory(engine)
    with transaction(sessions) as session:
        model = ensure_model(session, "dlib-resnet@1", 128)
        gone, stays = Person(external_id="Gone"), Person(external_id="Stays")
        shared = Image(sha256="a" * 64, source_path="/photos/Gone/group.jpg", size_bytes=10)
        own = Image(sha256="b" * 64, source_path="/photos/Gone/alone.jpg", size_bytes=10)
        session.add_all([gone, stays, shared, own])
        session.flush()
        for person, image in ((gone, shared), (gone, own), (stays, shared)):
            session.add(
                Face(
                    person_id=person.id,
                    image_id=image.id,
                    model_id=model.id,
                    bbox=[1, 2, 3, 4],
                    landmarks=[[0, 0]] * 5,
                    det_score=0.9,
                )
            )
            session.add(
                Job(
                    source_path=image.source_path if person is gone else "/photos/Stays/group.jpg",
                    external_id=person.external_id,
                    image_id=image.id,
                )
            )
    with transaction(sessions) as session:
        person = session.scalars(select(Person).where(Person.external_id == "Gone")).one()
        counts = erase_person_rows(session, person)
    assert (counts["faces"], counts["jobs"], counts["images"], counts["images_kept_shared"]) == (2, 2, 1, 1)
    with sessions() as session:
        assert session.scalars(select(Image.source_path)).all() == ["/photos/Stays/group.jpg"]
        assert session.scalars(select(Face.person_id)).all() == [stays.id]
        assert session.scalars(select(Job.external_id)).all() == ["Stays"]
    engine.dispose()
