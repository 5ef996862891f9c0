"""Query functions of identity/store/sql that the services call, on real databases (SQLite and Postgres)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from identity.store.sql import jobs
from identity.store.sql.audit_events import add_audit_details, latest_audit_event, record_audit_event
from identity.store.sql.db import make_engine, session_factory, transaction
from identity.store.sql.errors import IntegrityError, database_refusal
from identity.store.sql.faces import (
    add_faces,
    enrollment_sources,
    face_keys_of_photo,
    indexed_faces_with_photos,
    settled_photo_persons,
)
from identity.store.sql.images import add_image
from identity.store.sql.migrate import upgrade
from identity.store.sql.model_rows import ensure_model, other_models_with_faces, records_active_model
from identity.store.sql.persons import add_person, persons_by_id
from identity.store.sql.searches import hits_of_person, recent_searches, record_search, top_hits
from identity.store.sql.tables import AuditEvent, Face, FaceStatus, utcnow


@pytest.fixture
def engine(database_url: str):
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine):
    upgrade(engine)
    return session_factory(engine)


def _face(person_id: uuid.UUID, image_id: uuid.UUID, model_row_id: int, status: FaceStatus) -> Face:
    return Face(
        person_id=person_id,
        image_id=image_id,
        model_id=model_row_id,
        bbox=[0, 0, 1, 1],
        landmarks=[[0, 0]] * 5,
        det_score=0.9,
        status=status,
    )


def _search(session, model_row_id: int, minutes_ago: int, hits: list[tuple[uuid.UUID, int]]) -> uuid.UUID:
    event = {
        "actor": "op",
        "query_sha256": "0" * 64,
        "model_id": model_row_id,
        "threshold": 0.5,
        "top_k": 5,
        "created_at": utcnow() - timedelta(minutes=minutes_ago),
    }
    hit_rows = [
        {
            "face_index": 0,
            "face_bbox": [0, 0, 1, 1],
            "rank": rank,
            "person_id": person,
            "score": 1 - rank / 10,
            "decision": "unknown",
        }
        for person, rank in hits
    ]
    return record_search(session, event, hit_rows)


def test_search_log_reads_filter_by_person_and_time_newest_first(sessions) -> None:
    with transaction(sessions) as s:
        model = ensure_model(s, "m@1", 4).id
        ada, bob = add_person(s, "ada").id, add_person(s, "bob").id
        oldest = _search(s, model, 30, [(ada, 1), (bob, 2)])
        middle = _search(s, model, 20, [(bob, 1)])
        newest = _search(s, model, 10, [])
    with transaction(sessions) as s:
        assert [e.id for e in recent_searches(s)] == [newest, middle, oldest]
        assert [e.id for e in recent_searches(s, person_id=bob)] == [middle, oldest]  # ranked second counts too
        assert [e.id for e in recent_searches(s, since=utcnow() - timedelta(minutes=25))] == [newest, middle]
        assert [e.id for e in recent_searches(s, limit=1)] == [newest]
        assert {(h.search_id, h.person_id) for h in top_hits(s, [oldest, middle])} == {(oldest, ada), (middle, bob)}
        assert [(hit.rank, event.id) for hit, event in hits_of_person(s, bob)] == [(1, middle), (2, oldest)]


def test_latest_audit_event_of_an_action_by_subject_person_or_mention(sessions) -> None:
    person = uuid.uuid4()
    with transaction(sessions) as s:
        by_subject = record_audit_event(s, "dpo", "delete_person", subject="token-1")
        about_person = record_audit_event(s, "dpo", "delete_person", person_id=person, details={"person": "token-2"})
        record_audit_event(s, "auditor", "audit", subject="token-1")  # another action: never found
        for age, event_id in enumerate([about_person, by_subject], start=1):  # by_subject is the older one
            s.get(AuditEvent, event_id).created_at = utcnow() - timedelta(minutes=age)
        add_audit_details(s, about_person, {"vectors": 2})
    with transaction(sessions) as s:
        assert latest_audit_event(s, "delete_person", ["token-1"]).id == by_subject
        assert latest_audit_event(s, "delete_person", ["token-1"], person_id=person).id == about_person
        assert latest_audit_event(s, "delete_person", ["nobody"], mentioning="token-2").id == about_person
        assert latest_audit_event(s, "delete_person", ["nobody"], mentioning="token-3") is None
        assert latest_audit_event(s, "audit", ["token-2"], person_id=person) is None
        assert s.get(AuditEvent, about_person).details == {"person": "token-2", "vectors": 2}


def test_face_reads_for_reindex_doctor_and_curation(sessions) -> None:
    with transaction(sessions) as s:
        old, new = ensure_model(s, "old@1", 4).id, ensure_model(s, "new@1", 4).id
        ensure_model(s, "unused@1", 4)
        ada, bob = add_person(s, "ada").id, add_person(s, "bob").id
        b = add_image(s, "b" * 64, "/photos/b.jpg", 10, None, None).id
        a = add_image(s, "a" * 64, "/photos/a.jpg", 10, None, None).id
        rows = [
            _face(ada, a, old, FaceStatus.indexed),
            _face(bob, b, old, FaceStatus.indexed),
            _face(ada, a, new, FaceStatus.pending),
            _face(bob, b, new, FaceStatus.rejected),
            _face(bob, a, old, FaceStatus.pending),
        ]
        add_faces(s, rows)
    with transaction(sessions) as s:
        assert [(f[0], f[4]) for f in indexed_faces_with_photos(s, old)] == [
            (rows[0].id, "/photos/a.jpg"),
            (rows[1].id, "/photos/b.jpg"),
        ]
        assert settled_photo_persons(s, new) == {(b, bob)}  # a pending row is not finished
        assert sorted((k.model_id, k.id) for k in face_keys_of_photo(s, a, ada)) == sorted(
            [(old, rows[0].id), (new, rows[2].id)]
        )
        assert sorted(enrollment_sources(s, [rows[0].id, rows[1].id])) == [
            ("/photos/a.jpg", "ada"),
            ("/photos/b.jpg", "bob"),
        ]
        assert [m.id for m in other_models_with_faces(s, old)] == [new]  # not the one without faces


def test_records_active_model_only_once_the_schema_can(engine) -> None:
    assert records_active_model(engine) is False  # an empty database
    upgrade(engine)
    assert records_active_model(engine) is True


def test_persons_by_id_leaves_out_ids_without_a_row(sessions) -> None:
    with transaction(sessions) as s:
        ada = add_person(s, "ada").id
        assert persons_by_id(s, []) == {}
        assert list(persons_by_id(s, {ada, uuid.uuid4()})) == [ada]


def test_delete_enrollment_jobs_takes_only_that_photo_of_that_person(sessions) -> None:
    with transaction(sessions) as s:
        jobs.enqueue(s, "b", [jobs.JobSpec(f"/p/{n}.jpg", who) for n, who in [(1, "ada"), (1, "bob"), (2, "ada")]])
        image = add_image(s, "c" * 64, "/p/1.jpg", 10, None, None).id
        other = add_image(s, "d" * 64, "/p/2.jpg", 10, None, None).id
        for job in jobs.list_jobs(s):  # as enrollment records the image it read
            job.image_id = other if job.source_path == "/p/2.jpg" else image
    with transaction(sessions) as s:
        jobs.delete_enrollment_jobs(s, image, "ada")
    with transaction(sessions) as s:
        assert sorted((j.source_path, j.external_id) for j in jobs.list_jobs(s)) == [
            ("/p/1.jpg", "bob"),
            ("/p/2.jpg", "ada"),
        ]


def test_database_refusal_is_the_drivers_first_line_and_none_for_other_errors(sessions) -> None:
    with pytest.raises(IntegrityError) as refused:
        with transaction(sessions) as s:
            add_image(s, "e" * 64, "/p/e.jpg", 1, None, None)
            add_image(s, "e" * 64, "/p/e-copy.jpg", 1, None, None)
    message = database_refusal(refused.value)
    assert message and "\n" not in message and ("unique" in message.lower() or "duplicate" in message.lower())
    assert database_refusal(ValueError("not the database")) is None
