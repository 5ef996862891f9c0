"""/v1/reviews over both SQL stores: the paged queue with what a reviewer compares, verdicts, a second reviewer
superseding the first, and "other person" (a rejection naming who the face really is, optionally enrolling it)."""

from __future__ import annotations

import json

import pytest
from test_cli import run_cli
from test_search_audit import gallery, probe  # noqa: F401 (gallery is a fixture)

from identity.app.core import App, open_deployment
from identity.services.access.keys import create_key
from identity.services.curation.edits import delete_person, merge_persons
from identity.services.records.persons import add_person, show_person
from identity.services.review.queue import review_queue
from identity.services.search.identify import SearchOptions, search_image

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from identity.api.app import create_api  # noqa: E402


def served(settings):
    core = App.open(settings)
    keys = {role: create_key(core, f"{role}-key", role).key for role in ("search", "audit", "admin")}
    return core, keys


def auth(keys: dict[str, str], role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {keys[role]}"}


def test_the_queue_pages_shows_both_faces_and_a_second_reviewer_supersedes(gallery) -> None:
    settings, lfw = gallery
    with open_deployment(settings) as dep:
        searched = [search_image(dep.app, probe(lfw, "Al_Gore", n), SearchOptions(actor="desk")) for n in (5, 6, 7)]
    assert all(s.faces[0].decision == "match" for s in searched)
    core, keys = served(settings)
    with core, TestClient(create_api(core)) as client:
        first = client.get("/v1/reviews?unreviewed=true&decision=match&limit=2", headers=auth(keys, "audit"))
        assert first.status_code == 200, first.text
        page = first.json()
        assert page["total"] == 3 and len(page["items"]) == 2 and page["next"]
        second = client.get(
            f"/v1/reviews?unreviewed=true&decision=match&limit=2&cursor={page['next']}", headers=auth(keys, "audit")
        ).json()
        assert second["next"] is None and second["total"] == 3 and len(second["items"]) == 1
        items = page["items"] + second["items"]
        assert [i["search_id"] for i in items] == [s.search_id for s in reversed(searched)]  # newest first
        item = items[0]
        assert item["person"]["external_id"] == "Al_Gore" and item["searched_by"] == "desk"
        assert item["review"] == "unreviewed" and item["earlier"] == []
        scores = [face["score"] for face in item["faces"]]  # the person's nearest enrolled faces, best first
        assert 1 <= len(scores) <= 3 and scores == sorted(scores, reverse=True)
        assert item["runner_up"]["person"]["external_id"] != "Al_Gore" and item["runner_up"]["score"] < item["score"]
        assert item["threshold"] > 0

        target = f"/v1/reviews/{item['search_id']}/0"
        ok = client.post(target, json={"verdict": "confirmed", "note": "same mole"}, headers=auth(keys, "audit"))
        assert ok.status_code == 200, ok.text
        assert ok.json()["verdict"] == "confirmed" and ok.json()["superseded"] is None
        later = client.post(target, json={"verdict": "rejected"}, headers=auth(keys, "admin"))
        assert later.status_code == 200, later.text
        done = later.json()
        assert (done["superseded"], done["superseded_by"], done["actor"]) == ("confirmed", "audit-key", "admin-key")

        pending = client.get("/v1/reviews?unreviewed=true&decision=match", headers=auth(keys, "audit")).json()
        assert pending["total"] == 2 and item["search_id"] not in [i["search_id"] for i in pending["items"]]
        everything = client.get("/v1/reviews", headers=auth(keys, "audit")).json()
        [reviewed] = [i for i in everything["items"] if i["search_id"] == item["search_id"]]
        assert (reviewed["review"], reviewed["reviewed_by"]) == ("rejected", "admin-key")
        assert [(e["verdict"], e["by"], e["note"]) for e in reviewed["earlier"]] == [
            ("confirmed", "audit-key", "same mole")
        ]


def test_other_person_rejects_names_and_enrolls_the_face_and_merging_keeps_the_name(gallery) -> None:
    settings, lfw = gallery
    photo = probe(lfw, "Al_Gore", 5)
    with open_deployment(settings) as dep:
        result = search_image(dep.app, photo, SearchOptions())
        add_person(dep.app, "gore-double", "A look-alike")
    core, keys = served(settings)
    with core, TestClient(create_api(core)) as client:
        target = f"/v1/reviews/{result.search_id}/0"
        body = {"verdict": "rejected", "actual_person": "gore-double", "enroll": True}
        refused = client.post(target, json=body, headers=auth(keys, "audit"))
        assert refused.status_code == 403 and "enroll" in refused.json()["error"]
        answer = client.post(target, json=body, headers=auth(keys, "admin"))
        assert answer.status_code == 200, answer.text
        done = answer.json()
        assert (done["verdict"], done["person"], done["actual_person"], done["enrolled"]) == (
            "rejected",
            "Al_Gore",
            "gore-double",
            "enrolled",
        )
        assert show_person(core, "gore-double").faces == 1
        [item] = [i for i in client.get("/v1/reviews", headers=auth(keys, "audit")).json()["items"]]
        assert item["actual_person"] == "gore-double"
    with open_deployment(settings) as dep:
        again = search_image(dep.app, photo, SearchOptions())
        assert again.faces[0].best.person.external_id == "gore-double"  # the rejected Al_Gore is left out
        add_person(dep.app, "gore-double-2")
        merge_persons(dep.app, "gore-double-2", "gore-double", actor="dpo")
        [row] = [i for i in review_queue(dep.app).items if i.search_id == result.search_id]
        assert row.actual_person == "gore-double-2"  # the rejection follows the merge
        delete_person(dep.app, "gore-double-2", actor="dpo")
        [row] = [i for i in review_queue(dep.app).items if i.search_id == result.search_id]
        assert row.actual_person is None and row.review is not None  # erased: the verdict stays, not who


def test_bad_review_requests_are_one_line_errors(gallery, capsys, monkeypatch) -> None:
    settings, lfw = gallery
    with open_deployment(settings) as dep:
        result = search_image(dep.app, probe(lfw, "Al_Gore", 5), SearchOptions())
    core, keys = served(settings)
    with core, TestClient(create_api(core)) as client:
        target = f"/v1/reviews/{result.search_id}/0"
        cases = [
            ({"verdict": "confirmed", "actual_person": "Aaron_Peirsol"}, 422, "only a rejection"),
            ({"verdict": "rejected", "actual_person": "nobody-here"}, 404, "nobody-here"),
            ({"verdict": "rejected", "actual_person": "Al_Gore"}, 422, "must be another"),
            ({"verdict": "maybe"}, 422, "verdict"),
        ]
        for body, status, words in cases:
            answer = client.post(target, json=body, headers=auth(keys, "audit"))
            assert answer.status_code == status and words in json.dumps(answer.json()), (body, answer.text)
        assert client.post(target, json={"verdict": "confirmed"}, headers=auth(keys, "search")).status_code == 403
        bad = client.get("/v1/reviews?cursor=zzz", headers=auth(keys, "audit"))
        assert bad.status_code == 422 and "cursor" in bad.json()["error"]
        assert client.get("/v1/reviews?person=nobody-here", headers=auth(keys, "audit")).status_code == 404
    monkeypatch.setenv("IDENTITY_DATA_DIR", str(settings.data_dir))
    if settings.database_url:
        monkeypatch.setenv("IDENTITY_DATABASE_URL", settings.database_url)
    code, out, err = run_cli(capsys, "review", "reject", result.search_id, "0", "--enroll")
    assert code == 1 and err.count("\n") == 1 and "--actual" in err
    code, out, err = run_cli(
        capsys, "review", "reject", result.search_id, "0", "--actual", "Aaron_Peirsol", "--json", "--actor", "cli"
    )
    assert code == 0, err
    assert json.loads(out)["actual_person"] == "Aaron_Peirsol" and "enrolled" not in json.loads(out)
