"""Images as base64 strings in a JSON body (POST /v1/search, /v1/verify, /v1/detect): the same answers as uploads,
under the same limits, and a clear refusal of what is not base64."""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

import pytest

from identity.app.core import App, open_deployment
from identity.config import ApiSettings, Settings
from identity.services.access.keys import create_key
from identity.services.enrollment.inputs import from_directory
from identity.services.enrollment.writer import EnrollmentWriter
from identity.services.queue.loop import process_queue, queue_jobs

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from identity.api.app import create_api  # noqa: E402

PEOPLE = {"Al_Gore": 2, "Aaron_Peirsol": 2}


def photo(lfw: Path, person: str, n: int) -> Path:
    return lfw / person / f"{person}_{n:04d}.jpg"


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")


@pytest.fixture(params=["sqlite", "postgres"])
def served(request, tmp_path: Path, lfw_dir: Path):
    url = None if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    settings = Settings(
        data_dir=tmp_path / "data", database_url=url, workers=1, api=ApiSettings(max_upload_mb=1, inference_workers=1)
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
        key = create_key(core, "search-key", "search").key
        enroll = create_key(core, "enroll-key", "enroll").key
        with TestClient(create_api(core)) as client:
            yield client, {"Authorization": f"Bearer {key}"}, {"Authorization": f"Bearer {enroll}"}, lfw_dir


def test_json_bodies_search_verify_detect_and_enroll_as_uploads_do(served) -> None:
    client, headers, enroll, lfw = served
    probe = photo(lfw, "Al_Gore", 3)
    uploaded = client.post(
        "/v1/search",
        files=[("image", (probe.name, probe.read_bytes(), "image/jpeg"))],
        data={"top_k": "2"},
        headers=headers,
    ).json()
    sent = client.post("/v1/search", json={"image": b64(probe), "top_k": 2}, headers=headers)
    assert sent.status_code == 200, sent.text
    [by_json], [by_upload] = sent.json()["results"], uploaded["results"]
    assert by_json["image"] == "image-0" and by_json["sha256"] == by_upload["sha256"]
    assert by_json["faces"][0]["candidates"] == by_upload["faces"][0]["candidates"]
    assert len(by_json["faces"][0]["candidates"]) == 2
    several = client.post(
        "/v1/search", json={"image": [b64(probe), b64(photo(lfw, "Aaron_Peirsol", 3))]}, headers=headers
    )
    names = [r["faces"][0]["candidates"][0]["person"]["external_id"] for r in several.json()["results"]]
    assert names == ["Al_Gore", "Aaron_Peirsol"]

    verified = client.post("/v1/verify", json={"image_a": b64(probe), "person": "Al_Gore"}, headers=headers)
    assert verified.status_code == 200 and verified.json()["decision"] == "match", verified.text
    pair = client.post(
        "/v1/verify", json={"image_a": b64(probe), "image_b": b64(photo(lfw, "Aaron_Peirsol", 3))}, headers=headers
    )
    assert pair.json()["decision"] == "no_match"
    # a data: URI and MIME line breaks are base64 too
    wrapped = "data:image/jpeg;base64," + "\n".join(b64(probe)[i : i + 76] for i in range(0, len(b64(probe)), 76))
    detected = client.post("/v1/detect", json={"image": [wrapped]}, headers=headers)
    assert detected.status_code == 200, detected.text
    assert len(detected.json()["images"][0]["faces"]) == 1

    enrolled = client.post(
        "/v1/persons/Alejandro_Toledo/faces", json={"image": [b64(photo(lfw, "Alejandro_Toledo", 1))]}, headers=enroll
    )
    assert enrolled.status_code == 200, enrolled.text
    assert [i["outcome"] for i in enrolled.json()["images"]] == ["enrolled"]
    toledo = client.post("/v1/search", json={"image": b64(photo(lfw, "Alejandro_Toledo", 2))}, headers=headers).json()
    assert toledo["results"][0]["faces"][0]["candidates"][0]["person"]["external_id"] == "Alejandro_Toledo"
    queued = client.post(
        "/v1/enrollments/uploads",
        json={"person": "Alejandro_Toledo", "image": b64(photo(lfw, "Alejandro_Toledo", 3))},
        headers=enroll,
    )
    assert queued.status_code == 202 and queued.json()["queued"] == 1, queued.text


def test_bad_json_bodies_are_refused_with_the_reason(served) -> None:
    client, headers, _, lfw = served
    probe = photo(lfw, "Al_Gore", 3)
    bad = client.post("/v1/search", json={"image": "not base64 at all!"}, headers=headers)
    assert bad.status_code == 422 and bad.json()["detail"][0]["where"] == "body.image[0]"
    assert "not valid base64" in bad.json()["detail"][0]["problem"]
    bad_b = client.post("/v1/verify", json={"image_a": b64(probe), "image_b": "%%%"}, headers=headers)
    assert bad_b.status_code == 422 and bad_b.json()["detail"][0]["where"] == "body.image_b"
    number = client.post("/v1/verify", json={"image_a": 12, "person": "Al_Gore"}, headers=headers)
    assert number.status_code == 422 and "base64 string" in number.json()["detail"][0]["problem"]
    misspelt = client.post("/v1/search", json={"images": [b64(probe)]}, headers=headers)
    assert misspelt.status_code == 422 and {p["where"] for p in misspelt.json()["detail"]} == {"body.images"}
    missing = client.post("/v1/search", json={"top_k": 2}, headers=headers)
    assert missing.status_code == 422 and missing.json()["detail"][0]["where"] == "body.image"
    invalid = client.post("/v1/search", json={"image": b64(probe), "top_k": 0}, headers=headers)
    assert invalid.status_code == 422 and invalid.json()["detail"][0]["where"] == "body.top_k"
    broken = client.post("/v1/search", content=b'{"image": ', headers={**headers, "Content-Type": "application/json"})
    assert broken.status_code == 400 and "not valid JSON" in broken.json()["error"]
    text = client.post("/v1/search", content=b"hello", headers={**headers, "Content-Type": "text/plain"})
    assert text.status_code == 415 and "multipart/form-data or application/json" in text.json()["error"]
    # 1 MB allowed: 800 kB of bytes is over 1 MB as base64, and the raw body's limit holds first
    too_big = client.post("/v1/search", json={"image": base64.b64encode(b"x" * 800_000).decode()}, headers=headers)
    assert too_big.status_code == 413 and set(too_big.json()) == {"error", "detail"}
    decoded = b"\xff\xd8" + b"x" * 600_000  # 800 kB as base64: within the body limit, the decoded bytes too
    fits = client.post("/v1/search", json={"image": base64.b64encode(decoded).decode()}, headers=headers)
    assert fits.status_code == 422 and fits.json()["error"].startswith("image-0: ")  # read, and not a usable image
