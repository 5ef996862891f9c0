"""The search log says who was matched: `matched` per search (service, CLI --json, HTTP), and one search's faces."""

from __future__ import annotations

import json

import pytest
from test_cli import run_cli
from test_search_audit import STRANGER, gallery, probe  # noqa: F401 (gallery is a fixture)

from identity.app.core import open_deployment
from identity.errors import InvalidArgument, NotFound
from identity.services.curation.edits import delete_person
from identity.services.review.matches import review_match
from identity.services.search.identify import SearchOptions, search_image
from identity.services.search.log import list_searches, show_search


def test_the_log_lists_who_each_search_matched_and_forgets_an_erased_person(
    gallery, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, lfw = gallery
    with open_deployment(settings) as dep:
        known = search_image(dep.app, probe(lfw, "Al_Gore", 5), SearchOptions(actor="desk"))
        stranger = search_image(dep.app, probe(lfw, STRANGER, 0), SearchOptions(actor="desk"))
        logged = {s.search_id: s for s in list_searches(dep.app).items}
        assert logged[known.search_id].matched == ["Al_Gore"]
        assert logged[stranger.search_id].matched == []

        review_match(dep.app, known.search_id, 0, "confirmed", actor="rev")
        detail = show_search(dep.app, known.search_id)
        assert detail.search.matched == ["Al_Gore"] and detail.search.review == "confirmed"
        [face] = detail.faces
        assert (face.face_index, face.decision, face.person, face.review) == (0, "match", "Al_Gore", "confirmed")
        assert show_search(dep.app, stranger.search_id).faces[0].review == "unreviewed"

    monkeypatch.setenv("IDENTITY_DATA_DIR", str(settings.data_dir))
    if settings.database_url:
        monkeypatch.setenv("IDENTITY_DATABASE_URL", settings.database_url)
    code, out, _ = run_cli(capsys, "searches", "list", "--json")
    assert code == 0
    assert {row["search_id"]: row["matched"] for row in json.loads(out)} == {
        known.search_id: ["Al_Gore"],
        stranger.search_id: [],
    }

    with open_deployment(settings) as dep:
        delete_person(dep.app, "Al_Gore", "admin")  # an erased person is not named by the log any more
        assert {s.search_id: s.matched for s in list_searches(dep.app).items}[known.search_id] == []
        with pytest.raises(NotFound):
            show_search(dep.app, "00000000-0000-0000-0000-000000000000")
        with pytest.raises(InvalidArgument):
            show_search(dep.app, "not-a-uuid")
