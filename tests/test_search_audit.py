"""Search, the search log, audit and curation on a small real gallery (lfw-dev photos)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from identity.app.core import open_deployment
from identity.config import Settings
from identity.errors import NoFaceFound, NotFound
from identity.render.audit_html import render_audit_html
from identity.serialize import to_json
from identity.services.curation.edits import delete_face, delete_person, merge_persons, move_face
from identity.services.enrollment.inputs import from_directory
from identity.services.enrollment.writer import EnrollmentWriter
from identity.services.queue.loop import process_queue, queue_jobs
from identity.services.records.audit import audit_person
from identity.services.search.identify import SearchOptions, search_image
from identity.services.search.log import list_searches
from identity.store.sql.db import transaction
from identity.store.sql.persons import update_person

GALLERY = {"Al_Gore": 3, "Aaron_Peirsol": 2, "Alejandro_Toledo": 3, "Aaron_Eckhart": 1}
STRANGER = "Tony_Blair"


@pytest.fixture(params=["sqlite", "postgres"])
def gallery(request, tmp_path: Path, lfw_dir: Path) -> tuple[Settings, Path]:
    url = None if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    settings = Settings(data_dir=tmp_path / "data", database_url=url, workers=1)
    root = tmp_path / "gallery"
    for person, count in GALLERY.items():
        (root / person).mkdir(parents=True)
        for image in sorted((lfw_dir / person).iterdir())[:count]:
            shutil.copy(image, root / person / image.name)
    with open_deployment(settings) as dep:
        batch, _ = queue_jobs(dep.app, from_directory(root))
        summary = process_queue(dep.app, EnrollmentWriter(dep), batch, 1)
        assert summary.counts.get("enrolled", 0) >= 8, summary.counts
        with transaction(dep.app.sessions) as s:
            update_person(s, "Al_Gore", "Al Gore", {"team": "blue"})
    return settings, lfw_dir


def probe(lfw_dir: Path, person: str, index: int) -> str:
    return str(sorted((lfw_dir / person).iterdir())[index])


def test_enrolled_person_is_first_and_matched_stranger_is_unknown(gallery) -> None:
    settings, lfw = gallery
    with open_deployment(settings) as dep:
        known = search_image(dep.app, probe(lfw, "Al_Gore", 5), SearchOptions(top_k=3, actor="tester"))
        stranger = search_image(dep.app, probe(lfw, STRANGER, 0), SearchOptions(top_k=3))
    [face] = known.faces
    assert face.decision == "match"
    assert face.decision_score == face.candidates[0].score  # a gallery this small has no cohort: the raw rule
    assert face.best.person.external_id == "Al_Gore"
    assert face.best.person.attributes == {"team": "blue"}
    assert face.best.matched_faces >= 2  # several of his faces among the hits...
    assert len({c.person.external_id for c in face.candidates}) == 3  # ...without crowding others out
    assert [c.rank for c in face.candidates] == [1, 2, 3]
    assert face.candidates[0].score >= face.candidates[1].score >= face.candidates[2].score
    assert stranger.faces[0].decision == "unknown"
    assert known.threshold.source.startswith("pack default")
    json.dumps(to_json(known))  # the --json output is serialisable


def test_threshold_filter_and_min_score_change_the_answer(gallery) -> None:
    settings, lfw = gallery
    with open_deployment(settings) as dep:
        image = probe(lfw, "Al_Gore", 5)
        strict = search_image(dep.app, image, SearchOptions(threshold=0.9999))
        assert strict.faces[0].decision == "unknown" and strict.threshold.source == "command line"
        only_blue = search_image(dep.app, image, SearchOptions(filters={"team": "blue"}))
        assert [c.person.external_id for c in only_blue.faces[0].candidates] == ["Al_Gore"]
        nobody = search_image(dep.app, image, SearchOptions(filters={"team": "red"}))
        assert nobody.faces[0].candidates == [] and nobody.faces[0].decision == "unknown"
        assert nobody.faces[0].decision_score is None and to_json(nobody)["faces"][0]["decision_score"] is None
        high = search_image(dep.app, image, SearchOptions(min_score=0.99))
        assert all(c.score >= 0.99 for c in high.faces[0].candidates)
        with transaction(dep.app.sessions) as s:  # a non-ASCII key; a repeated key means any of its values
            update_person(s, "Aaron_Peirsol", attributes={"команда": "синяя"})
            update_person(s, "Al_Gore", attributes={"команда": "зелёная"})
        one = search_image(dep.app, image, SearchOptions(filters={"команда": "синяя"}))
        assert [c.person.external_id for c in one.faces[0].candidates] == ["Aaron_Peirsol"]
        either = search_image(dep.app, image, SearchOptions(filters={"команда": ["синяя", "зелёная"]}))
        assert {c.person.external_id for c in either.faces[0].candidates} == {"Al_Gore", "Aaron_Peirsol"}


def test_no_face_is_its_own_error(gallery, tmp_path: Path) -> None:
    settings, _ = gallery
    blank = tmp_path / "blank.png"
    from PIL import Image

    Image.new("RGB", (200, 200), "white").save(blank)
    with open_deployment(settings) as dep, pytest.raises(NoFaceFound, match="no face found in .*blank.png"):
        search_image(dep.app, str(blank), SearchOptions())


def test_search_log_and_audit_show_who_was_searched(gallery, tmp_path: Path) -> None:
    settings, lfw = gallery
    with open_deployment(settings) as dep:
        result = search_image(dep.app, probe(lfw, "Al_Gore", 6), SearchOptions(actor="inspector"))
        logged = list_searches(dep.app, "Al_Gore").items
        assert [e.search_id for e in logged] == [result.search_id]
        assert logged[0].actor == "inspector" and logged[0].query_sha256 == result.sha256
        report = audit_person(dep.app, "Al_Gore", actor="auditor")
        page = render_audit_html(dep.app, report)
    assert len(report.faces) == 3 and all(f.status == "indexed" for f in report.faces)
    assert report.searches[0].search_id == result.search_id and report.searches[0].rank == 1
    assert report.lookalikes and all(other.person.external_id != "Al_Gore" for other in report.lookalikes)
    assert report.lookalike_margin is not None
    assert report.outliers == []
    assert page.count('alt="face ') == 3 and page.count('alt="searched face"') == 1 and "inspector" in page
    with open_deployment(settings) as dep:  # a mislabelled photo stands out among the person's faces
        stranger = audit_person(dep.app, "Alejandro_Toledo").faces[0].face_id
        move_face(dep.app, stranger, "Al_Gore")
        assert audit_person(dep.app, "Al_Gore").outliers == [stranger]


def test_merge_move_and_delete_keep_search_consistent(gallery) -> None:
    settings, lfw = gallery
    with open_deployment(settings) as dep:
        image = probe(lfw, "Aaron_Peirsol", 3)
        before = search_image(dep.app, image, SearchOptions(actor="a"))
        assert before.faces[0].best.person.external_id == "Aaron_Peirsol"
        merged = merge_persons(dep.app, "Al_Gore", "Aaron_Peirsol")
        assert merged.faces_moved == 2
        after = search_image(dep.app, image, SearchOptions())
        assert after.faces[0].best.person.external_id == "Al_Gore"  # the vectors now point at Al_Gore
        assert list_searches(dep.app, "Al_Gore").items[-1].search_id == before.search_id  # history followed
        with pytest.raises(NotFound):
            audit_person(dep.app, "Aaron_Peirsol")

        face_id = audit_person(dep.app, "Aaron_Eckhart").faces[0].face_id
        move_face(dep.app, face_id, "Alejandro_Toledo")
        assert audit_person(dep.app, "Aaron_Eckhart").faces == []
        assert to_json(delete_face(dep.app, face_id))["face_id"] == face_id
        assert delete_face(dep.app, face_id).already_deleted is True

        erased = delete_person(dep.app, "Alejandro_Toledo", actor="dpo")
        assert erased.subject.faces_erased == 3
        assert delete_person(dep.app, "Alejandro_Toledo").already_deleted is True  # harmless twice
        with pytest.raises(NotFound):
            delete_person(dep.app, "Never_Existed")
        hits = search_image(dep.app, probe(lfw, "Alejandro_Toledo", 10), SearchOptions(top_k=10))
        assert "Alejandro_Toledo" not in {c.person.external_id for c in hits.faces[0].candidates}
        assert dep.index.count() == 5  # 3 + 2 (Al Gore after merge); the single face moved then deleted
