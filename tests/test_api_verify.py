"""POST /v1/verify, POST /v1/detect, GET /v1/faces/{id} (and its thumbnail), and `identity verify`: the real app
over real SQLite/Postgres, the real vector engine and real weights."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from sqlalchemy import select

from identity.app.core import App, open_deployment
from identity.config import ApiSettings, Settings
from identity.services.access.keys import create_key
from identity.services.enrollment.inputs import from_directory
from identity.services.enrollment.writer import EnrollmentWriter
from identity.services.queue.loop import process_queue, queue_jobs
from identity.store.sql.tables import AuditEvent

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from identity.api.app import create_api  # noqa: E402

PEOPLE = {"Al_Gore": 2, "Aaron_Peirsol": 2, "Alejandro_Toledo": 2}
INSIGHTFACE_IMAGES = sorted(Path(__file__).resolve().parent.parent.glob(".venv/lib/*/site-packages/insightface/data"))


def photo(lfw: Path, person: str, n: int) -> Path:
    return lfw / person / f"{person}_{n:04d}.jpg"


def upload(field: str, path: Path) -> tuple[str, tuple[str, bytes, str]]:
    return (field, (path.name, path.read_bytes(), "image/jpeg"))


def auth(keys: dict[str, str], role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {keys[role]}"}


@pytest.fixture(params=["sqlite", "postgres"])
def served(request, tmp_path: Path, lfw_dir: Path):
    """Three persons enrolled from two photos each, the API over one App, and a key of each role."""
    url = None if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    settings = Settings(
        data_dir=tmp_path / "data", database_url=url, workers=1, api=ApiSettings(max_upload_mb=2, inference_workers=1)
    )
    root = tmp_path / "photos"
    for person, count in PEOPLE.items():
        (root / person).mkdir(parents=True)
        for n in range(1, count + 1):
            shutil.copy(photo(lfw_dir, person, n), root / person)
    with open_deployment(settings) as dep:
        batch, _ = queue_jobs(dep.app, from_directory(root))
        process_queue(dep.app, EnrollmentWriter(dep), batch, 1)
    with App.open(settings) as core:
        keys = {role: create_key(core, f"{role}-key", role).key for role in ("search", "enroll", "audit")}
        with TestClient(create_api(core)) as client:
            yield client, keys, core, lfw_dir


def test_two_photos_of_one_person_match_and_of_two_people_do_not(served) -> None:
    client, keys, _, lfw = served
    same = client.post(
        "/v1/verify",
        files=[upload("image_a", photo(lfw, "Al_Gore", 3)), upload("image_b", photo(lfw, "Al_Gore", 4))],
        headers=auth(keys, "search"),
    )
    assert same.status_code == 200, same.text
    body = same.json()
    assert body["decision"] == "match" and body["score"] >= body["threshold"]
    assert body["face_a"]["image"] == "Al_Gore_0003.jpg" and body["face_b"]["image"] == "Al_Gore_0004.jpg"
    assert body["person"] is None and body["best_face"] is None
    assert body["threshold_source"].startswith("pack default")  # nothing calibrated in this store
    other = client.post(
        "/v1/verify",
        files=[upload("image_a", photo(lfw, "Al_Gore", 3)), upload("image_b", photo(lfw, "Aaron_Peirsol", 3))],
        headers=auth(keys, "search"),
    )
    assert other.status_code == 200 and other.json()["decision"] == "no_match", other.text
    assert other.json()["score"] < other.json()["threshold"]
    logged = client.get("/v1/searches", params={"actor": "search-key"}, headers=auth(keys, "audit")).json()["items"]
    by_id = {entry["search_id"]: entry for entry in logged}
    # The log says what each entry was: a verification of two photos with its own score and decision.
    assert (by_id[body["search_id"]]["kind"], by_id[body["search_id"]]["decision"]) == ("verify", "match")
    assert by_id[body["search_id"]]["best"] == round(body["score"], 4)
    assert by_id[other.json()["search_id"]]["decision"] == "unknown"
    missing = client.post(
        "/v1/verify", files=[upload("image_a", photo(lfw, "Al_Gore", 3))], headers=auth(keys, "search")
    )
    assert missing.status_code == 422 and "second image or a person" in missing.json()["error"]
    beyond = client.post(
        "/v1/verify",
        files=[upload("image_a", photo(lfw, "Al_Gore", 3))],
        data={"person": "Al_Gore", "face_index_a": "5"},
        headers=auth(keys, "search"),
    )
    assert beyond.status_code == 422 and "has no face 5" in beyond.json()["error"]


def test_a_photo_against_a_person_is_logged_and_audited_and_needs_a_search_key(served) -> None:
    client, keys, core, lfw = served
    probe = [upload("image_a", photo(lfw, "Al_Gore", 3))]
    assert client.post("/v1/verify", files=probe, data={"person": "Al_Gore"}).status_code == 401
    found = client.post("/v1/verify", files=probe, data={"person": "Al_Gore"}, headers=auth(keys, "search"))
    assert found.status_code == 200, found.text
    body = found.json()
    assert body["decision"] == "match" and body["person"]["external_id"] == "Al_Gore" and body["face_b"] is None
    audit = client.get("/v1/persons/Al_Gore/audit", headers=auth(keys, "audit")).json()
    assert body["best_face"]["face_id"] in {face["face_id"] for face in audit["faces"]}
    assert body["best_face"]["score"] >= body["score"] - 0.5
    [searched] = [s for s in audit["searches"] if s["search_id"] == body["search_id"]]
    assert searched["score"] == body["score"] and searched["decision"] == "match"
    with core.sessions() as session:
        [event] = session.scalars(select(AuditEvent).where(AuditEvent.action == "verify")).all()
    assert event.actor == "search-key" and event.subject == "Al_Gore"
    stranger = client.post("/v1/verify", files=probe, data={"person": "Aaron_Peirsol"}, headers=auth(keys, "search"))
    assert stranger.json()["decision"] == "no_match"
    nobody = client.post("/v1/verify", files=probe, data={"person": "Nobody"}, headers=auth(keys, "search"))
    assert nobody.status_code == 404 and "Nobody" in nobody.json()["error"]


def test_detect_gives_every_face_of_a_group_photo_with_landmarks_and_quality(served, tmp_path: Path) -> None:
    client, keys, _, lfw = served
    if not INSIGHTFACE_IMAGES:
        pytest.skip("insightface's sample images are not installed")
    group = INSIGHTFACE_IMAGES[0] / "images" / "t1.jpg"
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    found = client.post(
        "/v1/detect",
        files=[upload("image", group), upload("image", photo(lfw, "Al_Gore", 3)), upload("image", broken)],
        headers=auth(keys, "search"),
    )
    assert found.status_code == 200, found.text
    group_image, single, unreadable = found.json()["images"]
    assert group_image["image"] == "t1.jpg" and len(group_image["faces"]) >= 4
    for face in group_image["faces"]:
        x1, y1, x2, y2 = face["bbox"]
        assert 0 <= x1 < x2 <= group_image["width"] and 0 <= y1 < y2 <= group_image["height"]
        assert len(face["landmarks"]) == 5 and face["detector"] and face["iod_px"] > 0
    assert len(single["faces"]) == 1 and single["faces"][0]["ok"] is True
    assert unreadable["image"] == "broken.jpg" and unreadable["error"] and unreadable["faces"] == []
    only_bad = client.post("/v1/detect", files=[upload("image", broken)], headers=auth(keys, "search"))
    assert only_bad.status_code == 422
    assert client.post("/v1/detect", files=[upload("image", group)], headers=auth(keys, "audit")).status_code == 403


def test_a_face_and_its_thumbnail_by_id_need_an_audit_key(served) -> None:
    client, keys, _, _ = served
    audit = client.get("/v1/persons/Aaron_Peirsol/audit", headers=auth(keys, "audit")).json()
    face_id = audit["faces"][0]["face_id"]
    face = client.get(f"/v1/faces/{face_id}", headers=auth(keys, "audit"))
    assert face.status_code == 200, face.text
    record = face.json()
    assert record["person"]["external_id"] == "Aaron_Peirsol" and record["thumbnail"] is True
    assert len(record["landmarks"]) == 5 and record["status"] == "indexed"
    thumb = client.get(f"/v1/faces/{face_id}/thumbnail", headers=auth(keys, "audit"))
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert thumb.content[:3] == b"\xff\xd8\xff"  # a JPEG
    assert client.get(f"/v1/faces/{face_id}", headers=auth(keys, "search")).status_code == 403
    assert client.get(f"/v1/faces/{face_id}/thumbnail", headers=auth(keys, "search")).status_code == 403
    unknown = client.get("/v1/faces/00000000-0000-0000-0000-000000000000", headers=auth(keys, "audit"))
    assert unknown.status_code == 404 and "no face" in unknown.json()["error"]
    assert client.get("/v1/faces/not-a-uuid/thumbnail", headers=auth(keys, "audit")).status_code == 404


def test_cli_verify_prints_the_decision_as_json(clean_env, lfw_dir: Path, tmp_path: Path, capsys) -> None:
    from identity_cli.main import main

    root = tmp_path / "photos" / "Al_Gore"
    root.mkdir(parents=True)
    shutil.copy(photo(lfw_dir, "Al_Gore", 1), root)
    shutil.copy(photo(lfw_dir, "Al_Gore", 2), root)
    assert main(["enroll", str(root.parent)]) == 0
    capsys.readouterr()
    code = main(["verify", str(photo(lfw_dir, "Al_Gore", 3)), "--person", "Al_Gore", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["decision"] == "match" and out["person"]["external_id"] == "Al_Gore"
    code = main(["verify", str(photo(lfw_dir, "Al_Gore", 3)), str(photo(lfw_dir, "Aaron_Peirsol", 1)), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["decision"] == "no_match" and out["face_b"]["face_index"] == 0
    assert main(["verify", str(photo(lfw_dir, "Al_Gore", 3))]) == 1  # neither a second photo nor --person
