"""/openapi.json fit for generated clients, and /docs that works offline.

The schema is checked against the committed snapshot tests/openapi.json, so a change to
the API is deliberate: regenerate it with the command in REGENERATE and review the diff.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from identity.api.app import create_api  # noqa: E402
from identity.api.openapi_snapshot import current_schema, render  # noqa: E402
from identity.app.core import App  # noqa: E402
from identity.config import Settings  # noqa: E402
from identity.services.access.keys import create_key  # noqa: E402

SNAPSHOT = Path(__file__).with_name("openapi.json")
REGENERATE = ".venv/bin/python -m identity.api.openapi_snapshot tests/openapi.json"
PUBLIC = {"getHealth", "getReadiness"}  # the only operations that need no key


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return current_schema()


@pytest.fixture
def client(tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """The app over a fresh SQLite store, without its lifespan (no model is loaded), and an admin key."""
    with App.open(Settings(data_dir=tmp_path / "data", workers=1)) as core:
        headers = {"Authorization": f"Bearer {create_key(core, 'admin-key', 'admin').key}"}
        api = create_api(core)
        try:
            yield TestClient(api), headers
        finally:
            api.state.ctx.close()


def operations(schema: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            yield method.upper(), path, operation


def test_the_schema_is_the_committed_snapshot(schema: dict[str, Any]) -> None:
    committed = SNAPSHOT.read_text(encoding="utf-8") if SNAPSHOT.exists() else ""
    assert render(schema) == committed, (
        f"/openapi.json differs from {SNAPSHOT}: if the API change is deliberate, run `{REGENERATE}` "
        "and commit the new snapshot (its diff is what generated clients will see change)"
    )


def test_the_regeneration_command_writes_the_snapshot(tmp_path: Path) -> None:
    written = tmp_path / "openapi.json"
    done = subprocess.run(
        [sys.executable, "-m", "identity.api.openapi_snapshot", str(written)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert written.read_text(encoding="utf-8") == SNAPSHOT.read_text(encoding="utf-8")


def test_every_operation_has_a_stable_camel_case_id(schema: dict[str, Any]) -> None:
    ids = [op.get("operationId", "") for _, _, op in operations(schema)]
    assert len(ids) == len(set(ids)) >= 20
    # FastAPI's generated ids read like search_v1_search_post; ours are set on every route
    assert [i for i in ids if not re.fullmatch(r"[a-z]+(?:[A-Z][a-z]+)+", i)] == []
    assert {"searchFaces", "listPersons", "getPerson", "createKey", "listJobs"} <= set(ids)


def test_every_keyed_operation_declares_the_bearer_scheme(schema: dict[str, Any]) -> None:
    assert schema["components"]["securitySchemes"]["bearerAuth"] | {"description": ""} == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "idk_<key id>_<secret>",
        "description": "",
    }
    for method, path, operation in operations(schema):
        expected = None if operation["operationId"] in PUBLIC else [{"bearerAuth": []}]
        assert operation.get("security") == expected, f"{method} {path}"


def test_error_statuses_are_documented_with_the_error_body(schema: dict[str, Any]) -> None:
    error_body = {"$ref": "#/components/schemas/ErrorBody"}
    for method, path, operation in operations(schema):
        responses = operation["responses"]
        if operation["operationId"] not in PUBLIC:
            assert {"401", "403", "429", "503"} <= set(responses), f"{method} {path}"
        if "requestBody" in operation:
            assert {"400", "413", "415", "422"} <= set(responses), f"{method} {path}"
        if "{" in path and operation["operationId"] != "enrollPhotos":  # which creates a person it does not find
            assert "404" in responses, f"{method} {path}"
        for status, answer in responses.items():
            if status.startswith(("4", "5")) and operation["operationId"] not in PUBLIC:
                assert answer["content"]["application/json"]["schema"] == error_body, f"{method} {path} {status}"
    # FastAPI's default 422 body ({"detail": [...]}) is not what this API answers
    assert "HTTPValidationError" not in schema["components"]["schemas"]


def test_closed_sets_are_enums(schema: dict[str, Any]) -> None:
    components = schema["components"]["schemas"]

    def ref(model: str, field: str) -> str:
        prop = components[model]["properties"][field]
        return next(s["$ref"] for s in prop.get("anyOf", [prop]) if "$ref" in s).rsplit("/", 1)[-1]

    assert set(components["Role"]["enum"]) == {"search", "enroll", "audit", "admin"}
    assert ref("ApiKey", "role") == ref("ApiKeyCreate", "role") == ref("CreatedApiKey", "role") == "Role"
    assert components["Decision"]["enum"] == ["match", "unknown", "not_searched"]
    assert components["DecisionFilter"]["enum"] == ["match", "unknown"]  # the log's: some face matched, or none
    assert (
        ref("FaceMatch", "decision") == ref("LoggedSearch", "decision") == ref("AuditSearch", "decision") == "Decision"
    )
    assert set(components["JobStatus"]["enum"]) == {"queued", "running", "done", "failed", "cancelled"}
    assert (ref("Job", "status"), ref("Job", "outcome")) == ("JobStatus", "JobOutcome")
    assert ref("LoggedSearch", "review") == "ReviewSummary" and ref("AuditSearch", "review") == "HitReview"
    assert set(components["HitReview"]["enum"]) == {"unreviewed", "confirmed", "rejected"}
    params = {
        p["name"]: p
        for _, _, op in operations(schema)
        for p in op.get("parameters", [])
        if op["operationId"] in ("listJobs", "listSearches")
    }
    assert {s.get("$ref") for s in params["state"]["schema"]["anyOf"]} >= {"#/components/schemas/JobState"}
    assert {s.get("$ref") for s in params["decision"]["schema"]["anyOf"]} >= {"#/components/schemas/DecisionFilter"}


def test_uploads_are_files_to_a_generator(schema: dict[str, Any]) -> None:
    """openapi-python-client makes a file parameter only of `format: binary` (FastAPI states none)."""
    # The routes that take images as uploads or base64 JSON (identity.api.images_in) state both bodies inline.
    stated = {op["operationId"]: op["requestBody"]["content"] for _, _, op in operations(schema) if "requestBody" in op}
    taking_images = (
        ("searchFaces", "image"),
        ("verifyFaces", "image_a"),
        ("detectFaces", "image"),
        ("enrollPhotos", "image"),
        ("queueEnrollmentUploads", "image"),
    )
    assert {operation for operation, content in stated.items() if "multipart/form-data" in content} == {
        operation for operation, _ in taking_images
    }
    for operation, field in taking_images:
        multipart = stated[operation]["multipart/form-data"]["schema"]["properties"][field]
        assert multipart.get("items", multipart)["format"] == "binary", operation
        encoded = stated[operation]["application/json"]["schema"]["properties"][field]
        assert "base64" in json.dumps(encoded), operation


def test_an_unknown_query_value_is_422_not_an_empty_list(client) -> None:
    http, headers = client
    bogus = http.get("/v1/jobs", params={"state": "bogus"}, headers=headers)
    assert bogus.status_code == 422 and set(bogus.json()) == {"error", "detail"}, bogus.text
    assert (
        http.get("/v1/jobs", params={"state": "rejected"}, headers=headers).json()["items"] == []
    )  # an outcome is a state
    assert http.get("/v1/searches", params={"decision": "maybe"}, headers=headers).status_code == 422


def test_a_body_of_another_media_type_is_415(client) -> None:
    http, headers = client
    as_text = http.post(
        "/v1/persons", content=json.dumps({"external_id": "P-1"}), headers=headers | {"Content-Type": "text/plain"}
    )
    assert as_text.status_code == 415 and as_text.json()["detail"] == {"expected": "application/json"}, as_text.text
    as_text = http.post("/v1/search", content=b"x", headers=headers | {"Content-Type": "text/plain"})
    assert as_text.status_code == 415
    assert as_text.json()["detail"] == {"expected": ["multipart/form-data", "application/json"]}
    created = http.post("/v1/persons", json={"external_id": "P-1"}, headers=headers)
    assert created.status_code == 201, created.text


def test_docs_work_offline_with_no_inline_script(client) -> None:
    http, _ = client
    page = http.get("/docs")
    assert page.status_code == 200 and "swagger-ui" in page.text
    assert not re.search(r"(?:https?:)?//[\w.-]", page.text), "the page names another host"
    assert re.findall(r"<script[^>]*>([^<]*)</script>", page.text) == ["", ""]  # each one a file, no inline code
    for url in re.findall(r'(?:src|href)="([^"]+)"', page.text):
        assert http.get(url).status_code == 200, url
    start = http.get("/docs/start.js").text
    assert '"/openapi.json"' in start and "validatorUrl: null" in start and "//" not in start
    assert http.get("/docs/assets/redoc.standalone.js").status_code == 404  # only the files the page uses
    assert http.get("/redoc").status_code == 404  # FastAPI's ReDoc page loads from a CDN


def test_an_image_a_few_pixels_a_side_is_no_face_not_a_500(client) -> None:
    """Found by the fuzz test once uploads were binary: dlib's detectors crash on a 1x1 PNG."""
    from io import BytesIO

    from PIL import Image

    http, headers = client
    for size in ((1, 1), (200, 1)):
        png = BytesIO()
        Image.new("L", size).save(png, "PNG")
        answer = http.post("/v1/search", files={"image": ("tiny.png", png.getvalue(), "image/png")}, headers=headers)
        assert answer.status_code == 422 and "no face" in answer.json()["error"], (size, answer.text)
