"""The VectorIndex contract, run against every engine: Qdrant Edge, Qdrant (local mode), exact numpy.

Expected results come from numpy cosine similarity over the same data, so engines are
checked against one ground truth rather than against each other.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient
from qdrant_client import models as qmodels

from identity.config import Settings
from identity.errors import ConfigError, DimensionMismatch, InvalidVector, StoreUnavailable
from identity.store.vectors import (
    EdgeIndex,
    ExactIndex,
    FaceIndex,
    QdrantServerIndex,
    VectorIndex,
    VectorPoint,
    collection_name,
    open_vector_index,
)

DIM = 32
MODEL = "test-model v1"


@dataclass
class Engine:
    name: str
    open: Callable[..., Any]  # open(dim=DIM) -> VectorIndex


@pytest.fixture(params=["edge", "server", "exact"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "edge":
        settings = Settings(data_dir=tmp_path / "data")

        def open_edge(dim: int = DIM) -> VectorIndex:
            return EdgeIndex.open(settings, MODEL, dim)

        yield Engine("edge", open_edge)
    elif request.param == "server":
        settings = Settings(data_dir=tmp_path / "data", qdrant_url=":memory:")
        client = QdrantClient(location=":memory:")  # shared, so a re-open sees the same store

        def open_server(dim: int = DIM) -> VectorIndex:
            return QdrantServerIndex.open(settings, MODEL, dim, client=client)

        yield Engine("server", open_server)
        client.close()
    else:
        yield Engine("exact", lambda dim=DIM: ExactIndex(dim))


@pytest.fixture
def index(engine: Engine) -> Iterator[VectorIndex]:
    with engine.open() as opened:
        yield opened


def unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def points(vectors: np.ndarray, persons: list[uuid.UUID]) -> list[VectorPoint]:
    return [VectorPoint(uuid.uuid4(), person, vector) for vector, person in zip(vectors, persons, strict=True)]


def gallery(seed: int = 0, n_persons: int = 40) -> list[VectorPoint]:
    """Persons with 1-6 faces each, vectors deliberately not unit length."""
    rng = np.random.default_rng(seed)
    persons = [uuid.uuid4() for _ in range(n_persons)]
    owners = [p for p in persons for _ in range(int(rng.integers(1, 7)))]
    scale = rng.uniform(0.5, 3.0, size=(len(owners), 1)).astype(np.float32)
    return points(unit(rng, len(owners)) * scale, owners)


def expected(gallery_points: list[VectorPoint], query: np.ndarray) -> list[tuple[VectorPoint, float]]:
    """Every point with its numpy cosine similarity to the query, best first."""
    matrix = np.stack([p.vector for p in gallery_points]).astype(np.float64)
    scores = matrix @ query / (np.linalg.norm(matrix, axis=1) * np.linalg.norm(query))
    return [(gallery_points[i], float(scores[i])) for i in np.argsort(-scores)]


def test_upsert_then_count(index: VectorIndex) -> None:
    assert isinstance(index, VectorIndex)  # every method of the contract is there
    assert index.count() == 0
    data = gallery()
    index.upsert(data)
    assert index.count() == len(data)


def test_upsert_same_id_replaces_vector_and_person(index: VectorIndex) -> None:
    rng = np.random.default_rng(1)
    first, second = unit(rng, 2)
    face, new_person = uuid.uuid4(), uuid.uuid4()
    index.upsert([VectorPoint(face, uuid.uuid4(), first)])
    index.upsert([VectorPoint(face, new_person, second)])
    assert index.count() == 1
    [hit] = index.search(second, k=5)
    assert (hit.face_id, hit.person_id) == (face, new_person)
    assert hit.score == pytest.approx(1.0, abs=1e-5)


def test_delete_by_ids_ignores_unknown_ids(index: VectorIndex) -> None:
    data = gallery()
    index.upsert(data)
    gone = {p.face_id for p in data[:5]}
    index.delete([*gone, uuid.uuid4()])
    index.delete([])
    assert index.count() == len(data) - 5
    assert not gone & {face for face, _ in index.iter_ids()}


def test_delete_person_removes_only_their_faces(index: VectorIndex) -> None:
    data = gallery()
    index.upsert(data)
    victim = data[0].person_id
    index.delete_person(victim)
    left = list(index.iter_ids())
    assert len(left) == sum(p.person_id != victim for p in data)
    assert victim not in {person for _, person in left}


def test_purge_erases_deleted_points_from_every_file(engine: Engine, tmp_path: Path, find_traces) -> None:
    """Erasure: after delete + purge no vector, payload or id of the deleted points is left anywhere."""
    data = gallery(seed=10)
    victim = data[0].person_id
    erased = [p for p in data if p.person_id == victim]
    lone = next(p for p in data if p.person_id != victim)  # a single face deleted on its own
    kept = [p for p in data if p.person_id != victim and p is not lone]
    with engine.open() as index:
        index.upsert(data)
        index.optimize()
        # The engine's stored (re-normalised) vectors and the unit vectors we sent (the WAL's copy).
        stored = list(index.vectors([p.face_id for p in [*erased, lone]]).values())
        sent = [p.vector / np.linalg.norm(p.vector) for p in [*erased, lone]]
        index.delete_person(victim)
        index.delete([lone.face_id])
        report = index.purge()
        assert report.engine and report.method
        assert index.count() == len(kept)
        assert index.vectors([p.face_id for p in [*erased, lone]]) == {}
        for point in [*erased, lone]:  # neither the float vector nor its int8 copy is found again
            assert point.face_id not in {h.face_id for h in index.search(point.vector, k=5)}
        for point in kept[:5]:  # the others survive the rebuild, with exact scores
            [hit] = index.search(point.vector, k=1)
            assert (hit.face_id, hit.person_id) == (point.face_id, point.person_id)
            assert hit.score == pytest.approx(1.0, abs=1e-5)
        assert victim not in {person for _, person in index.iter_ids()}
    if engine.name == "edge":
        ids = [victim, *(p.face_id for p in [*erased, lone])]
        assert find_traces(tmp_path / "data", vectors=stored + sent, ids=ids) == {}
        with engine.open() as again:  # the rebuilt shard is the one found on the next open
            assert again.count() == len(kept)


def test_vectors_returns_stored_unit_vectors(index: VectorIndex) -> None:
    data = gallery()
    index.upsert(data)
    wanted = [data[0].face_id, data[3].face_id, uuid.uuid4()]
    got = index.vectors(wanted)
    assert set(got) == set(wanted[:2])  # unknown ids are left out
    for point in (data[0], data[3]):
        expected_unit = point.vector / np.linalg.norm(point.vector)
        assert np.allclose(got[point.face_id], expected_unit, atol=1e-5)
    assert index.vectors([]) == {}


def test_set_person_relabels_faces_for_filters_and_grouping(index: VectorIndex) -> None:
    data = gallery()
    index.upsert(data)
    moved = [p for p in data if p.person_id == data[0].person_id]
    target = uuid.uuid4()
    index.set_person([p.face_id for p in moved] + [uuid.uuid4()], target)
    pairs = dict(index.iter_ids())
    assert all(pairs[p.face_id] == target for p in moved)
    [hit] = index.search(moved[0].vector, k=1, person_ids=[target])
    assert hit.face_id == moved[0].face_id and hit.person_id == target
    [group] = index.search_persons(moved[0].vector, k=1)
    assert group.person_id == target


def test_search_is_best_first_with_cosine_scores(index: VectorIndex) -> None:
    data = gallery()
    index.upsert(data)
    query = np.random.default_rng(2).standard_normal(DIM).astype(np.float32) * 7
    hits = index.search(query, k=10)
    truth = expected(data, query)[:10]
    assert [h.face_id for h in hits] == [p.face_id for p, _ in truth]
    assert [h.person_id for h in hits] == [p.person_id for p, _ in truth]
    assert [h.score for h in hits] == pytest.approx([s for _, s in truth], abs=1e-5)


def test_search_batch_matches_search(index: VectorIndex) -> None:
    index.upsert(gallery())
    queries = unit(np.random.default_rng(3), 4)
    batch = index.search_batch(queries, k=5)
    assert [[h.face_id for h in hits] for hits in batch] == [[h.face_id for h in index.search(q, k=5)] for q in queries]


def test_search_filters_by_person(index: VectorIndex) -> None:
    data = gallery()
    index.upsert(data)
    wanted = [data[0].person_id, data[-1].person_id]
    query = unit(np.random.default_rng(4), 1)[0]
    hits = index.search(query, k=50, person_ids=wanted)
    truth = [p for p, _ in expected(data, query) if p.person_id in wanted]
    assert [h.face_id for h in hits] == [p.face_id for p in truth]
    assert index.search(query, k=5, person_ids=[]) == []


def crowded_gallery(rng: np.random.Generator, query: np.ndarray) -> tuple[list[VectorPoint], uuid.UUID]:
    """One person with 20 near-copies of the query, five others further off, plus noise."""

    def near(similarity: float) -> np.ndarray:
        noise = unit(rng, 1)[0]
        noise -= (noise @ query) * query
        return similarity * query + np.sqrt(1 - similarity**2) * noise / np.linalg.norm(noise)

    crowd = uuid.uuid4()
    data = points(np.stack([near(0.99 - 0.001 * i) for i in range(20)]), [crowd] * 20)
    for rank in range(5):
        person = uuid.uuid4()
        # Faces spread out, so a person's later faces fall far behind their first one.
        data += points(np.stack([near(0.9 - 0.1 * rank - 0.15 * f) for f in range(4)]), [person] * 4)
    noise_persons = [uuid.uuid4() for _ in range(30)]
    data += points(unit(rng, 60), noise_persons * 2)
    return data, crowd


@pytest.mark.parametrize("k, per_person", [(4, 3), (3, 1)])
def test_search_persons_is_not_crowded_out_by_one_person(index: VectorIndex, k: int, per_person: int) -> None:
    rng = np.random.default_rng(5)
    query = unit(rng, 1)[0]
    data, crowd = crowded_gallery(rng, query)
    index.upsert(data)
    assert {h.person_id for h in index.search(query, k=10)} == {crowd}  # plain search is crowded

    persons = index.search_persons(query, k=k, faces_per_person=per_person)

    truth: dict[uuid.UUID, list[tuple[VectorPoint, float]]] = {}
    for point, score in expected(data, query):
        truth.setdefault(point.person_id, []).append((point, score))
    best = list(truth)[:k]
    assert persons[0].person_id == crowd
    assert [p.person_id for p in persons] == best
    assert [p.score for p in persons] == pytest.approx([truth[b][0][1] for b in best], abs=1e-5)
    for person in persons:
        assert [f.face_id for f in person.faces] == [p.face_id for p, _ in truth[person.person_id][:per_person]]
        assert {f.person_id for f in person.faces} == {person.person_id}


def test_search_persons_with_filter_and_short_gallery(index: VectorIndex) -> None:
    data = gallery(n_persons=6)
    index.upsert(data)
    query = unit(np.random.default_rng(6), 1)[0]
    wanted = [data[0].person_id, data[-1].person_id]
    persons = index.search_persons(query, k=5, faces_per_person=10, person_ids=wanted)
    assert sorted(p.person_id for p in persons) == sorted(set(wanted))
    for person in persons:
        assert len(person.faces) == sum(p.person_id == person.person_id for p in data)
    assert len(index.search_persons(query, k=50)) == 6  # k larger than the gallery: everyone once


def test_wrong_dimension_raises_dimension_mismatch(index: VectorIndex) -> None:
    good = gallery()[:3]
    index.upsert(good)
    short = np.ones(DIM - 1, dtype=np.float32)
    mixed = [*gallery()[:2], VectorPoint(uuid.uuid4(), uuid.uuid4(), short)]
    with pytest.raises(DimensionMismatch):
        index.upsert(mixed)
    assert index.count() == 3  # nothing of the bad batch was written
    for call in (
        lambda: index.search(short, k=1),
        lambda: index.search_batch(np.ones((2, DIM + 1)), k=1),
        lambda: index.search_persons(short, k=1),
    ):
        with pytest.raises(DimensionMismatch):
            call()


@pytest.mark.parametrize("bad", [np.zeros(DIM), np.full(DIM, np.nan)])
def test_zero_or_nan_vector_raises_invalid_vector(index: VectorIndex, bad: np.ndarray) -> None:
    with pytest.raises(InvalidVector) as raised:
        index.upsert([VectorPoint(uuid.uuid4(), uuid.uuid4(), bad.astype(np.float32))])
    assert not isinstance(raised.value, DimensionMismatch)
    with pytest.raises(InvalidVector):
        index.search(bad, k=1)
    assert index.count() == 0


def test_iter_ids_returns_every_pair(index: VectorIndex) -> None:
    data = gallery()
    index.upsert(data)
    assert sorted(index.iter_ids(batch_size=7)) == sorted((p.face_id, p.person_id) for p in data)


def test_templates_are_a_collection_of_their_own(engine: Engine) -> None:
    if engine.name == "exact":
        pytest.skip("the exact baseline keeps nothing between opens")
    faces = gallery(seed=9)[:4]
    person = faces[0].person_id
    with engine.open() as live:
        assert isinstance(live, FaceIndex)
        live.upsert(faces)
        with live.templates() as templates:
            assert templates.collection == "templates_" + live.collection.removeprefix("faces_")
            templates.upsert([VectorPoint(person, person, faces[0].vector)])
            assert (templates.count(), live.count()) == (1, 4)  # neither sees the other's points
            [hit] = templates.search(faces[0].vector, k=5)
            assert hit.face_id == hit.person_id == person
    with engine.open() as again, again.templates() as templates:  # reopened: still there
        assert (again.count(), templates.count()) == (4, 1)


def test_edge_data_dir_from_before_takes_the_plain_layout(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    faces, person = gallery(seed=3)[:3], uuid.uuid4()
    with EdgeIndex.open(settings, MODEL, DIM) as index, index.templates() as templates:
        index.upsert(faces)
        templates.upsert([VectorPoint(person, person, faces[0].vector)])
    root, plain = settings.edge_dir, collection_name(MODEL)
    # The layout older versions wrote: generation-numbered shards and a pointer naming the live one.
    (root / plain).rename(root / f"{plain}_g2")
    (root / f"templates{plain[5:]}").rename(root / f"templates{plain[5:]}_g2")
    (root / f"{plain}_g1").mkdir()  # an old generation: nothing reaches it any more, so it goes
    (root / f"{plain}.active").write_text(f"{plain}_g2\n")
    with EdgeIndex.open(settings, MODEL, DIM) as index, index.templates() as templates:
        assert (index.count(), templates.count()) == (3, 1)
        assert index.search(faces[1].vector, k=1)[0].face_id == faces[1].face_id
    assert sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) == [plain, f"templates{plain[5:]}"]


def test_server_deployment_from_before_keeps_its_aliased_collection() -> None:
    settings = Settings(qdrant_url=":memory:")
    client = QdrantClient(location=":memory:")
    old = collection_name(MODEL) + "_g1"  # older versions: a generation behind an alias
    client.create_collection(old, vectors_config=qmodels.VectorParams(size=DIM, distance=qmodels.Distance.COSINE))
    client.update_collection_aliases(
        change_aliases_operations=[
            qmodels.CreateAliasOperation(
                create_alias=qmodels.CreateAlias(collection_name=old, alias_name=collection_name(MODEL))
            )
        ]
    )
    faces = gallery(seed=4)[:2]
    with QdrantServerIndex.open(settings, MODEL, DIM, client=client) as index, index.templates() as templates:
        index.upsert(faces)
        assert (index.collection, templates.collection) == (old, "templates" + old[5:])
    assert client.count(old).count == 2
    client.close()


def test_reopen_with_another_dimension_raises(engine: Engine) -> None:
    if engine.name == "exact":
        pytest.skip("the exact baseline keeps nothing between opens")
    with engine.open() as first:
        first.upsert(gallery()[:2])
    with pytest.raises(DimensionMismatch):
        engine.open(dim=DIM * 2)


def test_edge_data_persists_after_close_and_reopen(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    data = gallery()
    with open_vector_index(settings, MODEL, DIM) as index:
        index.upsert(data)
        index.delete([p.face_id for p in data[:2]])  # deletes must be durable too (biometric data)
    with open_vector_index(settings, MODEL, DIM) as index:
        assert isinstance(index, EdgeIndex)
        assert index.count() == len(data) - 2
        assert index.search(data[5].vector, k=1)[0].face_id == data[5].face_id


def test_edge_open_removes_what_a_stopped_purge_left(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    data = gallery()
    with open_vector_index(settings, MODEL, DIM) as index:
        index.upsert(data)
        leftover = index.path.with_name(index.path.name + ".erasing")
    leftover.mkdir()  # a crash after the swap leaves the old shard here, deleted points and all
    (leftover / "wal").mkdir()
    (leftover / "wal" / "open-1").write_bytes(b"old bytes")
    with open_vector_index(settings, MODEL, DIM) as index:
        assert index.count() == len(data)
    assert not leftover.exists()


LOCK_PROBE = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from identity.config import Settings
    from identity.errors import StoreUnavailable
    from identity.store.vectors import open_vector_index
    try:
        open_vector_index(Settings(data_dir=Path(sys.argv[1])), sys.argv[2], int(sys.argv[3])).close()
    except StoreUnavailable as exc:
        print(exc)
        sys.exit(4)
    """
)


def probe_lock(data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", LOCK_PROBE, str(data_dir), MODEL, str(DIM)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_edge_shard_is_locked_against_a_second_process(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    index = open_vector_index(settings, MODEL, DIM)
    try:
        held = probe_lock(tmp_path)
        assert held.returncode == 4, held.stderr
        message = held.stdout.strip()
        assert str(tmp_path / "vectors" / index.collection) in message and "locked" in message
        assert "\n" not in message
        with pytest.raises(StoreUnavailable):  # a second open in this process is refused too
            open_vector_index(settings, MODEL, DIM)
    finally:
        index.close()
    with pytest.raises(StoreUnavailable):
        index.count()
    released = probe_lock(tmp_path)
    assert released.returncode == 0, released.stdout + released.stderr


def test_factory_chooses_engine_and_rejects_ambiguous_settings(tmp_path: Path) -> None:
    with open_vector_index(Settings(data_dir=tmp_path), MODEL, DIM) as index:
        assert isinstance(index, EdgeIndex)
    with open_vector_index(Settings(data_dir=tmp_path, qdrant_url=":memory:"), MODEL, DIM) as index:
        assert isinstance(index, QdrantServerIndex)
    for bad in (
        Settings(data_dir=tmp_path, qdrant_api_key="secret"),
        Settings(data_dir=tmp_path, qdrant_url=":memory:", qdrant_api_key="secret"),
        Settings(data_dir=tmp_path, qdrant_url="localhost:6333"),
    ):
        with pytest.raises(ConfigError):
            open_vector_index(bad, MODEL, DIM)


def test_unreachable_server_raises_store_unavailable_naming_it(tmp_path: Path) -> None:
    url = "http://127.0.0.1:1"  # nothing listens on port 1: connection refused at once
    settings = Settings(data_dir=tmp_path, qdrant_url=url, qdrant_retries=1, qdrant_timeout=2)
    with pytest.raises(StoreUnavailable) as raised:
        open_vector_index(settings, MODEL, DIM)
    assert url in str(raised.value) and "\n" not in str(raised.value)


def test_search_after_optimize_keeps_exact_scores(engine: Engine) -> None:
    # Big enough (12 MB) for Qdrant Edge to build its quantized HNSW graph instead of scanning.
    rng = np.random.default_rng(9)
    dim, n = 512, 6000
    data = points(unit(rng, n, dim), [uuid.uuid4() for _ in range(n)])
    with engine.open(dim=dim) as index:
        index.upsert(data)
        index.optimize()
        assert index.count() == n
        for i in (0, 2999, n - 1):
            query = data[i].vector + 0.3 * unit(rng, 1, dim)[0]
            hits = index.search(query, k=5)
            truth = {p.face_id: score for p, score in expected(data, query)}
            assert hits[0].face_id == data[i].face_id
            # Approximate search may miss a far neighbour, but each score is the exact cosine.
            assert [h.score for h in hits] == pytest.approx([truth[h.face_id] for h in hits], abs=1e-5)
            assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
