"""The review UI in a real Chromium (Debian's package, driven by Playwright's Python API) over a real server.

Screenshots go to test-artifacts/ (not committed): look at them after a run.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from served import served

from identity.app.core import App, open_deployment
from identity.config import EnrollSettings, Settings
from identity.services.access.keys import create_key
from identity.services.clustering.clusters import cluster_folder
from identity.services.enrollment.inputs import from_directory
from identity.services.enrollment.writer import EnrollmentWriter
from identity.services.queue.loop import process_queue, queue_jobs
from identity.services.records.persons import add_person

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
SCRIPT = "<script>alert(1)</script>"

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (pip) is needed for the browser tests")
uvicorn = pytest.importorskip("uvicorn")
if not CHROMIUM.is_file():
    pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium (.ci/run does)", allow_module_level=True)


@pytest.fixture
def site(tmp_path: Path, lfw_dir: Path):
    """A served store with three people enrolled, one more whose name is markup, clusters of two people's
    unlabelled photos, and an admin key."""
    settings = Settings(data_dir=tmp_path / "data", workers=1, enroll=EnrollSettings(chunk_size=4))
    root = tmp_path / "photos"
    for person in ("Aaron_Peirsol", "Al_Gore", "Alejandro_Toledo"):
        (root / person).mkdir(parents=True)
        for n in (1, 2):
            shutil.copy(lfw_dir / person / f"{person}_{n:04d}.jpg", root / person)
    archive = tmp_path / "archive"  # unlabelled photos of two people nobody enrolled, clustered for review
    archive.mkdir()
    for person in ("Tony_Blair", "Donald_Rumsfeld"):
        for n in (1, 2, 3):
            shutil.copy(lfw_dir / person / f"{person}_{n:04d}.jpg", archive)
    with open_deployment(settings) as dep:
        batch, _ = queue_jobs(dep.app, from_directory(root))
        process_queue(dep.app, EnrollmentWriter(dep), batch, 1)
        cluster_folder(dep.app, archive, workers=1)
    with App.open(settings) as core:
        key = create_key(core, "reviewer", "admin").key
        add_person(core, "markup-test", SCRIPT, {"note": SCRIPT})
        with served(core) as base:
            yield base, key, lfw_dir


@pytest.fixture
def page():
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        opened = browser.new_page(viewport={"width": 1200, "height": 900})
        dialogs: list[str] = []
        opened.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        opened.dialogs = dialogs  # type: ignore[attr-defined]
        violations: list[str] = []  # Chromium reports each CSP violation on the console ("Refused to ...")
        opened.on(
            "console",
            lambda message: violations.append(message.text) if "Content Security Policy" in message.text else None,
        )
        opened.csp_violations = violations  # type: ignore[attr-defined]
        yield opened
        browser.close()


def assert_csp_kept(page) -> None:
    """The page is served under the CSP, and nothing on it broke the policy (no inline style or script)."""
    csp = page.request.get(page.url).headers.get("content-security-policy")  # (the page itself may not fetch)
    assert csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert page.csp_violations == []


def sign_in(page, base: str, key: str) -> None:
    page.goto(f"{base}/ui/search")
    assert page.url.endswith("/ui/login")  # no session: to the sign-in page
    page.fill("input[name=key]", key)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/ui/persons")  # an admin key lands on the persons (tests/test_ui_roles_browser.py)
    page.goto(f"{base}/ui/search")


def search_photo(page, photo: Path) -> str:
    """Search one photo on the search page; returns the first face's heading."""
    page.set_input_files("input[type=file]", str(photo))
    page.click("button[type=submit]")
    page.wait_for_selector("h3.face-result")
    return page.inner_text("h3.face-result")


def test_sign_in_search_open_the_person_and_erase_them(site, page) -> None:
    base, key, lfw = site
    sign_in(page, base, key)
    assert "match" in search_photo(page, lfw / "Al_Gore" / "Al_Gore_0003.jpg")
    assert page.locator("#photo g.box").count() == 1  # the face boxed (and numbered) on the photo
    assert page.locator("img.thumb").count() >= 1
    page.screenshot(path=str(ARTIFACTS / "ui-search.png"), full_page=True)

    page.locator("td a", has_text="Al_Gore").first.click()  # the link names the person by uuid
    page.wait_for_selector("#person-name")
    assert page.locator("figure.face").count() == 2
    page.screenshot(path=str(ARTIFACTS / "ui-person.png"), full_page=True)

    page.click("#erase-link")
    page.fill("#confirm", "not-him")
    page.click("#erase-button")
    assert "did not match" in page.content()  # the confirmation step guards it
    page.fill("#confirm", "Al_Gore")
    page.click("#erase-button")
    page.wait_for_url(f"{base}/ui/persons?flash=erased")
    assert "erased" in page.inner_text("p.flash") and "Al_Gore" not in page.url  # no id in a URL (item 9)
    page.screenshot(path=str(ARTIFACTS / "ui-erased.png"), full_page=True)

    page.goto(f"{base}/ui/search")
    search_photo(page, lfw / "Al_Gore" / "Al_Gore_0003.jpg")
    assert "Al_Gore" not in page.inner_text("table")
    assert_csp_kept(page)


def test_markup_in_a_name_is_shown_as_text(site, page) -> None:
    base, key, _ = site
    sign_in(page, base, key)
    page.goto(f"{base}/ui/persons/markup-test")
    assert page.inner_text("#person-name") == SCRIPT
    page.goto(f"{base}/ui/persons?q=markup")
    assert SCRIPT in page.inner_text("table")
    page.screenshot(path=str(ARTIFACTS / "ui-markup.png"), full_page=True)
    assert page.dialogs == []  # no script ran
    page.goto(f"{base}/ui/persons?flash=Your session expired. Sign in again at http://evil.example")
    assert page.locator("p.flash").count() == 0 and "evil.example" not in page.content()
    assert_csp_kept(page)


def test_review_a_match_then_name_a_cluster_and_find_them(site, page) -> None:
    base, key, lfw = site
    sign_in(page, base, key)
    search_photo(page, lfw / "Al_Gore" / "Al_Gore_0003.jpg")

    page.goto(f"{base}/ui/reviews")
    card = page.locator("section.review-card", has_text="Al_Gore")
    assert "not reviewed" in card.inner_text()
    card.locator("button", has_text="Confirm").click()
    sync_api.expect(card.locator(".review-status")).to_contain_text("confirmed by reviewer")
    page.goto(f"{base}/ui/reviews")
    assert page.locator("section.review-card", has_text="Al_Gore").count() == 0  # reviewed: off the to-do list
    page.goto(f"{base}/ui/reviews?unreviewed=false")
    assert "confirmed by reviewer" in page.locator("section.review-card", has_text="Al_Gore").inner_text()

    page.goto(f"{base}/ui/clusters")
    first = page.locator("section.face").first
    assert first.locator("img.thumb").count() == 3  # three photos of one of the two people
    page.screenshot(path=str(ARTIFACTS / "ui-clusters.png"), full_page=True)
    first.locator("input[name=external_id]").fill("archive-1")
    first.locator("button", has_text="Name and enroll").click()
    page.wait_for_url(f"{base}/ui/clusters?*")
    assert "cluster was named" in page.inner_text("p.flash")
    assert_csp_kept(page)
    page.goto(f"{base}/ui/search")
    for person in ("Tony_Blair", "Donald_Rumsfeld"):
        if "match" in search_photo(page, lfw / person / f"{person}_0005.jpg"):
            assert "archive-1" in page.inner_text("table")
            break
    else:
        pytest.fail("neither person of the named cluster is found")
