"""`identity eval` and `identity calibrate` on a small labelled folder cut from lfw-dev."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import pytest

from identity.app.core import App
from identity.serialize import to_json
from identity_cli.main import main

PEOPLE = [
    "Al_Gore",
    "Aaron_Peirsol",
    "Alejandro_Toledo",
    "Andre_Agassi",
    "Hans_Blix",
    "Vicente_Fox",
    "Aaron_Eckhart",
    "AJ_Cook",
]
REQUIRED = {
    "rank1",
    "rank5",
    "rank10",
    "probes",
    "gallery_persons",
    "failed_to_acquire",
    "tar_at_far",
    "eer",
    "fnir_at_fpir",
    "threshold_at_far",
    "model",
}


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


@pytest.mark.parametrize(
    "layout, message",
    [
        ({}, "no labelled images"),
        ({"OnlyOne": ["a.jpg"]}, "only one person"),
        ({"A": ["x.txt"], "B": ["y.txt"]}, "fewer than two persons"),
    ],
)
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


def test_gallery_images_split_makes_persons_with_few_photos_distractors_only(tmp_path, lfw_dir) -> None:
    from identity.evaluation.protocol import scan_labelled

    root = tmp_path / "split"
    for person, count in (("Al_Gore", 4), ("Hans_Blix", 3), ("Vicente_Fox", 2)):
        (root / person).mkdir(parents=True)
        for image in sorted((lfw_dir / person).iterdir())[:count]:
            shutil.copy(image, root / person / image.name)
    folder = scan_labelled(root)
    gallery, probes = folder.split(2)
    images = folder.images
    assert gallery == [
        ("Al_Gore", images["Al_Gore"][0]),
        ("Al_Gore", images["Al_Gore"][1]),
        ("Hans_Blix", images["Hans_Blix"][0]),
        ("Hans_Blix", images["Hans_Blix"][1]),
        ("Vicente_Fox", images["Vicente_Fox"][0]),
    ]  # 2 photos, not 3: a distractor only
    assert probes == [
        ("Al_Gore", images["Al_Gore"][2]),
        ("Al_Gore", images["Al_Gore"][3]),
        ("Hans_Blix", images["Hans_Blix"][2]),
    ]
    one_gallery, one_probes = folder.split(1)  # the default protocol, as before
    assert one_gallery == [(p, images[p][0]) for p in folder.persons]
    assert one_probes == [(p, path) for p in folder.persons for path in images[p][1:]]


def test_eval_gallery_images_reports_both_fnir_rules(capsys, clean_env, tmp_path, copy_labelled) -> None:
    root = copy_labelled(tmp_path / "labelled", PEOPLE[:3], 3)
    copy_labelled(root, ["Hans_Blix"], 2)
    code, out, err = run(capsys, "eval", str(root), "--json", "--workers", "1", "--gallery-images", "2")
    assert code == 0, err
    report = json.loads(out)
    assert REQUIRED <= set(report)
    assert (report["gallery_persons"], report["gallery_photos"], report["probes"]) == (4, 7, 3)
    assert report["gallery_images_per_person"] == 2
    assert report["rank1"] == 1.0
    # Four persons are too few for a cohort: the normalized rule falls back to raw, so both tables agree.
    assert report["fnir_at_fpir_raw"] == report["fnir_at_fpir"] and set(report["fnir_at_fpir"]) == {"0.01", "0.001"}


def people_with(lfw_dir: Path, count: int, photos: int) -> list[str]:
    """The first `count` lfw-dev persons (by name) with at least `photos` photos."""
    found = [p.name for p in sorted(lfw_dir.iterdir()) if p.is_dir() and len(list(p.iterdir())) >= photos]
    return found[:count]


def test_calibrate_fpir_is_recorded_and_search_warns_when_the_gallery_outgrows_it(
    capsys, clean_env, tmp_path, copy_labelled, lfw_dir
) -> None:
    calibration = people_with(lfw_dir, 12, 2)  # the normalized decision needs a cohort: 11 persons at least
    labelled = copy_labelled(tmp_path / "labelled", calibration, 2)  # 12 non-mated searches
    code, out, err = run(capsys, "calibrate", str(labelled), "--fpir", "0.2", "--workers", "1", "--json")
    assert code == 0, err
    calibrated = json.loads(out)
    assert (calibrated["fpir"], calibrated["gallery_persons"], calibrated["non_mated_searches"]) == (0.2, 12, 12)
    code, out, _ = run(capsys, "models", "show", "--json")
    shown = json.loads(out)
    assert shown["threshold"] == pytest.approx(calibrated["threshold"])
    assert (shown["threshold_fpir"], shown["threshold_gallery_persons"], shown["threshold_far"]) == (0.2, 12, None)

    gallery = copy_labelled(tmp_path / "gallery", calibration, 1)
    assert run(capsys, "enroll", str(gallery), "--workers", "1")[0] == 0
    probe = str(sorted((lfw_dir / calibration[0]).iterdir())[1])
    code, out, _ = run(capsys, "search", probe, "--json")
    result = json.loads(out)["results"][0]
    assert result["threshold"] == pytest.approx(calibrated["threshold"])
    assert (result["threshold_fpir"], result["threshold_gallery_persons"]) == (0.2, 12)
    assert result["threshold_source"].startswith("calibrated at FPIR 0.2")
    assert result["decision_rule"] == "normalized"
    face = result["faces"][0]
    assert face["candidates"][0]["person"]["external_id"] == calibration[0]
    assert face["decision_score"] > face["candidates"][0]["score"]  # the top-1 stands out from its cohort
    assert not any("has grown" in w for w in result["warnings"])

    more = copy_labelled(tmp_path / "more", [p.name for p in sorted(lfw_dir.iterdir())][:25], 1)  # > 2 x 12
    assert run(capsys, "enroll", str(more), "--workers", "1")[0] == 0
    code, out, _ = run(capsys, "search", probe, "--json")
    [warning] = [w for w in json.loads(out)["results"][0]["warnings"] if "has grown" in w]
    assert "from 12 persons" in warning and int(re.search(r"to (\d+)", warning).group(1)) > 24

    code, out, err = run(capsys, "calibrate", str(labelled), "--far", "0.05", "--workers", "1", "--json")
    assert code == 0, err  # a FAR calibration replaces the FPIR one, and with it the rule
    shown = json.loads(run(capsys, "models", "show", "--json")[1])
    assert (shown["threshold_far"], shown["threshold_fpir"], shown["threshold_gallery_persons"]) == (0.05, None, None)
    assert json.loads(run(capsys, "search", probe, "--json")[1])["results"][0]["decision_rule"] == "raw"


def test_a_small_gallery_decides_on_the_raw_score_and_says_so(
    capsys, clean_env, tmp_path, copy_labelled, lfw_dir
) -> None:
    calibration = people_with(lfw_dir, 12, 2)
    labelled = copy_labelled(tmp_path / "labelled", calibration, 2)
    assert run(capsys, "calibrate", str(labelled), "--fpir", "0.2", "--workers", "1")[0] == 0
    gallery = copy_labelled(tmp_path / "gallery", calibration[:3], 1)
    assert run(capsys, "enroll", str(gallery), "--workers", "1")[0] == 0
    probe = str(sorted((lfw_dir / calibration[0]).iterdir())[1])
    result = json.loads(run(capsys, "search", probe, "--json")[1])["results"][0]
    assert result["decision_rule"] == "raw" and result["threshold_source"].startswith("pack default")
    assert any("too few for the normalized decision" in w for w in result["warnings"])
    assert result["faces"][0]["decision"] == "match"  # the same person, as before templates


@pytest.mark.parametrize(
    "args, message",
    [
        (["calibrate", "{root}", "--fpir", "0"], "strictly between 0 and 1"),
        (["calibrate", "{root}", "--fpir", "1"], "strictly between 0 and 1"),
        (["calibrate", "{root}", "--fpir", "nan"], "strictly between 0 and 1"),
        (["calibrate", "{root}", "--fpir", "0.01"], "2 non-mated searches cannot resolve FPIR 0.01; need at least 100"),
        (["calibrate", "{root}", "--fpir", "0.5"], "2 persons are too few to calibrate the normalized decision"),
        (["calibrate", "{root}", "--fpir", "0.1", "--far", "0.1"], "not both"),
        (["eval", "{root}", "--gallery-images", "0"], "at least 1 (got 0)"),
        (["eval", "{root}", "--gallery-images", "2"], "leaves no probes"),
    ],
)
def test_open_set_bad_input_is_a_one_line_error(capsys, clean_env, tmp_path, copy_labelled, args, message) -> None:
    root = copy_labelled(tmp_path / "small", PEOPLE[:2], 2)
    code, _, err = run(capsys, *[a.format(root=root) for a in args], "--workers", "1")
    assert code == 1 and message in err and "Traceback" not in err
    assert len([line for line in err.strip().splitlines() if "━" not in line]) == 1  # progress bars aside


def test_eval_and_calibrate_return_typed_results_python_callers_can_use(clean_env, labelled) -> None:
    from identity.config import Settings
    from identity.services.accuracy.evaluate import (
        EvalOptions,
        FarCalibration,
        ScoreCurves,
        Verification,
        calibrate,
        evaluate_folder,
    )

    with App.open(Settings.load()) as app:
        report = evaluate_folder(app, labelled, EvalOptions(workers=1))
    assert isinstance(report.curves, ScoreCurves)
    verification = report.figures.verification
    assert isinstance(verification, Verification)
    assert len(report.curves.genuine) == verification.genuine_pairs  # the plots' data, apart from the figures
    assert REQUIRED <= set(to_json(report)) and not any(key.startswith("_") for key in to_json(report))
    with App.open(Settings.load()) as app:
        result = calibrate(app, labelled, 0.1, workers=1)
    assert isinstance(result, FarCalibration) and result.far == 0.1
    assert list(to_json(result)) == [
        "model",
        "far",
        "threshold",
        "interval",
        "impostor_pairs",
        "previous_threshold",
        "source",
    ]  # the keys --json printed before
