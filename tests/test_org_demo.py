"""examples/org_demo.py builds the org demo of issue 25: badge photos enrolled, group photos searched, clusters.

The demo is built once (10 people, 4 strangers, 4 group photos, one of them phone-style with EXIF orientation 6)
by running the script as a user would, then checked against the ground truth it records (truth.json: who
stands where in each group photo) and through the product's own services on the store it left.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from identity.app.core import App
from identity.config import Settings
from identity.services.access.keys import Role
from identity.services.clustering.clusters import list_clusters
from identity.services.records.persons import list_people
from identity.services.review.matches import list_reviews
from identity.services.search.log import list_searches

SCRIPT = Path(__file__).resolve().parent.parent / "examples" / "org_demo.py"
PEOPLE, STRANGERS, GROUPS = 10, 4, 4
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, lfw_dir: Path) -> dict[str, Any]:
    data_dir = tmp_path_factory.mktemp("org") / "demo"
    command = [sys.executable, str(SCRIPT), "--data-dir", str(data_dir), "--lfw", str(lfw_dir), "--json"]
    command += ["--people", str(PEOPLE), "--strangers", str(STRANGERS), "--groups", str(GROUPS), "--workers", "1"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDENTITY_")}  # the demo ignores them anyway
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    with _open(data_dir) as app:  # the store as the demo left it (the served tests below change it)
        return {
            "dir": data_dir,
            "summary": json.loads(done.stdout),
            "truth": json.loads((data_dir / "truth.json").read_text()),
            "searches": json.loads((data_dir / "searches.json").read_text()),
            "people": {p.external_id: p for p in list_people(app, limit=1000).items},
            "logged": list_searches(app, None, None, 100).items,
            "pending": list_reviews(app, unreviewed=True, decision="match", limit=1000),
            "clusters": list_clusters(app, min_size=2),
        }


def _open(data_dir: Path) -> App:
    return App.open(Settings.load(env={"IDENTITY_DATA_DIR": str(data_dir)}), must_exist=True)


def _placed(truth_faces: list[dict[str, Any]], bbox: list[float]) -> dict[str, Any] | None:
    """The pasted face whose tile holds the centre of a detected face's box."""
    x, y = (bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2
    return next((f for f in truth_faces if f["box"][0] <= x <= f["box"][2] and f["box"][1] <= y <= f["box"][3]), None)


def test_every_badge_person_is_enrolled_with_a_name_and_department(demo: dict[str, Any]) -> None:
    people = demo["people"]
    assert set(people) == set(demo["truth"]["people"]) and len(people) == PEOPLE
    for external_id, lfw_name in demo["truth"]["people"].items():
        assert people[external_id].display_name == lfw_name.replace("_", " ")
        assert people[external_id].faces == 1 and people[external_id].attributes["department"]
    assert demo["summary"]["enroll_outcomes"] == {"enrolled": PEOPLE}


def test_every_group_photo_is_searched_by_the_operator_and_logged(demo: dict[str, Any]) -> None:
    names = sorted(demo["truth"]["groups"])
    assert len(names) == GROUPS and sum(n.startswith("phone_") for n in names) == 1
    logged = demo["logged"]
    assert sorted(Path(row.query_name or "").name for row in logged) == names
    assert {row.actor for row in logged} == {"operator"}
    assert all("error" not in s for s in demo["searches"])
    assert demo["summary"]["faces_searched"] == sum(len(s["faces"]) for s in demo["searches"])


def test_enrolled_people_are_matched_mostly_right_and_strangers_never(demo: dict[str, Any]) -> None:
    right = wrong = enrolled_faces = 0
    for search in demo["searches"]:
        truth = demo["truth"]["groups"][search["image"]]
        enrolled_faces += sum(f["external_id"] is not None for f in truth)
        matched = [f for f in search["faces"] if f["decision"] == "match"]
        if any(f["external_id"] for f in truth):  # a photo with an enrolled person gets at least one match
            assert matched, f"{search['image']}: no match, though it shows {[f['lfw_name'] for f in truth]}"
        for face in search["faces"]:
            placed = _placed(truth, face["bbox"])
            assert placed is not None, f"{search['image']}: a face at {face['bbox']} that was never pasted"
            if placed["external_id"] is None:  # a stranger
                assert face["decision"] != "match", f"{search['image']}: stranger {placed['lfw_name']} matched"
            elif face["decision"] == "match":
                right += face["person"] == placed["external_id"]
                wrong += face["person"] != placed["external_id"]
    assert wrong == 0 and right >= 0.75 * enrolled_faces, (right, wrong, enrolled_faces)
    assert (demo["summary"]["matches_right"], demo["summary"]["matches_wrong"]) == (right, 0)  # what it printed


def test_the_matches_wait_for_review_in_the_products_log(demo: dict[str, Any]) -> None:
    expected = {
        (s["search_id"], f["face_index"], f["person"])
        for s in demo["searches"]
        for f in s["faces"]
        if f["decision"] == "match"
    }
    pending = demo["pending"]
    assert {(r.search_id, r.face_index, r.person) for r in pending} == expected
    assert len(expected) == demo["summary"]["matches"]


def test_strangers_seen_in_several_photos_form_a_cluster(demo: dict[str, Any]) -> None:
    clusters = demo["clusters"]
    assert clusters and len(clusters) == demo["summary"]["clusters"]
    recurring = set(demo["truth"]["recurring_strangers"])
    for cluster in clusters:  # every face of a cluster is one recurring stranger, seen in different photos
        who = set()
        for face in cluster.faces:
            truth = demo["truth"]["groups"][Path(face.source_path or "").name]
            placed = _placed(truth, face.bbox)
            assert placed is not None
            who.add(placed["lfw_name"])
        assert len(who) == 1 and who <= recurring, who


# The acceptance of issue 25 on the served demo, as far as the server does it today: the reviewer clears the
# queue (by mouse here; the keyboard flow and the two faces per match come with the new review page), and a /v1
# client searches and lists the log (verify, cursors, confirm and cluster naming over /v1 come with their routes).


@pytest.fixture(scope="module")
def served(demo: dict[str, Any]) -> Iterator[tuple[str, App]]:
    """The demo store behind a real server on a free port: (base URL, the server's App)."""
    uvicorn = pytest.importorskip("uvicorn")
    from identity.api.app import create_api

    with _open(demo["dir"]) as core:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(create_api(core), host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        try:
            yield f"http://127.0.0.1:{port}", core
        finally:
            server.should_exit = True
            thread.join(timeout=30)


@pytest.fixture
def browser_page() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (pip) is needed for the browser tests")
    if not CHROMIUM.is_file():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield browser.new_page(viewport={"width": 1400, "height": 1000})
        browser.close()


def _sign_in(page: Any, base: str, key: str, then: str) -> None:
    page.goto(f"{base}/ui/login")
    page.fill("input[name=key]", key)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    page.goto(f"{base}{then}")


def test_the_reviewer_clears_the_match_queue_in_the_browser(
    demo: dict[str, Any], served: tuple[str, App], browser_page: Any
) -> None:
    base, core = served
    keys = json.loads((demo["dir"] / "keys.json").read_text())
    _sign_in(browser_page, base, keys["audit"]["key"], "/ui/reviews")
    rows = browser_page.locator("tr:has(button:text('Confirm'))")
    assert rows.count() == demo["summary"]["matches"]
    browser_page.screenshot(path=str(ARTIFACTS / "org-demo-reviews.png"), full_page=True)
    truth = {s["search_id"]: demo["truth"]["groups"][s["image"]] for s in demo["searches"]}
    faces = {(s["search_id"], f["face_index"]): f for s in demo["searches"] for f in s["faces"]}
    for _ in range(demo["summary"]["matches"]):  # always the first row left: each review takes one off
        form = browser_page.locator("form[action='/ui/reviews'][method=post]").first
        search_id = form.locator("input[name=search_id]").get_attribute("value")
        face = faces[(search_id, int(form.locator("input[name=face_index]").get_attribute("value")))]
        placed = _placed(truth[search_id], face["bbox"])
        right = placed is not None and placed["external_id"] == face["person"]
        browser_page.locator("tr:has(button:text('Confirm'))").first.locator(
            f"button:text('{'Confirm' if right else 'Reject'}')"
        ).click()
        browser_page.wait_for_load_state()
    assert "nothing to review" in browser_page.inner_text("table")
    browser_page.screenshot(path=str(ARTIFACTS / "org-demo-reviews-cleared.png"), full_page=True)
    reviewed = list_reviews(core, decision="match", limit=1000)
    assert len(reviewed) == demo["summary"]["matches"]
    assert all(r.review is not None and r.review.by == "reviewer" for r in reviewed)


def test_a_v1_client_searches_and_lists_the_log(demo: dict[str, Any], served: tuple[str, App]) -> None:
    import httpx

    base, _ = served
    keys = json.loads((demo["dir"] / "keys.json").read_text())
    verify_person = min(demo["truth"]["people"])  # samples/verify_*.jpg show the first enrolled person
    with httpx.Client(base_url=base, timeout=60) as client:
        photo = demo["dir"] / "samples" / "verify_a.jpg"
        answer = client.post(
            "/v1/search",
            files={"image": (photo.name, photo.read_bytes(), "image/jpeg")},
            headers={"Authorization": f"Bearer {keys['search']['key']}"},
        )
        assert answer.status_code == 200, answer.text
        [face] = answer.json()["results"][0]["faces"]
        assert face["candidates"][0]["person"]["external_id"] == verify_person
        listed = client.get("/v1/searches", headers={"Authorization": f"Bearer {keys['audit']['key']}"})
        assert listed.status_code == 200, listed.text
        newest, *earlier = listed.json()["items"]  # the operator's key is named for the demo's actor: one log for both
        assert newest["query_name"] == photo.name and newest["actor"] == "operator"
        assert sorted(Path(row["query_name"]).name for row in earlier) == sorted(demo["truth"]["groups"])
        refused = client.get("/v1/searches", headers={"Authorization": f"Bearer {keys['search']['key']}"})
        assert refused.status_code == 403  # the operator searches; reading the log is the reviewer's


def test_one_private_key_per_role_that_the_server_accepts(demo: dict[str, Any], served: tuple[str, App]) -> None:
    import httpx

    keys_file = demo["dir"] / "keys.json"
    assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600
    keys = json.loads(keys_file.read_text())
    assert set(keys) == {role.value for role in Role}
    # every key is known (never 401); reading the log is for the audit and admin roles
    expected = {"search": 403, "enroll": 403, "audit": 200, "admin": 200}
    with httpx.Client(base_url=served[0], timeout=60) as client:
        got = {
            role: client.get("/v1/searches", headers={"Authorization": f"Bearer {key['key']}"}).status_code
            for role, key in keys.items()
        }
    assert got == expected
