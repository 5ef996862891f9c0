"""Stored face thumbnails (issue 25, item 1): enrolled faces keep a small JPEG of their aligned crop, searches
keep the searched face's for matches and near-threshold unknowns (a setting, with a retention), erasure takes
them, `doctor --repair` back-fills enrolled faces, and pages draw faces from them, never from the photos.

A small real gallery (lfw-dev photos, dlib) on SQLite and on Postgres.
"""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
import time
import uuid
from pathlib import Path

import pytest
from PIL import Image as PILImage
from served import served
from sqlalchemy import delete, func, select, update

from identity.app.core import App, open_deployment
from identity.config import Settings
from identity.render.audit_html import render_audit_html
from identity.render.cluster_html import render_clusters_html
from identity.services.access.keys import create_key
from identity.services.clustering.clusters import cluster_folder
from identity.services.curation.edits import delete_person
from identity.services.enrollment.inputs import from_directory
from identity.services.enrollment.writer import EnrollmentWriter
from identity.services.queue.loop import process_queue, queue_jobs
from identity.services.records.audit import audit_person
from identity.services.records.thumbnails import face_thumbnails, search_thumbnails
from identity.services.search.identify import SearchOptions, SearchResult, search_image
from identity.store.sql.db import transaction
from identity.store.sql.tables import ClusterMember, FaceThumbnail, SearchThumbnail
from identity_cli.main import main

GALLERY = {"Al_Gore": 3, "Aaron_Peirsol": 2}
STRANGER = "Tony_Blair"


@dataclasses.dataclass(frozen=True)
class Gallery:
    settings: Settings
    photos: Path  # PERSON/IMAGE: the enrolled photos
    lfw: Path

    def probe(self, person: str, index: int) -> str:
        return str(sorted((self.lfw / person).iterdir())[index])

    def with_review(self, **review: object) -> Settings:
        return dataclasses.replace(self.settings, review=dataclasses.replace(self.settings.review, **review))


@pytest.fixture(params=["sqlite", "postgres"])
def gallery(request: pytest.FixtureRequest, tmp_path: Path, lfw_dir: Path, copy_labelled) -> Gallery:
    url = None if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    settings = Settings(data_dir=tmp_path / "data", database_url=url, workers=1)
    photos = tmp_path / "gallery"
    for person, count in GALLERY.items():
        copy_labelled(photos, [person], count)
    with open_deployment(settings) as dep:
        batch, _ = queue_jobs(dep.app, from_directory(photos))
        assert process_queue(dep.app, EnrollmentWriter(dep), batch, 1).counts == {"enrolled": 5}
    return Gallery(settings, photos, lfw_dir)


def jpeg_size(jpeg: bytes) -> tuple[int, int]:
    picture = PILImage.open(io.BytesIO(jpeg))
    picture.load()  # decodes the whole file: a truncated one fails here
    assert picture.format == "JPEG" and picture.mode == "RGB"
    return picture.size


def kept(app: App, result: SearchResult) -> dict[int, bytes]:
    """The searched faces' thumbnails a search kept, by face index."""
    found = search_thumbnails(app, [(result.search_id, face.face_index) for face in result.faces])
    return {index: jpeg for (_, index), jpeg in found.items()}


def stored_search_thumbnails(app: App) -> int:
    with app.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(SearchThumbnail)) or 0)


def test_every_enrolled_face_has_a_small_stored_jpeg(gallery: Gallery) -> None:
    with open_deployment(gallery.settings) as dep:
        face_ids = [f.face_id for person in GALLERY for f in audit_person(dep.app, person).faces]
        thumbs = face_thumbnails(dep.app, face_ids)
    assert len(face_ids) == 5 and set(thumbs) == set(face_ids)
    for jpeg in thumbs.values():
        width, height = jpeg_size(jpeg)
        assert width == height and 100 <= width <= 200  # the aligned crop the recognizer saw
        assert 1_000 < len(jpeg) < 20_000


def test_a_search_keeps_the_searched_face_of_a_match_and_of_a_near_unknown_only(gallery: Gallery) -> None:
    with open_deployment(gallery.settings) as dep:
        match = search_image(dep.app, gallery.probe("Al_Gore", 5), SearchOptions())
        stranger = search_image(dep.app, gallery.probe(STRANGER, 0), SearchOptions())
        assert match.faces[0].decision == "match"
        width, height = jpeg_size(kept(dep.app, match)[0])
        assert width == height and 100 <= width <= 200
        [face] = stranger.faces
        gap = match.threshold.value - face.decision_score
        assert face.decision == "unknown" and gap > dep.settings.review.near_threshold  # far below: not kept
        assert kept(dep.app, stranger) == {}
    with open_deployment(gallery.with_review(near_threshold=round(gap + 0.01, 4))) as dep:
        near = search_image(dep.app, gallery.probe(STRANGER, 0), SearchOptions())
        assert near.faces[0].decision == "unknown" and list(kept(dep.app, near)) == [0]
    with open_deployment(gallery.with_review(keep_search_thumbnails=False)) as dep:
        before = stored_search_thumbnails(dep.app)
        unkept = search_image(dep.app, gallery.probe("Al_Gore", 5), SearchOptions())
        assert unkept.faces[0].decision == "match" and kept(dep.app, unkept) == {}
        assert stored_search_thumbnails(dep.app) == before


def test_searched_thumbnails_are_erased_when_their_retention_passes(gallery: Gallery) -> None:
    seconds = 2.0
    with open_deployment(gallery.with_review(search_thumbnail_retention_days=seconds / 86_400)) as dep:
        first = search_image(dep.app, gallery.probe("Al_Gore", 5), SearchOptions())
        assert list(kept(dep.app, first)) == [0]
        time.sleep(seconds + 0.5)
        assert kept(dep.app, first) == {}  # past its retention it is never shown, even before it is deleted
        second = search_image(dep.app, gallery.probe("Al_Gore", 6), SearchOptions())
        assert list(kept(dep.app, second)) == [0]
        assert stored_search_thumbnails(dep.app) == 1  # the next search erased the first one's


def test_erasing_a_person_erases_the_thumbnails_of_the_searches_that_returned_them(gallery: Gallery) -> None:
    with open_deployment(gallery.settings) as dep:
        returned = search_image(dep.app, gallery.probe("Al_Gore", 5), SearchOptions())  # Aaron ranked second
        other = search_image(dep.app, gallery.probe("Aaron_Peirsol", 3), SearchOptions(top_k=1))
        assert [c.person.external_id for c in returned.faces[0].candidates][:2] == ["Al_Gore", "Aaron_Peirsol"]
        assert [c.person.external_id for c in other.faces[0].candidates] == ["Aaron_Peirsol"]
        assert kept(dep.app, returned) and kept(dep.app, other)
        al_faces = [f.face_id for f in audit_person(dep.app, "Al_Gore").faces]
        delete_person(dep.app, "Al_Gore")
        assert kept(dep.app, returned) == {}
        assert list(kept(dep.app, other)) == [0]  # a search that never returned Al_Gore keeps its face
        assert face_thumbnails(dep.app, al_faces) == {}
        assert stored_search_thumbnails(dep.app) == 1


def doctor(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict]:
    code = main(["doctor", *args, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_doctor_counts_faces_without_a_thumbnail_and_repair_back_fills_them(
    gallery: Gallery, clean_env: dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = gallery.settings
    assert clean_env["IDENTITY_DATA_DIR"] == str(settings.data_dir)
    if settings.database_url:
        monkeypatch.setenv("IDENTITY_DATABASE_URL", settings.database_url)
    with open_deployment(settings) as dep:  # as a store enrolled before thumbnails were kept
        with transaction(dep.app.sessions) as session:
            session.execute(delete(FaceThumbnail))
    gone = sorted((gallery.photos / "Aaron_Peirsol").iterdir())[0]
    gone.unlink()  # its face cannot be back-filled: it stays counted, and the rest are done

    code, found = doctor(capsys)
    assert code == 0 and found["clean"] and found["faces_without_thumbnail"] == 5
    code, repaired = doctor(capsys, "--repair")
    assert code == 0 and repaired["repaired"]["face_thumbnails"] == 4
    code, after = doctor(capsys)
    assert code == 0 and after["faces_without_thumbnail"] == 1
    with open_deployment(settings) as dep:
        thumbs = face_thumbnails(dep.app, [f.face_id for p in GALLERY for f in audit_person(dep.app, p).faces])
    assert len(thumbs) == 4
    for jpeg in thumbs.values():
        width, height = jpeg_size(jpeg)
        assert max(width, height) == 112 and len(jpeg) > 1_000  # the face box cut from the photo


def test_pages_draw_faces_from_stored_thumbnails_when_the_photos_are_gone(gallery: Gallery, tmp_path: Path) -> None:
    folder = tmp_path / "unlabelled"
    folder.mkdir()
    for person, index in (("Al_Gore", 5), ("Al_Gore", 6), (STRANGER, 0)):
        shutil.copy(gallery.probe(person, index), folder / f"{person}_{index}.jpg")
    with open_deployment(gallery.settings) as dep:
        search_image(dep.app, gallery.probe("Al_Gore", 5), SearchOptions())
        run = cluster_folder(dep.app, folder, workers=1)
        assert run.faces == 3 and len(run.singletons) == 1  # Al Gore's two photos, and a stranger alone
        [lone] = run.singletons[0].faces
        shutil.rmtree(gallery.photos)
        shutil.rmtree(folder)
        audit = audit_person(dep.app, "Al_Gore")
        page = render_audit_html(dep.app, audit)
        assert page.count('alt="face ') == 3 and page.count('alt="searched face"') == 1
        assert "no thumbnail" not in page
        clusters = render_clusters_html(dep.app, "folder", run.clusters, run.singletons)
        assert clusters.count("data:image/jpeg;base64,") == 3 and "no thumbnail" not in clusters
        with dep.app.sessions() as session:
            assert all(session.scalars(select(ClusterMember.thumbnail)))
        with transaction(dep.app.sessions) as session:  # a face without a stored thumbnail: a neutral placeholder
            session.execute(delete(FaceThumbnail).where(FaceThumbnail.face_id == uuid.UUID(audit.faces[0].face_id)))
            session.execute(update(ClusterMember).where(ClusterMember.face_key == lone.face_key).values(thumbnail=None))
        page = render_audit_html(dep.app, audit)
        assert page.count('alt="face ') == 2 and page.count("no thumbnail") == 1
        clusters = render_clusters_html(dep.app, "folder", run.clusters, run.singletons)
        assert clusters.count("data:image/jpeg;base64,") == 2 and clusters.count("no thumbnail") == 1


CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


def test_the_person_and_cluster_pages_show_stored_thumbnails_in_a_browser(
    tmp_path: Path, lfw_dir: Path, copy_labelled
) -> None:
    """Photos gone, the review UI still shows every face from its stored thumbnail; a face without one
    shows the placeholder. Screenshots: test-artifacts/thumbnails-*.png."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (pip) is needed for the browser tests")
    if not CHROMIUM.is_file():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    settings = Settings(data_dir=tmp_path / "data", workers=1)
    photos = copy_labelled(tmp_path / "gallery", ["Al_Gore"], 3)
    archive = tmp_path / "archive"
    archive.mkdir()
    for photo in sorted((lfw_dir / STRANGER).iterdir())[:3]:
        shutil.copy(photo, archive)
    with open_deployment(settings) as dep:
        batch, _ = queue_jobs(dep.app, from_directory(photos))
        assert process_queue(dep.app, EnrollmentWriter(dep), batch, 1).counts == {"enrolled": 3}
        assert cluster_folder(dep.app, archive, workers=1).clusters
        first = audit_person(dep.app, "Al_Gore").faces[0].face_id
        with transaction(dep.app.sessions) as session:
            session.execute(delete(FaceThumbnail).where(FaceThumbnail.face_id == uuid.UUID(first)))
    shutil.rmtree(photos)
    shutil.rmtree(archive)
    ARTIFACTS.mkdir(exist_ok=True)
    shown = "img => img.complete && img.naturalWidth > 0"
    with App.open(settings) as core, served(core) as base, sync_api.sync_playwright() as playwright:
        key = create_key(core, "reviewer", "admin").key
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(f"{base}/ui/login")
        page.fill("input[name=key]", key)
        page.click("button[type=submit]")
        page.wait_for_url(f"{base}/ui/persons")  # where an admin key lands

        page.goto(f"{base}/ui/persons/Al_Gore")
        faces = page.locator("figure.face img")
        assert faces.count() == 2 and all(faces.nth(i).evaluate(shown) for i in range(2))
        assert page.locator("figure.face .missing").all_inner_texts() == ["no thumbnail"]
        page.screenshot(path=str(ARTIFACTS / "thumbnails-person.png"), full_page=True)

        page.goto(f"{base}/ui/clusters")
        faces = page.locator("section.cluster img.thumb")
        assert faces.count() >= 2 and all(faces.nth(i).evaluate(shown) for i in range(faces.count()))
        assert page.locator("section.cluster .missing").count() == 0
        page.screenshot(path=str(ARTIFACTS / "thumbnails-clusters.png"), full_page=True)
        browser.close()
