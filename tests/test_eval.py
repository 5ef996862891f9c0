"""`identity eval` and `identity calibrate` on a small labelled folder cut from lfw-dev."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from identity_cli.main import main

PEOPLE = ["Al_Gore", "Aaron_Peirsol", "Alejandro_Toledo", "Andre_Agassi", "Hans_Blix", "Vicente_Fox",
          "Aaron_Eckhart", "AJ_Cook"]
REQUIRED = {"rank1", "rank5", "rank10", "probes", "gallery_persons", "failed_to_acquire", "tar_at_far", "eer",
            "fnir_at_fpir", "threshold_at_far", "model"}


@pytest.fixture
def labelled(tmp_path: Path, copy_labelled) -> Path:
    root = copy_labelled(tmp_path / "labelled", PEOPLE, 4)
    (root / "AJ_Cook" / "zz_notes.txt").write_text("not a photo")
    return root


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_eval_prints_the_documented_object_and_reuses_its_cache(capsys, clean_env, labelled, tmp_path) -> None:
    started = time.perf_counter()
    code, out, err = run(capsys, "eval", str(labelled), "--json", "--workers", "1", "--out", str(tmp_path / "report"))
    first = time.perf_counter() - started
    assert code == 0, err
    report = json.loads(out)
    assert REQUIRED <= set(report)
    assert report["gallery_persons"] == len(PEOPLE)
    assert report["probes"] == sum(min(4, n) - 1 for n in (4, 4, 4, 4, 4, 4, 1, 2))  # AJ_Cook: 1 photo + a text file
    assert report["unreadable_images"] == 1
    assert report["rank1"] >= 0.8 and report["rank10"] >= report["rank1"]
    assert report["eer"] < 0.1
    for name in ("cmc.png", "roc.png", "scores.png", "summary.html"):
        assert (tmp_path / "report" / name).stat().st_size > 1000
    started = time.perf_counter()
    code, out, _ = run(capsys, "eval", str(labelled), "--json", "--workers", "1")
    assert code == 0 and json.loads(out)["rank1"] == report["rank1"]
    assert time.perf_counter() - started < first  # analyses came from the cache


@pytest.mark.parametrize("layout, message", [
    ({}, "no labelled images"),
    ({"OnlyOne": ["a.jpg"]}, "only one person"),
    ({"A": ["x.txt"], "B": ["y.txt"]}, "fewer than two persons"),
])
def test_eval_bad_folders_are_clear_errors(capsys, clean_env, tmp_path, layout, message) -> None:
    root = tmp_path / "bad"
    root.mkdir()
    for person, files in layout.items():
        (root / person).mkdir()
        for name in files:
            (root / person / name).write_text("not an image")
    code, _, err = run(capsys, "eval", str(root), "--workers", "1")
    assert code == 1 and message in err and "Traceback" not in err


def test_calibrate_changes_what_search_decides(capsys, clean_env, labelled, lfw_dir) -> None:
    gallery = labelled.parent / "gallery" / "Al_Gore"
    gallery.mkdir(parents=True)
    shutil.copy(sorted((lfw_dir / "Al_Gore").iterdir())[0], gallery)
    assert run(capsys, "enroll", str(gallery.parent), "--workers", "1")[0] == 0
    probe = str(sorted((lfw_dir / "Al_Gore").iterdir())[5])
    code, out, _ = run(capsys, "search", probe, "--json")
    before = json.loads(out)["results"][0]
    assert before["threshold_source"].startswith("pack default")
    code, out, err = run(capsys, "calibrate", str(labelled), "--far", "0.01", "--workers", "1", "--json")
    assert code == 0, err
    calibrated = json.loads(out)
    code, out, _ = run(capsys, "search", probe, "--json")
    after = json.loads(out)["results"][0]
    assert after["threshold"] == pytest.approx(calibrated["threshold"])
    assert after["threshold_source"].startswith("calibrated at FAR 0.01")
    code, out, _ = run(capsys, "models", "show", "--json")
    assert json.loads(out)["threshold"] == pytest.approx(calibrated["threshold"])
    assert run(capsys, "calibrate", str(labelled), "--far", "0.00001", "--workers", "1")[0] == 1  # too few pairs
