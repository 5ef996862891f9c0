"""/v1/clusters over real SQLite/Postgres, the real vector engine and real weights: a cluster reviewed and named
through the HTTP API alone."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from identity.app.core import App, open_deployment
from identity.config import Settings
from identity.services.access.keys import create_key
from identity.services.clustering.clusters import cluster_folder

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from identity.api.app import create_api  # noqa: E402

PEOPLE = {"Tony_Blair": 4, "Donald_Rumsfeld": 4, "Jean_Chretien": 3}


@pytest.fixture(params=["sqlite", "postgres"])
def served(request, tmp_path: Path, lfw_dir: Path):
    """A flat folder of unlabelled photos clustered, the API over one App, and a key of each role."""
    url = None if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    settings = Settings(data_dir=tmp_path / "data", database_url=url, workers=1)
    folder = tmp_path / "archive"
    folder.mkdir()
    truth = {}
    for person, count in PEOPLE.items():
        for photo in sorted((lfw_dir / person).iterdir())[:count]:
            name = f"img_{len(truth):03d}.jpg"
            shutil.copy(photo, folder / name)
            truth[name] = person
    with open_deployment(settings) as dep:
        run = cluster_folder(dep.app, folder, workers=1)
        assert len(run.clusters) >= 3, run
    with App.open(settings) as core:
        keys = {role: create_key(core, f"{role}-key", role).key for role in ("search", "enroll", "audit")}
        with TestClient(create_api(core)) as client:
            yield client, keys, truth, lfw_dir


def auth(keys: dict[str, str], role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {keys[role]}"}


def test_clusters_are_listed_a_page_at_a_time_and_shown(served) -> None:
    client, keys, _, _ = served
    everything = client.get("/v1/clusters", params={"min_size": 2}, headers=auth(keys, "audit"))
    assert everything.status_code == 200, everything.text
    body = everything.json()
    assert set(body) == {"items", "next", "total"} and body["next"] is None and body["total"] == len(body["items"])
    sizes = [c["size"] for c in body["items"]]
    assert sizes == sorted(sizes, reverse=True) and len(sizes) >= 3
    pages, cursor = [], None
    while True:
        page = client.get(
            "/v1/clusters",
            params={"min_size": 2, "limit": 2, **({"cursor": cursor} if cursor else {})},
            headers=auth(keys, "audit"),
        ).json()
        assert page["total"] == body["total"]
        pages += page["items"]
        cursor = page["next"]
        if cursor is None:
            break
    assert [c["cluster_id"] for c in pages] == [c["cluster_id"] for c in body["items"]]
    first = body["items"][0]
    shown = client.get(f"/v1/clusters/{first['cluster_id']}", headers=auth(keys, "audit")).json()
    assert shown == first
    assert client.get("/v1/clusters", headers=auth(keys, "search")).status_code == 403
    assert client.get("/v1/clusters/nope", headers=auth(keys, "audit")).status_code == 404
    bad = client.get("/v1/clusters", params={"cursor": "garbage!"}, headers=auth(keys, "audit"))
    assert bad.status_code == 422 and "cursor" in bad.json()["error"]


def test_a_cluster_is_corrected_named_and_discarded_through_v1_only(served) -> None:
    client, keys, truth, lfw = served
    listed = client.get("/v1/clusters", params={"min_size": 2}, headers=auth(keys, "audit")).json()["items"]
    biggest, *_, last = listed
    cid = biggest["cluster_id"]
    face = biggest["faces"][0]["face_key"]
    split = client.post(f"/v1/clusters/{cid}/split", json={"faces": [face]}, headers=auth(keys, "enroll"))
    assert split.status_code == 200, split.text
    kept, moved = split.json()
    assert (kept["size"], moved["size"]) == (biggest["size"] - 1, 1) and kept["status"] == moved["status"] == "edited"
    nobody = client.post(f"/v1/clusters/{cid}/split", json={"faces": ["nope"]}, headers=auth(keys, "enroll"))
    assert nobody.status_code == 422 and "holds no face" in nobody.json()["error"]
    merged = client.post(
        f"/v1/clusters/{kept['cluster_id']}/merge",
        json={"clusters": [moved["cluster_id"]]},
        headers=auth(keys, "enroll"),
    )
    assert merged.status_code == 200 and merged.json()["size"] == biggest["size"], merged.text

    refused = client.post(f"/v1/clusters/{cid}/name", json={"new": "archive-1"}, headers=auth(keys, "audit"))
    assert refused.status_code == 403
    named = client.post(
        f"/v1/clusters/{cid}/name",
        json={"new": "archive-1", "display_name": "Archive One"},
        headers=auth(keys, "enroll"),
    )
    assert named.status_code == 200, named.text
    assert named.json()["states"] == {"enrolled": biggest["size"]} and named.json()["created_person"] is True
    assert client.get(f"/v1/clusters/{cid}", headers=auth(keys, "audit")).json()["status"] == "named"
    again = client.post(f"/v1/clusters/{cid}/name", json={"new": "archive-2"}, headers=auth(keys, "enroll"))
    assert again.status_code == 422 and "named already" in again.json()["error"]

    person = truth[Path(biggest["faces"][0]["source_path"]).name]
    probe = sorted((lfw / person).iterdir())[PEOPLE[person] + 1]
    found = client.post(
        "/v1/search", files=[("image", (probe.name, probe.read_bytes(), "image/jpeg"))], headers=auth(keys, "search")
    ).json()
    assert found["results"][0]["faces"][0]["candidates"][0]["person"]["external_id"] == "archive-1"

    discarded = client.post(f"/v1/clusters/{last['cluster_id']}/discard", headers=auth(keys, "enroll"))
    assert discarded.status_code == 200 and discarded.json()["status"] == "discarded", discarded.text
    left = client.get("/v1/clusters", params={"status": "discarded"}, headers=auth(keys, "audit")).json()
    assert [c["cluster_id"] for c in left["items"]] == [last["cluster_id"]] and left["total"] == 1
