"""Match review: confirm/reject, rejections that stick, the precision report, audit and the search log."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_cli import run_cli
from test_search_audit import gallery, probe  # noqa: F401 (gallery is a fixture)

from identity.app.core import App, open_deployment
from identity.errors import InvalidArgument, NotFound
from identity.serialize import to_json
from identity.services.curation.edits import delete_person
from identity.services.records.audit import audit_person
from identity.services.review.matches import list_reviews, report_reviews, review_match, wilson_interval
from identity.services.search.identify import SearchOptions, search_image
from identity.services.search.log import list_searches


def test_a_rejected_match_is_never_made_again_for_that_image_and_a_confirmation_restores_it(gallery) -> None:
    settings, lfw = gallery
    photo = probe(lfw, "Al_Gore", 5)
    with open_deployment(settings) as dep:
        first = search_image(dep.app, photo, SearchOptions(actor="desk"))
        assert first.faces[0].decision == "match" and first.faces[0].best.person.external_id == "Al_Gore"
        [row] = list_reviews(dep.app, unreviewed=True, decision="match")
        assert (row.search_id, row.person, row.review) == (first.search_id, "Al_Gore", None)

        rejected = review_match(dep.app, first.search_id, 0, "rejected", note="his brother", actor="rev1")
        assert (rejected.person, rejected.verdict, rejected.superseded) == ("Al_Gore", "rejected", None)
        again = search_image(dep.app, photo, SearchOptions())
        face = again.faces[0]
        assert "Al_Gore" not in [c.person.external_id for c in face.candidates]
        assert not (face.decision == "match" and face.best.person.external_id == "Al_Gore")
        assert any("Al_Gore is left out: a reviewer rejected" in w for w in again.warnings)
        other = search_image(dep.app, probe(lfw, "Al_Gore", 6), SearchOptions())  # another photo still matches him
        assert other.faces[0].best.person.external_id == "Al_Gore" and other.faces[0].decision == "match"

        confirmed = review_match(dep.app, first.search_id, 0, "confirmed", actor="rev2")
        assert confirmed.superseded == "rejected"  # append-only: the later review is in force
        restored = search_image(dep.app, photo, SearchOptions())
        assert restored.faces[0].decision == "match" and restored.faces[0].best.person.external_id == "Al_Gore"
        assert [r.review.verdict for r in list_reviews(dep.app, person_ref="Al_Gore") if r.review] == ["confirmed"]


def test_report_audit_and_search_log_show_the_reviews(gallery) -> None:
    settings, lfw = gallery
    with open_deployment(settings) as dep:
        good = search_image(dep.app, probe(lfw, "Al_Gore", 5), SearchOptions())
        bad = search_image(dep.app, probe(lfw, "Alejandro_Toledo", 4), SearchOptions())
        search_image(dep.app, probe(lfw, "Al_Gore", 7), SearchOptions())  # a match left unreviewed
        assert bad.faces[0].decision == "match"
        review_match(dep.app, good.search_id, 0, "confirmed", actor="rev")
        review_match(dep.app, bad.search_id, 0, "rejected", actor="rev")
        report = report_reviews(dep.app)
        assert (report.overall.matches, report.overall.reviewed, report.overall.confirmed) == (3, 2, 1)
        assert report.overall.precision == 0.5 and report.overall.interval == wilson_interval(1, 2)
        [group] = report.groups
        assert group.model == dep.model.model_id and group.reviewed == 2
        assert any("below 95%" in w for w in report.warnings)
        assert not report_reviews(dep.app, warn_below=0.4).warnings

        audit = audit_person(dep.app, "Al_Gore")
        verdicts = {s.search_id: s.review.verdict if s.review else None for s in audit.searches if s.rank == 1}
        assert verdicts[good.search_id] == "confirmed" and list(verdicts.values()).count(None) == 1
        assert [s.search_id for s in list_searches(dep.app, review="confirmed").items] == [good.search_id]
        assert [s.search_id for s in list_searches(dep.app, review="rejected").items] == [bad.search_id]
        assert list_searches(dep.app, review="unreviewed").total == 1
        assert {s.review for s in list_searches(dep.app).items} >= {"confirmed", "rejected", "unreviewed"}


def test_bad_reviews_are_one_line_errors(gallery, capsys, monkeypatch) -> None:
    settings, lfw = gallery
    with open_deployment(settings) as dep:
        result = search_image(dep.app, probe(lfw, "Al_Gore", 5), SearchOptions(top_k=1))
        with pytest.raises(NotFound, match="no search"):
            review_match(dep.app, "00000000-0000-0000-0000-000000000000", 0, "confirmed")
        with pytest.raises(InvalidArgument, match="not a search id"):
            review_match(dep.app, "nope", 0, "confirmed")
        with pytest.raises(InvalidArgument, match="1 face.*out of range"):
            review_match(dep.app, result.search_id, 3, "confirmed")
        with pytest.raises(InvalidArgument, match="Aaron_Eckhart was not among the candidates"):
            review_match(dep.app, result.search_id, 0, "confirmed", person_ref="Aaron_Eckhart")
    monkeypatch.setenv("IDENTITY_DATA_DIR", str(settings.data_dir))
    if settings.database_url:
        monkeypatch.setenv("IDENTITY_DATABASE_URL", settings.database_url)
    code, out, err = run_cli(capsys, "review", "reject", result.search_id, "9")
    assert code == 1 and err.count("\n") == 1 and "out of range" in err


def test_erasure_keeps_the_review_without_the_person_or_the_note(gallery) -> None:
    settings, lfw = gallery
    with open_deployment(settings) as dep:
        result = search_image(dep.app, probe(lfw, "Al_Gore", 5), SearchOptions())
        review_match(dep.app, result.search_id, 0, "confirmed", note="Al Gore at the rally", actor="rev")
        erased = delete_person(dep.app, "Al_Gore", actor="dpo")
        assert to_json(erased)["removed"]["sql"]["reviews_unlinked"] == 1
        [row] = [r for r in list_reviews(dep.app) if r.search_id == result.search_id]
        assert row.person is None and row.review is not None
        assert (row.review.verdict, row.review.by, row.review.note) == ("confirmed", "rev", None)


def test_wilson_interval() -> None:
    assert wilson_interval(10, 10) == (0.7225, 1.0)
    assert wilson_interval(0, 10) == (0.0, 0.2775)
    low, high = wilson_interval(95, 100)
    assert low < 0.95 < high and round(low, 3) == 0.888


def test_report_on_an_empty_log(tmp_path: Path) -> None:
    from identity.config import Settings

    with App.open(Settings(data_dir=tmp_path)) as app:
        report = report_reviews(app)
    assert report.overall.matches == 0 and report.overall.precision is None and report.warnings == []
