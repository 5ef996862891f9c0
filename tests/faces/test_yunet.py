"""The YuNet pack on real photos: landmarks in our order, small faces in a 12 MP photo, tile seams, the face cap.

Needs the shared YuNet file (skips without it); it is installed into a temporary data
dir as `identity models install yunet` would, by copying it under its pinned name.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from identity.config import FaceSettings, Settings
from identity.faces import build_pipeline, load_image
from identity.faces.installed import YUNET, detectors_dir
from identity.faces.pipeline import FacePipeline
from identity.faces.types import box_iou
from identity.faces.yunet import DEFAULT_MIN_FACE_PX as YUNET_MIN_FACE_PX
from identity.faces.yunet import YunetDetector

SHARED_YUNET = Path(__file__).resolve().parents[3] / "shared" / "models" / YUNET.filename
PHONE_SIZE = (4032, 3024)  # a 12 MP phone photo

pytestmark = pytest.mark.skipif(not SHARED_YUNET.is_file(), reason=f"YuNet model not found at {SHARED_YUNET}")


@pytest.fixture(scope="module")
def yunet_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("data")
    detectors_dir(data_dir).mkdir()
    shutil.copyfile(SHARED_YUNET, detectors_dir(data_dir) / YUNET.filename)
    return data_dir


@pytest.fixture(scope="module")
def yunet_pipeline(yunet_dir: Path) -> FacePipeline:
    return build_pipeline(Settings(data_dir=yunet_dir, model="yunet-dlib-resnet", faces=FaceSettings()))


def _detector(yunet_dir: Path, min_face_px: float) -> YunetDetector:
    return YunetDetector(detectors_dir(yunet_dir) / YUNET.filename, FaceSettings().yunet_min_score, min_face_px)


def _paste_faces(
    lfw: Path, heights: list[int], centres: list[tuple[int, int]]
) -> tuple[np.ndarray, list[tuple[float, ...]]]:
    """A grey 12 MP photo with lfw-dev faces pasted at the given face heights and centres, and their true boxes.

    An lfw-dev photo is 250x250 with its face centred; its face box is ~100 px tall (dlib's HOG box).
    """
    canvas = np.full((PHONE_SIZE[1], PHONE_SIZE[0], 3), 128, dtype=np.uint8)
    people = sorted(p for p in lfw.iterdir() if p.is_dir())[: len(heights)]
    truth = []
    for person, height, (cx, cy) in zip(people, heights, centres):
        photo = (
            Image.open(sorted(person.iterdir())[0]).convert("RGB").crop((50, 50, 200, 200))
        )  # 150 px around the face
        side = round(150 * height / 100)
        patch = np.asarray(photo.resize((side, side), Image.Resampling.LANCZOS))
        x1, y1 = cx - side // 2, cy - side // 2
        canvas[y1 : y1 + side, x1 : x1 + side] = patch
        truth.append((cx - height / 2, cy - height / 2, cx + height / 2, cy + height / 2))
    return canvas, truth


def test_t1_faces_have_landmarks_in_our_order_and_dlib_shapes(yunet_pipeline: FacePipeline, t1_path: Path) -> None:
    [result] = yunet_pipeline.process([load_image(t1_path)])
    assert (len(result.faces), result.detector, result.capped) == (6, "yunet", 0)
    for face in result.faces:
        left_eye, right_eye, nose, mouth_left, mouth_right = face.landmarks
        assert left_eye[0] < right_eye[0] and mouth_left[0] < mouth_right[0]
        assert left_eye[1] < nose[1] < mouth_left[1]
        assert face.detector == "yunet" and face.embedding.shape == (128,)
    assert yunet_pipeline.model_id == "yunet-dlib-resnet@1"


def test_small_faces_in_a_12mp_photo_are_all_found(yunet_dir: Path, lfw: Path) -> None:
    heights = [65, 70, 75, 80, 85, 90, 68, 88]
    centres = [(400 + 450 * i, 700 + 1400 * (i % 2)) for i in range(len(heights))]
    photo, truth = _paste_faces(lfw, heights, centres)
    found, stage = _detector(yunet_dir, YUNET_MIN_FACE_PX).detect(photo)
    assert stage == "yunet"
    assert all(any(box_iou(d.bbox, box) >= 0.4 for d in found) for box in truth)


def test_a_face_on_a_tile_seam_is_found_once(yunet_dir: Path, lfw: Path) -> None:
    # At min face 20 px the 12 MP photo is detected at full size in 2000 px tiles: the first tile ends at x=2000.
    photo, [box] = _paste_faces(lfw, [90], [(2000, 1000)])
    found, _ = _detector(yunet_dir, 20).detect(photo)
    near = [d for d in found if box_iou(d.bbox, box) > 0]
    assert len(near) == 1 and box_iou(near[0].bbox, box) >= 0.4


def test_the_face_cap_keeps_the_best_scored_and_counts_the_rest(yunet_pipeline: FacePipeline, t1_path: Path) -> None:
    image = load_image(t1_path)
    [every] = yunet_pipeline.process([image])
    capped = FacePipeline(yunet_pipeline.pack, dataclasses.replace(yunet_pipeline.faces, max_faces=4))
    [kept] = capped.process([image])
    best = sorted((f.det_score for f in every.faces), reverse=True)[:4]
    assert sorted((f.det_score for f in kept.faces), reverse=True) == best
    assert kept.capped == 2


def test_faces_detect_and_search_say_when_the_cap_dropped_faces(
    capsys: pytest.CaptureFixture[str], clean_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, t1_path: Path
) -> None:
    from identity_cli.main import main

    install = detectors_dir(Path(clean_env["IDENTITY_DATA_DIR"]))
    install.mkdir(parents=True)
    shutil.copyfile(SHARED_YUNET, install / YUNET.filename)
    monkeypatch.setenv("IDENTITY_MODEL", "yunet-dlib-resnet")
    monkeypatch.setenv("IDENTITY_FACES__MAX_FACES", "4")
    assert main(["faces", "detect", str(t1_path), "--json"]) == 0
    out, err = capsys.readouterr()
    [report] = json.loads(out)
    assert (report["model"], report["detector"], report["capped"], len(report["faces"])) == (
        "yunet-dlib-resnet@1",
        "yunet",
        2,
        4,
    )
    assert "2 more faces found than faces.max_faces" in " ".join(err.split())
    assert main(["init"]) == 0
    capsys.readouterr()
    assert main(["search", str(t1_path), "--json"]) == 0
    [result] = json.loads(capsys.readouterr().out)["results"]
    assert len(result["faces"]) == 4
    assert any("2 more faces found than faces.max_faces" in warning for warning in result["warnings"])
