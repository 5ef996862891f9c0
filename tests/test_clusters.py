"""Clustering unlabelled faces (a folder, or kept unknown faces of searches), correcting and naming clusters."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from test_cli import run_cli

from identity.app.core import open_deployment
from identity.config import ReviewSettings, Settings
from identity.errors import InvalidArgument
from identity.serialize import to_json
from identity.services.clustering.clusters import (
    cluster_folder,
    cluster_searches,
    list_clusters,
    merge_clusters,
    name_cluster,
    split_cluster,
)
from identity.services.curation.edits import delete_person
from identity.services.enrollment.inputs import from_directory
from identity.services.enrollment.writer import EnrollmentWriter
from identity.services.queue.loop import process_queue, queue_jobs
from identity.services.search.identify import SearchOptions, search_image
from identity.services.search.unknown_faces import expire_unknown
from identity.store.sql.tables import UnknownFace

PEOPLE = {"Tony_Blair": 4, "Donald_Rumsfeld": 4, "Jean_Chretien": 3, "Hans_Blix": 3}


def unlabelled(lfw_dir: Path, root: Path, people: dict[str, int], skip: int = 0) -> dict[str, str]:
    """The photos of `people` in one flat folder (labels hidden); returns file name -> person."""
    root.mkdir(parents=True, exist_ok=True)
    truth = {}
    for person, count in people.items():
        for photo in sorted((lfw_dir / person).iterdir())[skip : skip + count]:
            shutil.copy(photo, root / f"img_{len(truth):03d}.jpg")
            truth[f"img_{len(truth):03d}.jpg"] = person
    return truth


@pytest.fixture(params=["sqlite", "postgres"])
def settings(request, tmp_path: Path) -> Settings:
    url = None if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    return Settings(data_dir=tmp_path / "data", database_url=url, workers=1)


def test_a_folder_clusters_by_identity_with_stable_ids_and_a_named_cluster_enrolls(settings, lfw_dir, tmp_path) -> None:
    folder = tmp_path / "archive"
    truth = unlabelled(lfw_dir, folder, PEOPLE)
    with open_deployment(settings) as dep:
        run = cluster_folder(dep.app, folder, workers=1)
        assert run.photos == len(truth) and run.errors == []
        for cluster in run.clusters:  # a cluster never mixes two people
            assert len({truth[Path(f.source_path).name] for f in cluster.faces}) == 1, cluster
        people_found = {truth[Path(c.faces[0].source_path).name] for c in run.clusters}
        assert len(people_found) >= 3
        assert [c.size for c in run.clusters] == sorted((c.size for c in run.clusters), reverse=True)

        again = cluster_folder(dep.app, folder, workers=1)
        assert [c.cluster_id for c in again.clusters] == [c.cluster_id for c in run.clusters]

        biggest = run.clusters[0]
        person = truth[Path(biggest.faces[0].source_path).name]
        named = name_cluster(dep.app, biggest.cluster_id, new_external_id="archive-1", display_name=person, actor="rev")
        assert named.states == {"enrolled": biggest.size} and named.created_person
        probe = sorted((lfw_dir / person).iterdir())[PEOPLE[person] + 1]
        found = search_image(dep.app, str(probe), SearchOptions())
        assert found.faces[0].best.person.external_id == "archive-1"

        third = cluster_folder(dep.app, folder, workers=1)  # the named cluster is left as it is
        assert third.left_alone == biggest.size
        assert {c.cluster_id: c.status for c in list_clusters(dep.app)}[biggest.cluster_id] == "named"

        erased = delete_person(dep.app, "archive-1")
        assert to_json(erased)["removed"]["sql"]["clusters"] == 1  # the named cluster listed their photos


def test_split_and_merge_correct_a_cluster_and_one_photo_never_holds_one_person_twice(
    settings, lfw_dir, tmp_path
) -> None:
    folder = tmp_path / "archive"
    unlabelled(lfw_dir, folder, {"Tony_Blair": 4})
    group = Path(__import__("insightface").__file__).parent / "data" / "images" / "t1.jpg"
    shutil.copy(group, folder / "group.jpg")
    with open_deployment(settings) as dep:
        run = cluster_folder(dep.app, folder, workers=1)
        [blair] = [c for c in run.clusters if all("img_" in f.source_path for f in c.faces)]
        everything = run.clusters + run.singletons
        group_faces = [c for c in everything if any("group.jpg" in f.source_path for f in c.faces)]
        assert all(sum("group.jpg" in f.source_path for f in c.faces) == 1 for c in group_faces)

        first, second = split_cluster(dep.app, blair.cluster_id, [blair.faces[0].face_key])
        assert (first.size, second.size) == (blair.size - 1, 1)
        assert first.status == second.status == "edited"
        merged = merge_clusters(dep.app, [first.cluster_id, second.cluster_id])
        assert merged.size == blair.size
        a, b = group_faces[:2]
        with pytest.raises(InvalidArgument, match="both hold a face of photo"):
            merge_clusters(dep.app, [a.cluster_id, b.cluster_id])
        with pytest.raises(InvalidArgument, match="holds no face"):
            split_cluster(dep.app, merged.cluster_id, ["nope"])


def test_unknown_faces_of_searches_cluster_and_name_from_the_kept_embedding(lfw_dir, tmp_path, copy_labelled) -> None:
    settings = Settings(data_dir=tmp_path / "data", workers=1, review=ReviewSettings(keep_unknown_faces=True))
    gallery = tmp_path / "gallery"
    copy_labelled(gallery, ["Al_Gore", "Aaron_Peirsol", "Alejandro_Toledo"], 2)
    strangers = tmp_path / "strangers"
    truth = unlabelled(lfw_dir, strangers, {"Tony_Blair": 3, "Donald_Rumsfeld": 3})
    with open_deployment(settings) as dep:
        batch, _ = queue_jobs(dep.app, from_directory(gallery))
        process_queue(dep.app, EnrollmentWriter(dep), batch, 1)
        for photo in sorted(strangers.iterdir()):
            assert search_image(dep.app, str(photo), SearchOptions(top_k=1)).faces[0].decision == "unknown"
        run = cluster_searches(dep.app)
        assert run.faces == len(truth)
        for cluster in run.clusters:
            assert len({truth[Path(f.source_path).name] for f in cluster.faces}) == 1
        biggest = run.clusters[0]
        assert biggest.size >= 2
        person = truth[Path(biggest.faces[0].source_path).name]
        for face in biggest.faces:  # the photos are gone: naming falls back on the kept embeddings
            Path(face.source_path).unlink()
        named = name_cluster(dep.app, biggest.cluster_id, new_external_id=person)
        assert named.states == {"enrolled": biggest.size}
        assert all("/uploads/" in face["source"] for face in named.faces)
        probe = sorted((lfw_dir / person).iterdir())[5]
        assert search_image(dep.app, str(probe), SearchOptions()).faces[0].best.person.external_id == person
        # what was enrolled is no longer kept as unknown; the rest expires after the retention period
        with dep.app.sessions() as session:
            left = session.query(UnknownFace).count()
        assert left == run.faces - biggest.size  # the probe matched: nothing new kept
    with open_deployment(settings) as dep:
        later = datetime.now(UTC) + timedelta(days=31)
        assert expire_unknown(dep.app, later)["expired"] == left
        assert dep.unknown_faces().count() == 0


def test_cli_cluster_needs_a_folder_or_from_searches(capsys, clean_env, tmp_path) -> None:
    code, _, err = run_cli(capsys, "cluster", "--json")
    assert code == 1 and "give a folder of photos, or --from-searches" in err
    code, _, err = run_cli(capsys, "cluster", "name", "c000", "--new", "x")
    assert code == 1 and "no cluster" in err
