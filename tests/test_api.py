"""The HTTP API through an HTTP client against the real app: real SQLite/Postgres, the real vector engine, real
weights."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from PIL import Image

from identity.app.core import App, open_deployment
from identity.config import ApiSettings, EnrollSettings, Settings
from identity.services.access.keys import create_key
from identity.services.enrollment.inputs import from_directory
from identity.services.enrollment.writer import EnrollmentWriter
from identity.services.queue.loop import process_queue, queue_jobs

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from identity.api.app import create_api  # noqa: E402

PEOPLE = {"Aaron_Peirsol": 2, "Al_Gore": 2, "Alejandro_Toledo": 2}


def photo(lfw: Path, person: str, n: int) -> Path:
    return lfw / person / f"{person}_{n:04d}.jpg"


@pytest.fixture(params=["sqlite", "postgres"])
def served(request, tmp_path: Path, lfw_dir: Path):
    """A small gallery enrolled, the API over one App, and a key of each role."""
    url = None if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    imports = tmp_path / "imports"
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=url,
        workers=1,
        enroll=EnrollSettings(chunk_size=4),
        api=ApiSettings(import_roots=str(imports), max_upload_mb=2, inference_workers=2),
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
        keys = {role: create_key(core, f"{role}-key", role).key for role in ("search", "enroll", "audit", "admin")}
        with TestClient(create_api(core)) as client:
            yield client, keys, settings, lfw_dir, imports


def auth(keys: dict[str, str], role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {keys[role]}"}


def upload(*paths: Path) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("image", (p.name, p.read_bytes(), "image/jpeg")) for p in paths]


def test_health_needs_no_key_and_ready_checks_the_stores(served) -> None:
    client, *_ = served
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready", ready.json()
    assert "/v1/search" in client.get("/openapi.json").json()["paths"]


def test_search_finds_the_person_with_a_search_key_and_refuses_without_one(served) -> None:
    client, keys, _, lfw, _ = served
    probe = photo(lfw, "Al_Gore", 3)
    missing = client.post("/v1/search", files=upload(probe))
    assert missing.status_code == 401 and set(missing.json()) == {"error", "detail"}
    wrong = client.post("/v1/search", files=upload(probe), headers={"Authorization": "Bearer idk_nope_nope"})
    assert wrong.status_code == 401 and "nope" not in wrong.text  # no key material echoed
    found = client.post("/v1/search", files=upload(probe), data={"top_k": "3"}, headers=auth(keys, "search"))
    assert found.status_code == 200, found.text
    [result] = found.json()["results"]
    assert result["image"] == probe.name and result["faces"][0]["candidates"][0]["person"]["external_id"] == "Al_Gore"
    assert len(result["faces"][0]["candidates"]) == 3 and found.json()["errors"] == []
    logged = client.get("/v1/searches", params={"actor": "search-key"}, headers=auth(keys, "audit")).json()["items"]
    assert logged[0]["search_id"] == result["search_id"]  # the key's name is the actor


def test_bad_uploads_are_reasons_not_errors_and_only_all_bad_is_422(served, tmp_path: Path) -> None:
    client, keys, _, lfw, _ = served
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    blank = tmp_path / "blank.png"
    Image.new("RGB", (120, 120), "white").save(blank)
    mixed = client.post(
        "/v1/search", files=upload(photo(lfw, "Al_Gore", 3), broken, blank), headers=auth(keys, "search")
    )
    assert mixed.status_code == 200
    errors = {e["image"]: e for e in mixed.json()["errors"]}
    assert errors["broken.jpg"]["exit_code"] == 1 and errors["broken.jpg"]["error"].startswith("broken.jpg: ")
    assert errors["blank.png"]["error"] == "no face found in blank.png" and errors["blank.png"]["exit_code"] == 3
    bad = client.post("/v1/search", files=upload(broken), headers=auth(keys, "search"))
    assert bad.status_code == 422 and bad.json()["error"].startswith("broken.jpg: ")
    too_big = client.post(
        "/v1/search", files=[("image", ("big.jpg", b"x" * 2_100_000, "image/jpeg"))], headers=auth(keys, "search")
    )
    assert too_big.status_code == 413 and set(too_big.json()) == {"error", "detail"}
    invalid = client.post("/v1/search", files=upload(broken), data={"top_k": "0"}, headers=auth(keys, "search"))
    assert invalid.status_code == 422 and invalid.json()["detail"][0]["where"].endswith("top_k")


def test_roles_decide_and_an_admin_erasure_makes_the_person_unsearchable(served) -> None:
    client, keys, _, lfw, _ = served
    assert client.delete("/v1/persons/Al_Gore", headers=auth(keys, "search")).status_code == 403
    assert client.delete("/v1/persons/Al_Gore", headers=auth(keys, "audit")).status_code == 403
    assert client.get("/v1/persons/Al_Gore", headers=auth(keys, "search")).status_code == 403
    audit = client.get("/v1/persons/Al_Gore/audit", headers=auth(keys, "audit"))
    assert audit.status_code == 200 and len(audit.json()["faces"]) == 2
    erased = client.delete("/v1/persons/Al_Gore", headers=auth(keys, "admin"))
    assert erased.status_code == 200 and erased.json()["faces_erased"] == 2
    assert list(erased.json()) == ["deleted", "person_id", "faces_erased", "removed"]  # as `person delete --json`
    assert client.delete("/v1/persons/Al_Gore", headers=auth(keys, "admin")).json()["already_deleted"] is True
    after = client.post("/v1/search", files=upload(photo(lfw, "Al_Gore", 3)), headers=auth(keys, "search")).json()
    names = {c["person"]["external_id"] for r in after["results"] for f in r["faces"] for c in f["candidates"]}
    assert "Al_Gore" not in names
    assert client.get("/v1/persons/Al_Gore", headers=auth(keys, "audit")).status_code == 404


def test_persons_crud_merge_and_a_revoked_key(served) -> None:
    client, keys, _, _, _ = served
    made = client.post(
        "/v1/persons",
        json={"external_id": "E-1", "display_name": "<b>Eve</b>", "attributes": {"team": "red"}},
        headers=auth(keys, "enroll"),
    )
    assert made.status_code == 201 and made.json()["faces"] == 0
    assert client.post("/v1/persons", json={"external_id": "E-1"}, headers=auth(keys, "enroll")).status_code == 409
    changed = client.patch(
        "/v1/persons/E-1", json={"attributes": {"room": "3"}, "remove": ["team"]}, headers=auth(keys, "enroll")
    )
    assert changed.json()["attributes"] == {"room": "3"}
    listed = client.get("/v1/persons", params={"attribute": "room=3"}, headers=auth(keys, "audit")).json()["items"]
    assert [p["external_id"] for p in listed] == ["E-1"]
    first = client.get("/v1/persons", params={"limit": 1}, headers=auth(keys, "audit")).json()
    page = client.get("/v1/persons", params={"limit": 2, "cursor": first["next"]}, headers=auth(keys, "audit")).json()
    assert [p["external_id"] for p in page["items"]] == ["Al_Gore", "Alejandro_Toledo"]
    assert page["total"] == first["total"] and page["next"]
    merged = client.post("/v1/persons/Al_Gore/merge", json={"absorb": "Aaron_Peirsol"}, headers=auth(keys, "admin"))
    assert merged.json() == {
        "kept": "Al_Gore",
        "merged": "Aaron_Peirsol",
        "faces_moved": 2,
        "kept_id": client.get("/v1/persons/Al_Gore", headers=auth(keys, "audit")).json()["id"],
    }
    revoked = client.delete("/v1/keys/enroll-key", headers=auth(keys, "admin"))
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    assert client.get("/v1/jobs", headers=auth(keys, "enroll")).status_code == 401


def test_enrolling_photos_now_and_queued_and_erasure_removes_the_uploads(served) -> None:
    client, keys, settings, lfw, imports = served
    now = client.post(
        "/v1/persons/Adam_Sandler/faces", files=upload(photo(lfw, "Adam_Sandler", 1)), headers=auth(keys, "enroll")
    )
    assert now.status_code == 200, now.text
    assert [i["outcome"] for i in now.json()["images"]] == ["enrolled"]
    stored = list((settings.data_dir / "uploads").rglob("*.jpg"))
    assert [p.name for p in stored] == ["Adam_Sandler_0001.jpg"]

    outside = client.post("/v1/enrollments", json={"paths": [str(lfw / "George_W_Bush")]}, headers=auth(keys, "enroll"))
    assert outside.status_code == 403 and "import root" in outside.json()["error"]
    for not_a_path in ("~0", "~no-such-user/x", "a\x00b"):  # "~0": the case the fuzz test once found as a 500
        odd = client.post("/v1/enrollments", json={"paths": [not_a_path]}, headers=auth(keys, "enroll"))
        assert odd.status_code == 422 and "not a usable path" in odd.json()["error"], (not_a_path, odd.text)
    (imports / "Adam_Sandler").mkdir(parents=True)
    for n in (2, 3):
        shutil.copy(photo(lfw, "Adam_Sandler", n), imports / "Adam_Sandler")
    queued = client.post("/v1/enrollments", json={"paths": [str(imports)]}, headers=auth(keys, "enroll"))
    assert queued.status_code == 202 and queued.json()["queued"] == 2
    batch = queued.json()["batch"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        jobs = client.get("/v1/jobs", params={"batch": batch}, headers=auth(keys, "enroll")).json()["items"]
        if all(j["status"] == "done" for j in jobs):
            break
        time.sleep(0.2)
    assert [j["outcome"] for j in jobs] == ["enrolled", "enrolled"]  # the server's background runner did them
    person = client.get("/v1/persons/Adam_Sandler", headers=auth(keys, "audit")).json()
    assert person["faces"] == 3
    erased = client.delete("/v1/persons/Adam_Sandler", headers=auth(keys, "admin")).json()
    assert erased["removed"]["uploaded_files"] == 1 and not list((settings.data_dir / "uploads").rglob("*.jpg"))
    assert (imports / "Adam_Sandler" / "Adam_Sandler_0002.jpg").is_file()  # the organization's own files stay


def test_metrics_need_an_admin_key_and_count_requests(served) -> None:
    client, keys, *_ = served
    client.get("/healthz")
    assert client.get("/metrics", headers=auth(keys, "search")).status_code == 403
    text = client.get("/metrics", headers=auth(keys, "admin")).text
    assert 'identity_http_requests_total{method="GET",route="/healthz",status="200"} 1' in text
    assert 'identity_jobs{status="queued"} 0' in text


def test_a_full_inference_queue_answers_503_with_retry_after(served, monkeypatch) -> None:
    import threading

    from identity.faces import ThreadExecutor, build_pipeline

    client, keys, settings, lfw, _ = served
    probe = photo(lfw, "Al_Gore", 3)
    one_slot = ThreadExecutor(lambda: build_pipeline(settings), threads=1, queue_limit=0)
    monkeypatch.setattr(client.app.state.ctx, "inference", one_slot)
    started, release = threading.Event(), threading.Event()
    holder = threading.Thread(
        target=lambda: list(one_slot.analyse([probe], before_each=lambda: (started.set(), release.wait(30))))
    )  # a task holding the one slot until released
    holder.start()
    assert started.wait(30)
    busy = client.post("/v1/search", files=upload(probe), headers=auth(keys, "search"))
    release.set()
    holder.join(30)
    assert busy.status_code == 503 and busy.headers["Retry-After"] == "1"
    assert client.post("/v1/search", files=upload(probe), headers=auth(keys, "search")).status_code == 200
    one_slot.close()


def test_keys_made_over_http_work_at_once_and_are_listed_without_their_secret(served) -> None:
    client, keys, _, lfw, _ = served
    made = client.post("/v1/keys", json={"name": "kiosk", "role": "search"}, headers=auth(keys, "admin"))
    assert made.status_code == 201 and made.json()["key"].startswith("idk_")
    kiosk = {"Authorization": f"Bearer {made.json()['key']}"}
    assert client.post("/v1/search", files=upload(photo(lfw, "Al_Gore", 3)), headers=kiosk).status_code == 200
    listed = client.get("/v1/keys", headers=auth(keys, "admin")).json()["items"]
    assert {k["name"] for k in listed} >= {"kiosk", "admin-key"} and all("key" not in k for k in listed)
    assert made.json()["key"] not in client.get("/v1/keys", headers=auth(keys, "admin")).text
    assert client.post("/v1/keys", json={"name": "x", "role": "root"}, headers=auth(keys, "admin")).status_code == 422


def test_keys_commands_print_the_key_once_and_revoke(clean_env, capsys) -> None:
    import json

    from identity_cli.main import main

    assert main(["keys", "create", "ops", "--role", "admin", "--json"]) == 0
    key = json.loads(capsys.readouterr().out)["key"]
    assert main(["keys", "list", "--json"]) == 0
    listed = capsys.readouterr().out
    secret = key.split("_", 2)[2]  # idk_<key id>_<secret>; the secret's urlsafe alphabet holds "_" too
    assert '"ops"' in listed and key not in listed and secret not in listed
    assert main(["keys", "create", "ops", "--role", "search"]) == 1  # names are unique
    capsys.readouterr()
    assert main(["keys", "revoke", "ops", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["revoked_at"]
    assert main(["keys", "create", "x", "--role", "root"]) == 1
    assert "expected one of search, enroll, audit, admin" in capsys.readouterr().err


def test_metrics_on_their_own_bind_address_need_no_key(served) -> None:
    from identity.api.app import create_metrics_api

    client, *_ = served
    scraped = TestClient(create_metrics_api(client.app.state.ctx)).get("/metrics")
    assert scraped.status_code == 200 and "identity_http_requests_total" in scraped.text


def test_concurrent_searches_during_a_bulk_enrollment_lose_nothing(served) -> None:
    import threading

    client, keys, _, lfw, imports = served
    people = ["Abdoulaye_Wade", "Abel_Pacheco", "Adam_Sandler"]
    for person in people:
        (imports / person).mkdir(parents=True)
        for n in (1, 2, 3):
            shutil.copy(photo(lfw, person, n), imports / person)
    queued = client.post("/v1/enrollments", json={"paths": [str(imports)]}, headers=auth(keys, "enroll")).json()
    assert queued["queued"] == 9
    answers: list[int] = []

    def searcher(person: str) -> None:
        own = TestClient(client.app)  # a client per thread; the app (and its runner) is the one being served
        for n in (1, 2):
            answers.append(
                own.post(
                    "/v1/search", files=upload(photo(lfw, "Al_Gore", n + 2)), headers=auth(keys, "search")
                ).status_code
            )

    threads = [threading.Thread(target=searcher, args=(p,)) for p in people]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        jobs = client.get("/v1/jobs", params={"batch": queued["batch"]}, headers=auth(keys, "enroll")).json()["items"]
        if all(j["status"] == "done" for j in jobs):
            break
        time.sleep(0.2)
    assert answers == [200] * 6
    assert sorted(j["outcome"] for j in jobs) == ["enrolled"] * 9
    logged = client.get("/v1/searches", params={"actor": "search-key"}, headers=auth(keys, "audit")).json()
    assert len(logged["items"]) == 6 == logged["total"]
    for person in people:
        assert client.get(f"/v1/persons/{person}", headers=auth(keys, "audit")).json()["faces"] == 3
