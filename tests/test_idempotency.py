"""Issue 25, item 5: `Idempotency-Key` on the POSTs that create persons and enrollments.

Real SQLite/Postgres, the real vector store and model, the served app (its background worker included).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from identity.app.core import App, open_deployment
from identity.config import ApiSettings, Settings
from identity.services.access.idempotency import Started, abandon, begin
from identity.services.access.keys import create_key

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from identity.api.app import create_api  # noqa: E402
from identity.api.idempotency import json_digest  # noqa: E402
from identity.api.schemas import PersonCreate  # noqa: E402

HOURS = 0.001  # 3.6 s: the shortest retention the setting allows, so a test can outlive it


@pytest.fixture(params=["sqlite", "postgres"])
def served(request, tmp_path: Path, lfw_dir: Path):
    url = None if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    imports = tmp_path / "imports"
    (imports / "Al_Gore").mkdir(parents=True)
    for image in sorted((lfw_dir / "Al_Gore").iterdir())[:2]:
        (imports / "Al_Gore" / image.name).write_bytes(image.read_bytes())
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=url,
        workers=1,
        api=ApiSettings(import_roots=str(imports), idempotency_hours=HOURS, inference_workers=1),
    )
    with open_deployment(settings):
        pass
    with App.open(settings) as core:
        keys = {role: create_key(core, f"{role}-key", role).key for role in ("enroll", "admin")}
        with TestClient(create_api(core)) as client:
            yield client, keys, lfw_dir, imports


def headers(keys: dict[str, str], role: str, idempotency_key: str | None = None) -> dict[str, str]:
    given = {"Authorization": f"Bearer {keys[role]}"}
    return given | ({"Idempotency-Key": idempotency_key} if idempotency_key else {})


def persons(client: TestClient, keys: dict[str, str]) -> list[str]:
    return [p["external_id"] for p in client.get("/v1/persons", headers=headers(keys, "admin")).json()["items"]]


def test_a_retried_person_create_gets_the_first_answer_and_creates_once(served) -> None:
    client, keys, *_ = served
    first = client.post("/v1/persons", json={"external_id": "E-1"}, headers=headers(keys, "enroll", "k-1"))
    again = client.post("/v1/persons", json={"external_id": "E-1"}, headers=headers(keys, "enroll", "k-1"))
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert persons(client, keys) == ["E-1"]
    # without the header a repeat acts again: here, a conflict
    assert client.post("/v1/persons", json={"external_id": "E-1"}, headers=headers(keys, "enroll")).status_code == 409
    # the key is the caller's own: another API key using it acts (and is refused as a duplicate)
    other = client.post("/v1/persons", json={"external_id": "E-1"}, headers=headers(keys, "admin", "k-1"))
    assert other.status_code == 409 and "Idempotent-Replayed" not in other.headers


def test_the_same_key_with_another_body_is_refused(served) -> None:
    client, keys, *_ = served
    client.post("/v1/persons", json={"external_id": "E-1"}, headers=headers(keys, "enroll", "k-1"))
    other = client.post("/v1/persons", json={"external_id": "E-2"}, headers=headers(keys, "enroll", "k-1"))
    assert other.status_code == 422
    assert "Idempotency-Key 'k-1' was sent with another request" in other.json()["error"]
    assert persons(client, keys) == ["E-1"]


def test_a_failed_request_releases_its_key_and_an_answer_expires(served) -> None:
    client, keys, *_ = served
    client.post("/v1/persons", json={"external_id": "E-1"}, headers=headers(keys, "enroll"))
    refused = client.post("/v1/persons", json={"external_id": "E-1"}, headers=headers(keys, "enroll", "k-2"))
    assert refused.status_code == 409  # not kept: the retry below acts again
    client.delete("/v1/persons/E-1", headers=headers(keys, "admin"))
    made = client.post("/v1/persons", json={"external_id": "E-1"}, headers=headers(keys, "enroll", "k-2"))
    assert made.status_code == 201 and "Idempotent-Replayed" not in made.headers

    time.sleep(HOURS * 3600 + 0.5)  # past the retention: the key acts again
    again = client.post("/v1/persons", json={"external_id": "E-1"}, headers=headers(keys, "enroll", "k-2"))
    assert again.status_code == 409 and "Idempotent-Replayed" not in again.headers


def test_a_retried_queued_enrollment_queues_once(served) -> None:
    client, keys, lfw, imports = served
    body = {"paths": [str(imports)]}
    first = client.post("/v1/enrollments", json=body, headers=headers(keys, "enroll", "batch-1"))
    again = client.post("/v1/enrollments", json=body, headers=headers(keys, "enroll", "batch-1"))
    assert first.status_code == again.status_code == 202 and again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true" and first.json()["queued"] == 2

    photo = sorted((lfw / "Aaron_Peirsol").iterdir())[0]
    files = [("image", (photo.name, photo.read_bytes(), "image/jpeg"))]
    up = [
        client.post(
            "/v1/enrollments/uploads",
            data={"person": "Aaron_Peirsol"},
            files=files,
            headers=headers(keys, "enroll", "up-1"),
        )
        for _ in range(2)
    ]
    assert up[0].json() == up[1].json() and up[1].headers["Idempotent-Replayed"] == "true"
    jobs = client.get("/v1/jobs", headers=headers(keys, "admin")).json()
    assert jobs["total"] == 3  # two photos of the folder, one upload: nothing queued twice
    uploads = [p for p in (Path(client.app.state.ctx.settings.data_dir) / "uploads").rglob("*") if p.is_file()]
    assert len(uploads) <= 1  # the replay's copy was not kept (the first's may be enrolled, or discarded)


def test_a_retried_photo_enrollment_enrolls_once_and_erasure_forgets_the_answer(served) -> None:
    client, keys, lfw, _ = served
    photo = sorted((lfw / "Al_Gore").iterdir())[0]
    files = [("image", (photo.name, photo.read_bytes(), "image/jpeg"))]
    sent = [
        client.post("/v1/persons/Al_Gore/faces", files=files, headers=headers(keys, "enroll", "sync-1"))
        for _ in range(2)
    ]
    assert sent[0].status_code == sent[1].status_code == 200, sent[0].text
    assert sent[0].json() == sent[1].json() and sent[1].headers["Idempotent-Replayed"] == "true"
    assert [i["outcome"] for i in sent[0].json()["images"]] == ["enrolled"]
    assert client.get("/v1/persons/Al_Gore", headers=headers(keys, "admin")).json()["faces"] == 1

    erased = client.delete("/v1/persons/Al_Gore", headers=headers(keys, "admin")).json()
    assert erased["removed"]["sql"]["idempotent_answers"] == 1
    after = client.post("/v1/persons/Al_Gore/faces", files=files, headers=headers(keys, "enroll", "sync-1"))
    assert after.status_code == 200 and "Idempotent-Replayed" not in after.headers  # enrolled anew
    assert client.get("/v1/persons/Al_Gore", headers=headers(keys, "admin")).json()["faces"] == 1


def test_keys_take_no_idempotency_key(served) -> None:
    client, keys, *_ = served
    made = [
        client.post("/v1/keys", json={"name": "kiosk", "role": "search"}, headers=headers(keys, "admin", "key-1"))
        for _ in range(2)
    ]
    assert made[0].status_code == 201 and made[1].status_code == 409  # its secret is never stored to replay


def test_a_duplicate_of_a_request_still_running_is_a_409(served) -> None:
    client, keys, *_ = served
    core = client.app.state.ctx.core
    # the first request holds the key, as a slow enrollment would while the retry arrives
    key_id = keys["enroll"].split("_")[1]
    held = begin(core, key_id, "POST /v1/persons", "slow-1", json_digest(PersonCreate(external_id="E-9")))
    assert isinstance(held, Started)
    running = client.post("/v1/persons", json={"external_id": "E-9"}, headers=headers(keys, "enroll", "slow-1"))
    assert running.status_code == 409 and "still running" in running.json()["error"]
    abandon(core, held)  # the first failed: the retry acts
    made = client.post("/v1/persons", json={"external_id": "E-9"}, headers=headers(keys, "enroll", "slow-1"))
    assert made.status_code == 201
