"""The embedded store builds its search graphs as upserts fill its segments, so a bulk run leaves little to
index at its end; a store left with more unindexed points than vectors.max_exact_scan (one filled by an
older version, or whose final optimize was stopped) makes search warn and doctor report it, and
`doctor --repair` builds the graph."""

from __future__ import annotations

import dataclasses
import sys
import uuid
from pathlib import Path

import numpy as np

from identity.app.core import open_deployment
from identity.config import Settings, VectorSettings
from identity.services.maintenance.doctor import diagnose, repair
from identity.services.search.identify import SearchOptions, search_image
from identity.store.vectors import EdgeIndex, VectorPoint

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from synthetic_gallery import add_persons  # noqa: E402 (the benchmarks' synthetic persons)

DIM = 32
EXACT_SCAN = 100  # the smallest vectors.max_exact_scan: a graph for every segment past 100 points
UNINDEXED_WARNING = "not in a search graph"


def strict(settings: Settings) -> Settings:
    return dataclasses.replace(settings, vectors=VectorSettings(max_exact_scan=EXACT_SCAN))


def random_points(rng: np.random.Generator, count: int, dim: int = DIM) -> list[VectorPoint]:
    return [VectorPoint(uuid.uuid4(), uuid.uuid4(), v) for v in rng.normal(size=(count, dim)).astype(np.float32)]


def test_an_upsert_builds_the_graph_once_a_segment_holds_more_than_an_exact_scan(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    with EdgeIndex.open(strict(Settings(data_dir=tmp_path / "data")), "graph v1", DIM) as index:
        first = random_points(rng, 90)
        index.upsert(first)
        assert index.unindexed() == 90  # a segment this small is scanned: no graph yet
        index.upsert(random_points(rng, 60))
        assert index.unindexed() == 0  # past EXACT_SCAN points: that upsert built its graph
        index.upsert(random_points(rng, 10))
        assert index.unindexed() == 10
        [hit] = index.search(first[7].vector, 1)  # graph and scan answer together
        assert hit.face_id == first[7].face_id
        assert index.count() == 160


def test_a_store_left_unindexed_makes_search_warn_and_doctor_repair_builds_its_graph(
    tmp_path: Path, lfw_dir: Path
) -> None:
    settings = Settings(data_dir=tmp_path / "data", workers=1)
    probe = str(sorted((lfw_dir / "Al_Gore").iterdir())[0])
    with open_deployment(settings) as dep:  # 150 persons of one face, photos gone: under the default, left as is
        rng = np.random.default_rng(6)
        add_persons(dep, 0, rng.normal(size=(150, dep.pipeline.dim)).astype(np.float32), 1, rng)
        assert not [w for w in search_image(dep.app, probe, SearchOptions()).warnings if UNINDEXED_WARNING in w]
    with open_deployment(strict(settings)) as dep:
        warned = [w for w in search_image(dep.app, probe, SearchOptions()).warnings if UNINDEXED_WARNING in w]
        assert warned and warned[0].startswith("150 person templates")
        report = diagnose(dep.app)
        assert (report.unindexed_points, report.index_due) == (300, True)  # 150 faces and 150 templates
        repair(dep.app, report)
        assert report.repaired["points_indexed"] == 300
        after = diagnose(dep.app)
        assert (after.unindexed_points, after.index_due, after.problems) == (0, False, 0)
        assert not [w for w in search_image(dep.app, probe, SearchOptions()).warnings if UNINDEXED_WARNING in w]
