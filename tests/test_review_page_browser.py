"""The review page (/ui/reviews) in a real Chromium over a real server: an audit-role reviewer sees the searched
face beside the person's enrolled faces on every card and clears the queue with the keyboard alone; a second
reviewer's verdict supersedes the first and the page says who reviewed before; without JavaScript every button
still works. Screenshots go to test-artifacts/ (not committed): look at them after a run.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from identity.app.core import App, open_deployment
from identity.config import EnrollSettings, Settings
from identity.services.access.keys import create_key
from identity.services.enrollment.inputs import from_directory
from identity.services.enrollment.writer import EnrollmentWriter
from identity.services.queue.loop import process_queue, queue_jobs
from identity.services.review.queue import review_queue
from identity.services.search.identify import SearchOptions, search_image

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
ENROLLED = ("Al_Gore", "Alejandro_Toledo", "Tony_Blair", "Aaron_Peirsol")
SEARCHED = {"Al_Gore": (3, 4, 5), "Alejandro_Toledo": (3, 4), "Tony_Blair": (3, 4)}

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (pip) is needed for the browser tests")
uvicorn = pytest.importorskip("uvicorn")
if not CHROMIUM.is_file():
    pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium (.ci/run does)", allow_module_level=True)

from served import served  # noqa: E402
from test_ui_browser import assert_csp_kept  # noqa: E402


@pytest.fixture
def review_site(tmp_path: Path, lfw_dir: Path) -> Iterator[tuple[str, dict[str, str], int]]:
    """A served store with four people enrolled (two photos each), searches of their other photos logged and
    left unreviewed, and two reviewers' keys (audit and admin); yields the URL, keys and pending matches."""
    settings = Settings(data_dir=tmp_path / "data", workers=1, enroll=EnrollSettings(chunk_size=4))
    root = tmp_path / "photos"
    for person in ENROLLED:
        (root / person).mkdir(parents=True)
        for n in (1, 2):
            shutil.copy(lfw_dir / person / f"{person}_{n:04d}.jpg", root / person)
    with open_deployment(settings) as dep:
        batch, _ = queue_jobs(dep.app, from_directory(root))
        process_queue(dep.app, EnrollmentWriter(dep), batch, 1)
        for person, numbers in SEARCHED.items():
            for n in numbers:
                search_image(dep.app, str(lfw_dir / person / f"{person}_{n:04d}.jpg"), SearchOptions(actor="desk"))
        pending = review_queue(dep.app, unreviewed=True, decision="match").total
    with App.open(settings) as core:
        keys = {"auditor": create_key(core, "auditor", "audit").key, "admin": create_key(core, "lead", "admin").key}
        with served(core) as base:
            yield base, keys, pending


@pytest.fixture
def browser():
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        opened = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield opened
        opened.close()


def reviewer(browser, base: str, key: str, javascript: bool = True):
    """A signed-in page of its own browser context (its own session cookie), collecting CSP violations."""
    context = browser.new_context(viewport={"width": 1200, "height": 900}, java_script_enabled=javascript)
    page = context.new_page()
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    page.csp_violations = violations  # type: ignore[attr-defined]
    page.goto(f"{base}/ui/login")
    page.fill("input[name=key]", key)
    page.click("button[type=submit]")
    page.wait_for_url(
        re.compile(r"/ui/(persons|reviews)$")
    )  # an audit key lands on the reviews, an admin on the persons
    return page


def test_an_auditor_sees_both_faces_and_clears_the_queue_with_the_keyboard(review_site, browser) -> None:
    base, keys, pending = review_site
    assert pending >= 5
    page = reviewer(browser, base, keys["auditor"])
    page.goto(f"{base}/ui/reviews")
    cards = page.locator("section.review-card")
    assert cards.count() == pending and f"of {pending} searched faces" in page.inner_text("#review-count")
    for i in range(pending):
        card = cards.nth(i)
        assert card.locator("img[alt^='searched face']").count() == 1
        assert 1 <= card.locator("img[alt^='enrolled face']").count() <= 3
        assert "runner-up" in card.inner_text() and "threshold" in card.inner_text()
    page.screenshot(path=str(ARTIFACTS / "review-page.png"), full_page=True)
    assert page.evaluate("document.activeElement.id") == cards.nth(0).get_attribute("id")  # focus on the first

    keys_pressed = 0
    for i in range(pending):
        card = cards.nth(i)
        assert page.evaluate("document.activeElement.id") == card.get_attribute("id")
        if i == 1:  # one rejection naming nobody, the rest confirmed
            page.keyboard.press("r")
        else:
            page.keyboard.press("c")
        keys_pressed += 1
        sync_api.expect(card.locator(".review-status")).to_contain_text("by auditor")
        assert card.get_attribute("data-state") in ("confirmed", "rejected")
    page.screenshot(path=str(ARTIFACTS / "review-page-keyboard.png"), full_page=True)
    # The last verdict leaves nothing on the last page: the count says so, and a reload shows an empty queue.
    sync_api.expect(page.locator("#review-count")).to_contain_text("nothing to review")
    page.reload()
    assert "nothing to review" in page.inner_text("#review-count") and page.locator("section.review-card").count() == 0
    assert keys_pressed == pending  # one key per decision
    assert_csp_kept(page)
    page.goto(f"{base}/ui/reviews?unreviewed=false")
    states = [page.locator("section.review-card").nth(i).get_attribute("data-state") for i in range(pending)]
    assert states.count("rejected") == 1 and states.count("confirmed") == pending - 1


def test_a_second_reviewer_supersedes_and_the_page_says_who_reviewed_before(review_site, browser) -> None:
    base, keys, _ = review_site
    first = reviewer(browser, base, keys["auditor"])
    second = reviewer(browser, base, keys["admin"])
    for page in (first, second):
        page.goto(f"{base}/ui/reviews")
    first.keyboard.press("c")
    card = first.locator("section.review-card").first
    sync_api.expect(card.locator(".review-status")).to_contain_text("confirmed by auditor")
    stale = second.locator("section.review-card").first  # the second reviewer's page still shows it pending
    stale.locator("button.review-reject").click()
    sync_api.expect(stale.locator(".review-status")).to_contain_text("Reviewed before by auditor (confirmed")

    plain = reviewer(browser, base, keys["auditor"], javascript=False)
    plain.goto(f"{base}/ui/reviews?unreviewed=false")
    reviewed = plain.locator("section.review-card", has_text="rejected by lead")
    assert "Reviewed before by auditor (confirmed" in reviewed.inner_text()
    plain.goto(f"{base}/ui/reviews")  # without the script: a form POST, back to the same page at the next card
    target = plain.locator("section.review-card").first
    following = plain.locator("section.review-card").nth(1).get_attribute("id")
    target.locator("input[name=note]").fill("checked the ears")
    target.locator("button", has_text="Confirm").click()
    plain.wait_for_url(f"{base}/ui/reviews?*")
    assert "The match was confirmed." in plain.inner_text("p.flash") and plain.url.endswith(f"#{following}")
    plain.goto(f"{base}/ui/reviews?unreviewed=false")  # and a supersede without the script says so too
    plain.locator("section.review-card", has_text="confirmed by auditor").first.locator("button.review-reject").click()
    plain.wait_for_url(f"{base}/ui/reviews?*")
    assert "reviewed before by auditor (confirmed" in plain.inner_text(".review-superseded")
    plain.screenshot(path=str(ARTIFACTS / "review-page-superseded.png"), full_page=True)
    assert_csp_kept(plain)
