"""The schema, through the real migration chain, on SQLite and Postgres."""

import uuid

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from identity.errors import ConfigError, DimensionMismatch, StoreUnavailable
from identity.store.sql.db import check_connection, make_engine, session_factory, transaction
from identity.store.sql.migrate import current_revision, head_revision, upgrade
from identity.store.sql.model_rows import ensure_model
from identity.store.sql.tables import Base, Face, Image, Person, SearchEvent, SearchHit


@pytest.fixture
def engine(database_url: str):
    engine = make_engine(database_url)
    upgrade(engine)
    yield engine
    engine.dispose()


def test_migrations_match_the_models_and_rerun_cleanly(engine) -> None:
    upgrade(engine)  # a second run must be a no-op
    assert current_revision(engine) == head_revision()
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == []


def _person_with_face(session, external_id: str = "E1") -> tuple[Person, Face]:
    model = ensure_model(session, "dlib-resnet@1", 128)
    person = Person(external_id=external_id, display_name="Ada", attributes={"team": "x"})
    image = Image(sha256=uuid.uuid4().hex * 2, source_path="/p/a.jpg", size_bytes=10)
    session.add_all([person, image])
    session.flush()
    face = Face(
        person_id=person.id,
        image_id=image.id,
        model_id=model.id,
        bbox=[1, 2, 3, 4],
        landmarks=[[0, 0]] * 5,
        det_score=0.9,
    )
    session.add(face)
    session.flush()
    return person, face


def test_external_id_is_unique(engine) -> None:
    sessions = session_factory(engine)
    with transaction(sessions) as s:
        _person_with_face(s)
    with pytest.raises(IntegrityError):
        with transaction(sessions) as s:
            s.add(Person(external_id="E1"))


def test_deleting_a_person_removes_faces_but_keeps_search_records(engine) -> None:
    sessions = session_factory(engine)
    with transaction(sessions) as s:
        person, face = _person_with_face(s)
        event = SearchEvent(actor="op", query_sha256="0" * 64, model_id=face.model_id, threshold=0.5, top_k=5)
        s.add(event)
        s.flush()
        s.add(
            SearchHit(
                search_id=event.id,
                face_index=0,
                face_bbox=[0, 0, 1, 1],
                rank=1,
                person_id=person.id,
                score=0.9,
                decision="match",
            )
        )
    with transaction(sessions) as s:
        s.delete(s.get(Person, person.id))
    with transaction(sessions) as s:
        assert s.scalars(select(Face)).all() == []
        hit = s.scalars(select(SearchHit)).one()
        assert hit.person_id is None and hit.score == 0.9


def test_model_dimension_is_fixed_once_recorded(engine) -> None:
    sessions = session_factory(engine)
    with transaction(sessions) as s:
        first = ensure_model(s, "dlib-resnet@1", 128)
    with transaction(sessions) as s:
        assert ensure_model(s, "dlib-resnet@1", 128).id == first.id
        with pytest.raises(DimensionMismatch, match="128"):
            ensure_model(s, "dlib-resnet@1", 512)


def test_malformed_and_unsupported_urls_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="malformed database URL"):
        make_engine("not a url")
    with pytest.raises(ConfigError, match="unsupported database 'mysql'"):
        make_engine("mysql://root@localhost/x")


def test_unreachable_postgres_is_one_clear_line() -> None:
    engine = make_engine("postgresql://postgres:pw@127.0.0.1:1/identity", connect_timeout=2)
    with pytest.raises(StoreUnavailable) as info:
        check_connection(engine)
    message = str(info.value)
    assert message.startswith("cannot reach database postgresql+psycopg2://postgres:***@127.0.0.1:1/identity")
    assert "\n" not in message and "pw" not in message


def test_upgrading_an_older_store_activates_the_model_holding_its_faces(database_url: str) -> None:
    from sqlalchemy import insert

    from identity.store.sql.model_rows import active_model
    from identity.store.sql.tables import Model

    engine = make_engine(database_url)
    upgrade(engine, "0001")
    with engine.begin() as conn:  # core inserts: the ORM's Model already has the 0002 column
        ids = [
            conn.execute(
                insert(Model.__table__).values(name=name, version="1", dim=dim, collection=name)
            ).inserted_primary_key[0]
            for name, dim in (("dlib-resnet", 128), ("insightface-onnx", 512))
        ]
    sessions = session_factory(engine)
    with transaction(sessions) as s:
        for index, (model_id, status) in enumerate([(ids[0], "rejected"), (ids[1], "indexed"), (ids[1], "indexed")]):
            person = Person(external_id=f"E{index}")
            image = Image(sha256=uuid.uuid4().hex * 2, source_path="/p/a.jpg", size_bytes=10)
            s.add_all([person, image])
            s.flush()
            # A core insert: the ORM's Face has columns of later revisions (0011's detector).
            s.execute(
                insert(Face.__table__).values(
                    person_id=person.id,
                    image_id=image.id,
                    model_id=model_id,
                    bbox=[1, 2, 3, 4],
                    landmarks=[[0, 0]] * 5,
                    det_score=0.9,
                    status=status,
                )
            )
    upgrade(engine)
    with sessions() as s:
        assert active_model(s).model_id == "insightface-onnx@1"  # the model whose faces were searchable
    engine.dispose()
