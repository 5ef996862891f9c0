"""Issue 25, item 5: every v1 list answers `{"items": [...], "next": CURSOR|null, "total": N}`.

Real SQLite/Postgres and vector store, the real app through an HTTP client (no lifespan: the searches
are made through the service, with the real model).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from identity.app.core import App, open_deployment
from identity.config import Settings
from identity.services.access.keys import create_key
from identity.services.queue.jobs import queue_enrollment
from identity.services.records.persons import add_person
from identity.services.search.identify import SearchOptions, search_image
from identity.store.sql.jobs import JobSpec

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from identity.api.app import create_api  # noqa: E402

PEOPLE = [f"p{n:02d}" for n in range(7)]


@pytest.fixture(params=["sqlite", "postgres"])
def site(request, tmp_path: Path, lfw_dir: Path):
    """Seven persons, five queued jobs, three logged searches (two by one actor), three keys."""
    url = None if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    settings = Settings(data_dir=tmp_path / "data", database_url=url, workers=1)
    photo = str(sorted((lfw_dir / "Al_Gore").iterdir())[0])
    with open_deployment(settings) as dep:
        for actor in ("kiosk", "kiosk", "desk"):
            search_image(dep.app, photo, SearchOptions(actor=actor))
    with App.open(settings) as core:
        for external_id in PEOPLE:
            add_person(core, external_id)
        queue_enrollment(core, [JobSpec(f"/photos/{n}.jpg", "p00") for n in range(5)])
        key = create_key(core, "admin-key", "admin").key
        for name in ("second", "third"):
            create_key(core, name, "search")
        yield TestClient(create_api(core)), {"Authorization": f"Bearer {key}"}


def walk(client: TestClient, auth: dict[str, str], path: str, limit: int, **params: Any) -> list[dict[str, Any]]:
    """Every page of a list, following `next`; each page states the same total."""
    pages, cursor = [], None
    while True:
        answer = client.get(path, params={**params, "limit": limit, "cursor": cursor}, headers=auth)
        assert answer.status_code == 200, answer.text
        page = answer.json()
        assert set(page) == {"items", "next", "total"} and len(page["items"]) <= limit
        pages.append(page)
        cursor = page["next"]
        if cursor is None:
            break
    assert len({p["total"] for p in pages}) == 1
    return pages


def test_every_list_pages_with_a_cursor_and_states_the_total(site) -> None:
    client, auth = site
    pages = walk(client, auth, "/v1/persons", 3)
    assert [len(p["items"]) for p in pages] == [3, 3, 1] and pages[0]["total"] == 7
    assert [p["external_id"] for page in pages for p in page["items"]] == PEOPLE  # none repeated, none skipped

    jobs = walk(client, auth, "/v1/jobs", 2, state="queued")
    assert jobs[0]["total"] == 5 and sum(len(p["items"]) for p in jobs) == 5
    ids = [j["id"] for page in jobs for j in page["items"]]
    assert ids == sorted(ids, reverse=True)  # newest first, across pages

    searches = walk(client, auth, "/v1/searches", 1)
    assert searches[0]["total"] == 3 and len(searches) == 3
    assert len({s["search_id"] for page in searches for s in page["items"]}) == 3
    assert walk(client, auth, "/v1/searches", 10, actor="kiosk")[0]["total"] == 2  # the total counts the filter

    keys = walk(client, auth, "/v1/keys", 2)
    assert [k["name"] for page in keys for k in page["items"]] == ["admin-key", "second", "third"]


def test_a_filter_that_matches_nothing_is_an_empty_last_page(site) -> None:
    client, auth = site
    answer = client.get("/v1/persons", params={"q": "nobody"}, headers=auth).json()
    assert answer == {"items": [], "next": None, "total": 0}


def test_a_cursor_the_server_did_not_give_is_a_clear_422(site) -> None:
    client, auth = site
    for path in ("/v1/persons", "/v1/jobs", "/v1/searches", "/v1/keys"):
        answer = client.get(path, params={"cursor": "not-a-cursor"}, headers=auth)
        assert answer.status_code == 422, (path, answer.text)
        assert "cursor" in answer.json()["error"] and "next" in answer.json()["error"]
