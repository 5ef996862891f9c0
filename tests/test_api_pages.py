"""Issue 22, the pages' part: security headers and CSP, flash codes, literal `q`, ids with `/`, one shape per
concept, and private data files (umask at the entry points, `doctor` reports and repairs wider modes).

Real SQLite/Postgres, the real vector engine, the real app through an HTTP client; no enrollment is needed
(persons only), so these run in seconds.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from identity.app.core import App, open_deployment
from identity.config import Settings
from identity.serialize import to_json
from identity.services.access.keys import create_key
from identity.services.records.audit import AuditSearch
from identity.services.records.persons import add_person
from identity_cli.main import main

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from identity.api.app import create_api  # noqa: E402

PEOPLE = ["alice", "dept/alice", "dept/bob", "bob_1", "bobx1", "100%", "1000", "back\\slash", "backxslash"]
EVIL = "Your session expired. Sign in again at http://evil.example"


@pytest.fixture(params=["sqlite", "postgres"])
def site(request, tmp_path: Path):
    """Persons (some with `/`, `_`, `%` and a backslash in their id), an admin key, the app (no lifespan: no models
    are loaded) and a UI session signed in with that key."""
    url = None if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    settings = Settings(data_dir=tmp_path / "data", database_url=url, workers=1)
    with open_deployment(settings):
        pass  # the schema and the vector collection made, as `identity init` does
    with App.open(settings) as core:
        for external_id in PEOPLE:
            add_person(core, external_id, external_id.replace("/", " ").title())
        key = create_key(core, "admin-key", "admin").key
        client = TestClient(create_api(core), follow_redirects=False)
        signed = client.post("/ui/login", data={"key": key})
        assert signed.status_code == 303
        yield client, {"Authorization": f"Bearer {key}"}


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def person_id(client: TestClient, auth: dict[str, str], external_id: str) -> str:
    [found] = client.get("/v1/persons", params={"external_id": external_id}, headers=auth).json()["items"]
    return found["id"]


# Item 5: security headers, and pages that need no inline style.


def test_every_response_carries_the_security_headers_and_faces_are_never_cached(site) -> None:
    client, auth = site
    answers = {
        path: client.get(path, headers=auth)
        for path in ("/v1/persons", "/ui/persons", "/ui/login", "/ui/persons/nobody", "/no/such/route", "/healthz")
    }
    answers["401"] = client.get("/v1/persons")
    for where, answer in answers.items():
        csp = answer.headers.get("content-security-policy", "")
        assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp, where
        assert "img-src 'self' data:" in csp and "style-src 'self'" in csp, where
        assert answer.headers.get("x-frame-options") == "DENY", where
        assert answer.headers.get("x-content-type-options") == "nosniff", where
        assert answer.headers.get("referrer-policy") == "same-origin", where
        assert answer.headers.get("cache-control") == "no-store", where
    style = client.get("/static/identity.css")
    assert style.status_code == 200 and "text/css" in style.headers["content-type"]
    assert "no-store" not in style.headers.get("cache-control", "")  # the stylesheet holds nobody's face


def test_pages_have_no_inline_style_or_script(site) -> None:
    client, auth = site
    alice = person_id(client, auth, "alice")
    for path in (
        "/ui/login",
        "/ui/persons",
        f"/ui/persons/{alice}",
        f"/ui/persons/{alice}/erase",
        "/ui/searches",
        "/ui/reviews",
        "/ui/clusters",
    ):
        html = client.get(path).text
        assert '<link rel="stylesheet" href="/static/identity.css">' in html, path
        # a script only as a file of this server (the review page's /static/review.js), never inline
        assert not re.search(r"<style|\sstyle=|<script(?! src=\"/static/[\w.]+\" defer></script>)|\son\w+=", html), path


# Item 6: flash messages by code only.


def test_a_flash_shows_only_a_known_code_never_text_from_the_query(site) -> None:
    client, _ = site
    forged = client.get("/ui/persons", params={"flash": EVIL}).text
    assert "evil.example" not in forged and 'class="flash"' not in forged
    assert 'class="flash"' not in client.get("/ui/reviews", params={"flash": "erased<b>"}).text
    assert "The person was erased from every store." in client.get("/ui/persons", params={"flash": "erased"}).text


# Item 11: q is text, not a LIKE pattern.


def test_q_matches_literally_in_the_api_and_the_ui(site) -> None:
    client, auth = site

    def found(q: str) -> set[str]:
        return {p["external_id"] for p in client.get("/v1/persons", params={"q": q}, headers=auth).json()["items"]}

    assert found("_") == {"bob_1"}
    assert found("%") == {"100%"}
    assert found("\\") == {"back\\slash"}
    assert found("b_1") == {"bob_1"}  # not bobx1
    page = client.get("/ui/persons", params={"q": "_"}).text
    assert ">bob_1<" in page and ">bobx1<" not in page


# Item 12: ids with `/`; links and answers by uuid.


def test_an_external_id_with_a_slash_is_found_and_its_pages_and_forms_work(site) -> None:
    client, auth = site
    listed = client.get("/v1/persons", params={"external_id": "dept/alice"}, headers=auth).json()["items"]
    assert [p["external_id"] for p in listed] == ["dept/alice"]
    alice, bob = listed[0]["id"], person_id(client, auth, "dept/bob")
    assert client.get(f"/v1/persons/{alice}", headers=auth).json()["external_id"] == "dept/alice"
    assert f'href="/ui/persons/{alice}"' in client.get("/ui/persons", params={"q": "dept/"}).text

    page = client.get(f"/ui/persons/{alice}").text
    assert page.count(f'action="/ui/persons/{alice}/merge"') == 1 and f'href="/ui/persons/{alice}/erase"' in page
    merged = client.post(f"/ui/persons/{alice}/merge", data={"absorb": "dept/bob", "csrf": csrf_of(page)})
    assert merged.status_code == 303 and merged.headers["location"] == f"/ui/persons/{alice}?flash=merged"
    assert client.get(f"/v1/persons/{bob}", headers=auth).status_code == 404
    client.post("/v1/persons", json={"external_id": "dept/carol"}, headers=auth)
    api_merge = client.post(f"/v1/persons/{alice}/merge", json={"absorb": "dept/carol"}, headers=auth).json()
    assert (api_merge["kept"], api_merge["kept_id"]) == ("dept/alice", alice)  # the answer names it by uuid too

    erase_page = client.get(f"/ui/persons/{alice}/erase").text
    assert f'action="/ui/persons/{alice}/erase"' in erase_page
    erased = client.post(f"/ui/persons/{alice}/erase", data={"confirm": "dept/alice", "csrf": csrf_of(erase_page)})
    assert erased.status_code == 303 and erased.headers["location"] == "/ui/persons?flash=erased"
    assert client.get("/v1/persons", params={"external_id": "dept/alice"}, headers=auth).json()["items"] == []


# Item 14: one shape per concept.


def test_timestamps_counts_and_error_texts_have_one_shape(site) -> None:
    client, auth = site
    created = client.post("/v1/persons", json={"external_id": "carol"}, headers=auth).json()
    read = client.get(f"/v1/persons/{created['id']}", headers=auth).json()
    listed = client.get("/v1/persons", params={"external_id": "carol"}, headers=auth).json()["items"][0]
    patched = client.patch(f"/v1/persons/{created['id']}", json={"display_name": "Carol"}, headers=auth).json()
    for answer in (created, read, listed, patched):
        assert answer["created_at"] == created["created_at"] and created["created_at"].endswith("+00:00")
        assert answer["faces"] == 0  # a number on every answer, PATCH included
    again = client.post("/v1/persons", json={"external_id": "carol"}, headers=auth)
    assert again.status_code == 409
    assert "identity person" not in again.json()["error"] and "PATCH /v1/persons/" in again.json()["error"]


def test_an_unreviewed_hit_says_unreviewed_as_the_search_log_does() -> None:
    hit = to_json(AuditSearch("s", "2026-01-01T00:00:00+00:00", "me", None, 0, "hog", 1, 0.9, "match"))
    assert (hit["review"], hit["reviewed_by"], hit["reviewed_at"]) == ("unreviewed", None, None)


def test_the_cli_prints_created_at_in_utc_on_add_and_show(clean_env, capsys) -> None:
    assert main(["init", "--json"]) == 0
    capsys.readouterr()
    assert main(["person", "add", "--external-id", "dave", "--json"]) == 0
    added = json.loads(capsys.readouterr().out)
    assert main(["person", "show", "dave", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["created_at"] == added["created_at"] and shown["created_at"].endswith("+00:00")


# Item 7: private files.


def test_the_cli_entry_point_makes_the_data_dir_private(clean_env, tmp_path: Path) -> None:
    env = {**os.environ, **clean_env}
    script = (
        "import os, sys; os.umask(0o022); from identity_cli.main import run; sys.argv = ['identity', 'init']; run()"
    )
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    data = Path(clean_env["IDENTITY_DATA_DIR"])
    held = [data, *data.rglob("*")]
    assert (data / "identity.db").is_file() and len(held) > 3
    wide = {str(p): oct(stat.S_IMODE(p.stat().st_mode)) for p in held if stat.S_IMODE(p.stat().st_mode) & 0o077}
    assert wide == {}


def test_doctor_reports_wider_modes_and_repair_narrows_them(clean_env, capsys) -> None:
    assert main(["init", "--json"]) == 0
    data = Path(clean_env["IDENTITY_DATA_DIR"])
    uploads = data / "uploads" / "batch"
    uploads.mkdir(parents=True)
    (uploads / "photo.jpg").write_bytes(b"not read")
    widened = [data, *data.rglob("*")]
    for path in widened:
        path.chmod(0o755 if path.is_dir() else 0o644)
    capsys.readouterr()

    assert main(["doctor", "--json"]) == 1
    found = json.loads(capsys.readouterr().out)["file_modes"]
    assert found["count"] >= len(widened) and len(found["paths"]) == min(found["count"], 50)
    assert found["paths"][str(data)] == "0o755" and found["paths"][str(data / "identity.db")] == "0o644"

    assert main(["doctor", "--repair", "--json"]) == 0
    repaired = json.loads(capsys.readouterr().out)
    assert repaired["file_modes"]["count"] == 0 and repaired["repaired"]["file_modes_narrowed"] > 3
    assert stat.S_IMODE((data / "identity.db").stat().st_mode) == 0o600
    assert (
        stat.S_IMODE(uploads.stat().st_mode) == 0o700 and stat.S_IMODE((uploads / "photo.jpg").stat().st_mode) == 0o600
    )


def test_the_search_page_says_what_the_threshold_means_for_this_gallery_in_one_sentence() -> None:
    from identity.api.ui import threshold_sentence

    pack = {
        "threshold": 1.01,
        "threshold_source": "pack default (FPIR 0.01 on lfw-dev, 2,848 persons, 3,426 non-mated searches)",
        "threshold_fpir": 0.01,
        "threshold_gallery_persons": 2848,
    }
    assert threshold_sentence(pack, 12000) == (
        "A match needs a decision score of at least 1.010: set so that about 1 in 100 searches for people who are "
        "not enrolled would wrongly match someone among 2,848 enrolled persons (the model pack's default, measured "
        "on lfw-dev, 2,848 persons, 3,426 non-mated searches); this gallery has 12,000 enrolled persons."
    )
    given = threshold_sentence({"threshold": 0.5, "threshold_source": "command line"}, 1)
    assert given.endswith("at least 0.500, the threshold given for this search; this gallery has 1 enrolled person.")
