"""A face below the search minimum (faces.min_search_iod_px) is not searched: its outcome is
`not_searched` with the reason, everywhere a search is shown, and it never counts as `unknown`."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
from PIL import Image
from test_cli import run_cli
from test_search_audit import STRANGER, gallery, probe  # noqa: F401 (gallery is a fixture)

from identity.app.core import App, open_deployment
from identity.config import FaceSettings, ReviewSettings, Settings
from identity.errors import ConfigError
from identity.serialize import to_json
from identity.services.access.keys import create_key
from identity.services.review.matches import list_reviews
from identity.services.search.identify import SearchOptions, search_image
from identity.services.search.log import list_searches

# Above an lfw-dev face's ~40 px between the eyes, below the same face enlarged twice (~80 px).
MINIMUM = 60.0
REASON = re.compile(r"^\d+\.\d px between the eyes, below the 60 px search minimum \(faces\.min_search_iod_px\)$")


def strict(settings: Settings, **changes: object) -> Settings:
    """The gallery's settings with the search minimum at MINIMUM."""
    return dataclasses.replace(settings, faces=FaceSettings(min_search_iod_px=MINIMUM), **changes)


@pytest.fixture
def group(tmp_path: Path, gallery) -> tuple[Settings, Path, Path]:  # noqa: F811 (the imported fixture)
    """(settings, a photo of Al Gore enlarged twice beside a stranger at native size, the stranger alone)."""
    settings, lfw = gallery
    with Image.open(probe(lfw, "Al_Gore", 5)) as known, Image.open(probe(lfw, STRANGER, 0)) as stranger:
        canvas = Image.new("RGB", (750, 500), "grey")
        canvas.paste(known.convert("RGB").resize((500, 500), Image.Resampling.BICUBIC), (0, 0))
        canvas.paste(stranger.convert("RGB"), (500, 125))
    photo = tmp_path / "group.jpg"
    canvas.save(photo, quality=95)
    return strict(settings), photo, Path(probe(lfw, STRANGER, 0))


def test_a_small_face_is_not_searched_and_never_unknown_while_the_large_one_matches(group) -> None:
    settings, photo, alone = group
    with open_deployment(strict(settings, review=ReviewSettings(keep_unknown_faces=True))) as dep:
        result = search_image(dep.app, str(photo), SearchOptions(actor="desk"))
        small_only = search_image(dep.app, str(alone), SearchOptions())
        kept_unknown = dep.unknown.count()
        logged = {s.search_id: s for s in list_searches(dep.app).items}
        reviews = list_reviews(dep.app)
        unknown_reviews = list_reviews(dep.app, decision="unknown")
    large, small = sorted(result.faces, key=lambda f: -f.quality.iod_px)
    assert large.decision == "match" and large.best.person.external_id == "Al_Gore" and large.reason is None
    assert small.decision == "not_searched" and small.candidates == [] and small.decision_score is None
    assert REASON.match(small.reason), small.reason
    assert small.reason.startswith(f"{small.quality.iod_px:.1f} px")
    [face] = small_only.faces
    assert face.decision == "not_searched"
    as_json = json.loads(json.dumps(to_json(result)))
    assert {f["decision"]: f["reason"] for f in as_json["faces"]} == {"match": None, "not_searched": small.reason}
    # The log keeps both faces and says how many were not searched; a search of none says so.
    assert (logged[result.search_id].faces, logged[result.search_id].not_searched) == (2, 1)
    assert logged[result.search_id].decision == "match"
    assert (logged[small_only.search_id].not_searched, logged[small_only.search_id].decision) == (1, "not_searched")
    # Reviews list the decisions made on faces: the match only; clustering keeps no face from these searches.
    assert [(r.search_id, r.decision) for r in reviews] == [(result.search_id, "match")]
    assert unknown_reviews == [] and kept_unknown == 0


def test_cli_table_and_json_show_every_face_with_its_outcome(group, capsys, monkeypatch) -> None:
    settings, photo, _ = group
    monkeypatch.setenv("IDENTITY_DATA_DIR", str(settings.data_dir))
    if settings.database_url:
        monkeypatch.setenv("IDENTITY_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("IDENTITY_FACES__MIN_SEARCH_IOD_PX", str(MINIMUM))
    code, out, _ = run_cli(capsys, "search", str(photo))
    flat = " ".join(out.split())  # the console wraps long lines
    assert code == 0
    assert re.search(r"face \d at \[[\d, ]+\]: not_searched: \d+\.\d px between the eyes, below the 60 px", flat), out
    assert re.search(r"face \d at \[[\d, ]+\]: match", flat) and "Al_Gore" in out
    code, out, _ = run_cli(capsys, "search", str(photo), "--json")
    faces = json.loads(out)["results"][0]["faces"]
    assert code == 0 and sorted(f["decision"] for f in faces) == ["match", "not_searched"]
    assert all(REASON.match(f["reason"]) for f in faces if f["decision"] == "not_searched")
    code, out, _ = run_cli(capsys, "searches", "list", "--json")
    assert code == 0 and [(s["faces"], s["not_searched"]) for s in json.loads(out)] == [(2, 1), (2, 1)]


def test_api_answers_not_searched_and_metrics_never_count_it_unknown(group) -> None:
    from fastapi.testclient import TestClient

    from identity.api.app import create_api

    settings, photo, _ = group
    with App.open(settings) as core:
        keys = {role: create_key(core, f"{role}-key", role).key for role in ("search", "admin")}
        with TestClient(create_api(core)) as client:
            answer = client.post(
                "/v1/search",
                headers={"Authorization": f"Bearer {keys['search']}"},
                files=[("image", (photo.name, photo.read_bytes(), "image/jpeg"))],
            )
            metrics = client.get("/metrics", headers={"Authorization": f"Bearer {keys['admin']}"}).text
            logged = client.get("/v1/searches", headers={"Authorization": f"Bearer {keys['admin']}"}).json()["items"]
            client.post("/ui/login", data={"key": keys["search"]})
            form = client.get("/ui/search").text
            csrf = re.search(r'name="csrf" value="([^"]+)"', form).group(1)
            page = client.post(
                "/ui/search", data={"csrf": csrf}, files=[("image", (photo.name, photo.read_bytes(), "image/jpeg"))]
            ).text
    assert answer.status_code == 200, answer.text
    faces = answer.json()["results"][0]["faces"]
    assert sorted((f["decision"], f["reason"] is None) for f in faces) == [("match", True), ("not_searched", False)]
    assert 'identity_search_faces_total{decision="not_searched"} 1' in metrics
    assert 'identity_search_faces_total{decision="unknown"} 0' in metrics
    assert 'identity_search_faces_total{decision="match"} 1' in metrics
    assert [(s["faces"], s["not_searched"], s["decision"]) for s in logged] == [(2, 1, "match")]
    assert re.search(r'<span class="not_searched">not_searched</span>', page)
    assert re.search(r'<p class="not-searched">\d+\.\d px between the eyes, below the 60 px search minimum', page)


@pytest.mark.parametrize("value", ["-1", "many"])
def test_the_search_minimum_is_validated(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match="IDENTITY_FACES__MIN_SEARCH_IOD_PX"):
        Settings.load(env={"IDENTITY_DATA_DIR": str(tmp_path), "IDENTITY_FACES__MIN_SEARCH_IOD_PX": value})
    assert Settings.load(env={"IDENTITY_DATA_DIR": str(tmp_path)}).faces.min_search_iod_px == 12.0


def test_eval_counts_a_probe_too_small_to_search_as_a_failure_to_acquire(
    capsys, clean_env, copy_labelled, tmp_path: Path, monkeypatch
) -> None:
    labelled = copy_labelled(tmp_path / "labelled", ["Al_Gore", "Aaron_Peirsol", "Alejandro_Toledo", "Hans_Blix"], 3)
    monkeypatch.setenv("IDENTITY_FACES__MIN_SEARCH_IOD_PX", "1000")  # no lfw-dev face is that large
    code, out, err = run_cli(capsys, "eval", str(labelled), "--json", "--workers", "1")
    assert code == 0, err
    report = json.loads(out)
    assert report["failed_to_acquire"] == report["probes"] > 0 and report["rank1"] == 0
