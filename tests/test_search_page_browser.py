"""The search page in a real Chromium over a real server: a phone photo shown upright with its box on the face, a
4000 px group photo with boxes and numbers a person can read, each face's crop, the near-threshold marking, the
threshold in words, and Confirm from the result recorded in the search log.

Screenshots go to test-artifacts/ (not committed): look at them after a run.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from test_ui_browser import ARTIFACTS
from test_ui_roles_browser import PEOPLE, browser, enrolled_store, served, signed_in  # noqa: F401 (browser: a fixture)

from identity.app.core import App, open_deployment
from identity.services.access.keys import create_key
from identity.services.search.identify import SearchOptions, search_image
from identity.services.search.log import list_searches
from identity.store.sql.db import transaction
from identity.store.sql.model_rows import find_model

EXIF_ORIENTATION = 0x0112
MIN_LABEL_PX = 14  # a face number smaller than this on screen is hard to read


@pytest.fixture
def site(tmp_path: Path, lfw_dir: Path):
    settings = enrolled_store(tmp_path, lfw_dir)
    with App.open(settings) as core:
        key = create_key(core, "desk", "admin").key
        with served(core) as base:
            yield base, key, core, lfw_dir


def search(page, base: str, photo: Path) -> None:
    page.goto(f"{base}/ui/search")
    page.set_input_files("input[type=file]", str(photo))
    page.click("button[type=submit]")
    page.wait_for_selector("h3.face-result")


def phone_photo(lfw: Path, folder: Path) -> Path:
    """Al_Gore_0003 at the top of a portrait 250x400 photo, stored sideways with EXIF orientation 6 (rotate 90
    degrees clockwise to show), as a phone writes it."""
    upright = Image.new("RGB", (250, 400), (90, 110, 130))
    upright.paste(Image.open(lfw / "Al_Gore" / "Al_Gore_0003.jpg"), (0, 0))
    stored = upright.rotate(90, expand=True)  # counter-clockwise: what orientation 6 turns back
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    path = folder / "phone.jpg"
    stored.save(path, exif=exif, quality=92)
    return path


def test_a_phone_photo_is_shown_upright_with_its_box_on_the_face_and_a_confirm_reaches_the_log(
    site, browser, tmp_path: Path
) -> None:
    base, key, core, lfw = site
    page = signed_in(browser, base, key)
    search(page, base, phone_photo(lfw, tmp_path))
    assert page.inner_text("#face-0 h3.face-result").startswith("face 0: match")
    photo = page.locator("#photo img")
    assert (photo.get_attribute("width"), photo.get_attribute("height")) == ("250", "400")  # upright, not sideways
    shown, box = photo.bounding_box(), page.locator("#box-0 rect").first.bounding_box()
    centre_x, centre_y = box["x"] + box["width"] / 2 - shown["x"], box["y"] + box["height"] / 2 - shown["y"]
    assert 80 < centre_x < 170 and 80 < centre_y < 170  # on the face (the pasted photo's centre), not on the background
    crop = page.locator("#face-0 figure.crop img")
    assert crop.evaluate("img => img.naturalWidth") > 40  # the face's own crop beside its result
    explained = page.inner_text("#threshold")
    assert explained.startswith("A match needs") and "3 enrolled persons" in explained
    page.screenshot(path=str(ARTIFACTS / "ui-search-phone.png"), full_page=True)

    page.click("#face-0 button.confirm")
    page.wait_for_url("**/ui/searches/*?flash=confirmed")
    assert page.inner_text("#logged-face-0 .review-state") == "confirmed"
    page.screenshot(path=str(ARTIFACTS / "ui-search-logged.png"), full_page=True)
    [logged] = list_searches(core).items
    assert (logged.matched, logged.review) == (["Al_Gore"], "confirmed")
    page.goto(f"{base}/ui/searches")
    assert page.locator("td.matched").first.inner_text() == "Al_Gore"
    page.screenshot(path=str(ARTIFACTS / "ui-search-log.png"), full_page=True)


def test_a_4000_px_group_photo_has_boxes_and_numbers_a_person_can_read(site, browser, tmp_path: Path) -> None:
    base, key, _, lfw = site
    group = Image.new("RGB", (4000, 3000), (160, 150, 140))
    for n, person in enumerate([*PEOPLE, "Tony_Blair"]):
        face = Image.open(lfw / person / f"{person}_0003.jpg").crop((45, 35, 205, 215)).resize((480, 540))
        group.paste(face, (200 + n * 950, 900 + (n % 2) * 700))
    photo = tmp_path / "group.jpg"
    group.save(photo, quality=90)
    page = signed_in(browser, base, key)
    search(page, base, photo)
    assert page.locator("h3.face-result").count() == 4
    for n in range(4):
        label = page.locator(f"#box-{n} text").bounding_box()
        box = page.locator(f"#box-{n} rect").first.bounding_box()
        assert label["height"] >= MIN_LABEL_PX, f"face {n}'s number is {label['height']:.1f} px high on screen"
        assert box["width"] >= 40, f"face {n}'s box is {box['width']:.1f} px wide on screen"
        assert page.locator(f"#box-{n} text").text_content() == str(n)
    matched = [n for n in range(4) if page.inner_text(f"#face-{n} h3").startswith(f"face {n}: match")]
    decided = {page.locator(f"#face-{n} td small").first.inner_text() for n in matched}
    assert decided == {"Aaron_Peirsol", "Al_Gore", "Alejandro_Toledo"}  # Tony_Blair is not enrolled
    assert page.locator("figure.crop img").count() == 4
    page.screenshot(path=str(ARTIFACTS / "ui-search-group.png"), full_page=True)


def test_a_face_just_below_the_threshold_is_marked_for_review(tmp_path: Path, lfw_dir: Path, browser) -> None:
    settings = enrolled_store(tmp_path, lfw_dir)
    probe = lfw_dir / "Al_Gore" / "Al_Gore_0003.jpg"
    with open_deployment(settings) as dep:
        score = search_image(dep.app, probe, SearchOptions()).faces[0].decision_score
        assert score is not None
        with transaction(dep.app.sessions) as session:  # as `identity calibrate --far` records a threshold
            model = find_model(session, dep.model.model_id)
            model.threshold, model.threshold_far, model.threshold_source = round(score + 0.01, 6), 1e-3, "calibrated"
            model.threshold_fpir = None
    with App.open(settings) as core:
        key = create_key(core, "desk", "admin").key
        with served(core) as base:
            page = signed_in(browser, base, key)
            search(page, base, probe)
            assert page.inner_text("#face-0 h3.face-result").startswith("face 0: unknown")
            assert "close to the threshold: review" in page.inner_text("#face-0 .near-threshold")
            assert page.locator("#face-0 tr.near-threshold").count() == 1  # the first candidate's row
            assert page.locator("#box-0.box-near").count() == 1
            assert "similarity of at least" in page.inner_text("#threshold")
            page.screenshot(path=str(ARTIFACTS / "ui-search-near.png"), full_page=True)
            page.click("#face-0 button.reject")  # a near miss is reviewed as a match is
            page.wait_for_url("**/ui/searches/*?flash=rejected")
            assert page.inner_text("#logged-face-0 .review-state") == "rejected"
