"""The review UI by role, in a real Chromium over a real server: where each role lands, what its navigation
offers (and that every link it offers opens), the enroll page, and the confirmations before deleting.

Screenshots go to test-artifacts/ (not committed): look at them after a run.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image
from served import served
from test_ui_browser import ARTIFACTS, CHROMIUM, sync_api

from identity.app.core import App, open_deployment
from identity.config import EnrollSettings, Settings
from identity.services.access.keys import create_key
from identity.services.enrollment.inputs import from_directory
from identity.services.enrollment.writer import EnrollmentWriter
from identity.services.queue.loop import process_queue, queue_jobs
from identity.services.records.persons import show_person

PEOPLE = ("Aaron_Peirsol", "Al_Gore", "Alejandro_Toledo")
ROLES = ("admin", "search", "enroll", "audit")
# Where each role lands after signing in, and the navigation it is offered.
LANDING = {"admin": "/ui/persons", "search": "/ui/search", "enroll": "/ui/enroll", "audit": "/ui/reviews"}
NAV = {
    "admin": ["Search", "Enroll", "Persons", "Search log", "Review", "Clusters"],
    "search": ["Search"],
    "enroll": ["Enroll", "Clusters"],
    "audit": ["Persons", "Search log", "Review", "Clusters"],
}


def enrolled_store(tmp_path: Path, lfw: Path, people: tuple[str, ...] = PEOPLE, photos: int = 2) -> Settings:
    settings = Settings(data_dir=tmp_path / "data", workers=1, enroll=EnrollSettings(chunk_size=4))
    root = tmp_path / "photos"
    for person in people:
        (root / person).mkdir(parents=True)
        for n in range(1, photos + 1):
            shutil.copy(lfw / person / f"{person}_{n:04d}.jpg", root / person)
    with open_deployment(settings) as dep:
        batch, _ = queue_jobs(dep.app, from_directory(root))
        process_queue(dep.app, EnrollmentWriter(dep), batch, 1)
    return settings


@pytest.fixture
def browser():
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        opened = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield opened
        opened.close()


def signed_in(browser, base: str, key: str):
    """A fresh browser page (its own cookies) signed in with `key`, on the page it landed on."""
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.goto(f"{base}/ui/login")
    page.fill("input[name=key]", key)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    return page


def nav_labels(page) -> list[str]:
    return [a.inner_text() for a in page.locator("header nav a").all()]


@pytest.fixture
def site(tmp_path: Path, lfw_dir: Path):
    settings = enrolled_store(tmp_path, lfw_dir)
    with App.open(settings) as core:
        keys = {role: create_key(core, f"{role}-key", role).key for role in ROLES}
        with served(core) as base:
            yield base, keys, core, lfw_dir


def test_each_role_lands_on_a_page_it_may_use_and_is_offered_only_what_it_may_open(site, browser) -> None:
    base, keys, _, _ = site
    for role in ROLES:
        page = signed_in(browser, base, keys[role])
        assert page.url == base + LANDING[role], role
        assert "403" not in page.title() and page.locator("h1").count() == 1
        assert nav_labels(page) == NAV[role], role
        page.screenshot(path=str(ARTIFACTS / f"ui-role-{role}.png"), full_page=True)
        for href in [a.get_attribute("href") for a in page.locator("header nav a").all()]:
            assert page.goto(base + href).status == 200, (role, href)  # every link offered opens
        for label, href in (("Search", "/ui/search"), ("Persons", "/ui/persons"), ("Enroll", "/ui/enroll")):
            if label not in NAV[role]:  # what is not offered is refused on the server too
                assert page.goto(base + href).status == 403, (role, href)
        page.goto(f"{base}/ui")  # the UI's root sends each role to its own page
        assert page.url == base + LANDING[role]
        page.close()


def test_the_enroll_page_enrolls_a_new_person_and_shows_each_photos_outcome(site, browser, tmp_path: Path) -> None:
    base, keys, core, lfw = site
    page = signed_in(browser, base, keys["enroll"])
    blank = tmp_path / "wall.jpg"  # a photo without a face
    Image.new("RGB", (320, 240), (200, 190, 180)).save(blank)
    photos = [lfw / "Tony_Blair" / f"Tony_Blair_{n:04d}.jpg" for n in (1, 2)]
    page.check("input[name=mode][value=new]")
    page.fill("#external_id", "E-4001")
    page.fill("#display_name", "Tony Blair")
    page.set_input_files("input[name=image]", [str(p) for p in [*photos, blank]])
    page.click("#enroll-button")
    page.wait_for_selector("#outcomes")
    rows = {
        r.locator("td").nth(0).inner_text(): r.locator("td").nth(1).inner_text()
        for r in page.locator("#outcomes tr").all()[1:]
    }
    assert rows == {"Tony_Blair_0001.jpg": "enrolled", "Tony_Blair_0002.jpg": "enrolled", "wall.jpg": "rejected"}
    assert "no face" in page.locator("#outcomes").inner_text().lower()
    page.screenshot(path=str(ARTIFACTS / "ui-enroll.png"), full_page=True)
    person = show_person(core, "E-4001")
    assert (person.display_name, person.faces) == ("Tony Blair", 2)

    page.check("input[name=mode][value=existing]")  # the same photo again, for the person now enrolled
    page.fill("#external_id", "E-4001")
    page.set_input_files("input[name=image]", [str(photos[0])])
    page.click("#enroll-button")
    page.wait_for_selector("#outcomes")
    assert page.locator("#outcomes td").nth(1).inner_text() == "duplicate"
    assert show_person(core, "E-4001").faces == 2

    page.check("input[name=mode][value=new]")  # a new person under an external id already held: refused
    page.fill("#external_id", "Al_Gore")
    page.set_input_files("input[name=image]", [str(photos[1])])
    page.click("#enroll-button")
    page.wait_for_selector("p.error")
    assert "Al_Gore" in page.inner_text("p.error")


def test_deleting_a_face_asks_for_confirmation_and_erasing_shows_the_external_id(site, browser) -> None:
    base, keys, core, _ = site
    page = signed_in(browser, base, keys["admin"])
    al = show_person(core, "Al_Gore")
    page.goto(f"{base}/ui/persons/{al.id}")
    page.locator("button.delete-face").first.click()  # not ticked: the browser does not send the form
    assert page.url == f"{base}/ui/persons/{al.id}" and show_person(core, "Al_Gore").faces == 2
    page.screenshot(path=str(ARTIFACTS / "ui-face-delete-confirm.png"), full_page=True)
    page.locator("label.confirm input").first.check()
    page.locator("button.delete-face").first.click()
    page.wait_for_url(f"{base}/ui/persons/{al.id}?flash=face-deleted")
    assert show_person(core, "Al_Gore").faces == 1
    unticked = page.request.post(  # a form sent without the tick (no browser check) is refused on the server
        f"{base}/ui/faces/{page.locator('form.inline').nth(1).get_attribute('action').split('/')[3]}/delete",
        form={"back": str(al.id), "csrf": page.locator("input[name=csrf]").first.get_attribute("value")},
    )
    assert unticked.status == 422 and show_person(core, "Al_Gore").faces == 1

    page.goto(f"{base}/ui/persons/{al.id}/erase")
    assert page.inner_text("#external-id") == "Al_Gore"
    assert "Type the external id Al_Gore to confirm" in page.inner_text("main form")
    page.screenshot(path=str(ARTIFACTS / "ui-erase.png"), full_page=True)
