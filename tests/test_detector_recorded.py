"""Each stored face and each search-log face records the detector stage that found it; older rows read unknown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import update

from identity.app.core import App
from identity.config import Settings
from identity.store.sql.db import transaction
from identity.store.sql.tables import Face, SearchHit
from identity_cli.main import main


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    code = main([*args, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def test_faces_and_searches_record_their_detector(capsys, clean_env, monkeypatch, database_url, lfw_dir) -> None:
    monkeypatch.setenv("IDENTITY_DATABASE_URL", database_url)
    photo = str(sorted((lfw_dir / "Al_Gore").iterdir())[0])
    [detected] = run_json(capsys, "faces", "detect", photo)
    stage = detected["faces"][0]["detector"]
    assert stage and stage == detected["detector"]  # e.g. "hog/up1"

    run_json(capsys, "enroll", "--person", "Al_Gore", photo)
    [searched] = run_json(capsys, "search", photo)["results"]
    assert [f["detector"] for f in searched["faces"]] == [stage]
    audit = run_json(capsys, "audit", "Al_Gore")
    assert [f["detector"] for f in audit["faces"]] == [stage]
    assert [s["face_detector"] for s in audit["searches"]] == [stage]

    with App.open(Settings.load()) as app, transaction(app.sessions) as session:  # rows from before revision 0011
        session.execute(update(Face).values(detector=None))
        session.execute(update(SearchHit).values(face_detector=None))
    audit = run_json(capsys, "audit", "Al_Gore")
    assert [f["detector"] for f in audit["faces"]] == ["unknown"]
    assert [s["face_detector"] for s in audit["searches"]] == ["unknown"]


def test_faces_detect_says_which_detector_runs_and_why(capsys, clean_env, lfw_dir: Path) -> None:
    from identity.faces.packs import default_model, resolve

    settings = Settings.load()
    model, reason = default_model(settings)
    photo = str(sorted((lfw_dir / "Al_Gore").iterdir())[0])
    [detected] = run_json(capsys, "faces", "detect", photo)
    assert detected["pack_detector"] == resolve(model).info.detector
    assert detected["model_source"] == f"the default: the store has no active model yet ({reason})"
