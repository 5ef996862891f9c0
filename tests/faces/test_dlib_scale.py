"""The bundled HOG pack on modern photo sizes and in crowds: a face of IDENTITY_FACES__MIN_FACE_PX is found
in a 12 MP photo, a 60 MP photo costs seconds, not minutes, and small faces beside findable ones get the
harder pass."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from identity.config import FaceSettings, Settings
from identity.faces import build_pack, load_image
from identity.faces.dlib_models import MAX_SCAN_PIXELS, detection_scale

PHONE = (3024, 4032)  # a 12 MP phone photo, landscape (height, width)
PLACED = ("Al_Gore", "Aaron_Peirsol", "Alejandro_Toledo", "Aaron_Eckhart")


def group_photo(
    lfw: Path, face_px: int | tuple[int, ...], shape: tuple[int, int] = PHONE
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """lfw-dev photos scaled so their face (~110 px of the 250 px original) is face_px high (one size, or
    one per person), placed in a 2x2 grid on a noisy grey frame; returns the photo and each face's centre."""
    rng = np.random.default_rng(3)
    photo = rng.integers(90, 140, (*shape, 3), dtype=np.uint8)
    sizes = face_px if isinstance(face_px, tuple) else (face_px,) * len(PLACED)
    centres = []
    for index, (person, size) in enumerate(zip(PLACED, sizes)):
        rgb = load_image(sorted((lfw / person).iterdir())[0]).rgb
        scale = size / 110
        tile = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        y, x = shape[0] // 5 + shape[0] * 3 // 10 * (index // 2), shape[1] // 6 + shape[1] * 4 // 9 * (index % 2)
        photo[y : y + tile.shape[0], x : x + tile.shape[1]] = tile
        centres.append((x + tile.shape[1] // 2, y + tile.shape[0] // 2))
    return photo, centres


def found(detections, centres: list[tuple[int, int]]) -> int:
    return sum(any(d.bbox[0] < cx < d.bbox[2] and d.bbox[1] < cy < d.bbox[3] for d in detections) for cx, cy in centres)


def test_faces_of_70_px_are_found_in_a_12_mp_photo(lfw: Path) -> None:
    """Shrunk to 1280 px before detection (as before), these faces were 22 px: HOG found 2% of them."""
    photo, centres = group_photo(lfw, 70)
    detections, stage = build_pack(None, Settings(faces=FaceSettings())).detector.detect(photo)
    assert found(detections, centres) == len(centres), stage
    assert all(abs((d.bbox[3] - d.bbox[1]) - 70) < 30 for d in detections)  # boxes in full-size pixels


def test_min_face_px_sets_what_is_looked_for(lfw: Path) -> None:
    photo, centres = group_photo(lfw, 70)
    coarse = build_pack(None, Settings(faces=FaceSettings(min_face_px=140))).detector
    assert found(coarse.detect(photo)[0], centres) < len(centres)


def test_a_60_mp_photo_costs_seconds_not_minutes(lfw: Path) -> None:
    photo, centres = group_photo(lfw, 200, (6708, 8944))
    detector = build_pack(None, Settings(faces=FaceSettings())).detector
    detector.load()
    started = time.process_time()
    detections, _ = detector.detect(photo)
    assert time.process_time() - started < 20  # ~3 s on one core; 8x that without the scan budget
    assert found(detections, centres) == len(centres)


def test_faces_too_small_for_the_first_pass_beside_small_ones_get_the_harder_pass(lfw: Path) -> None:
    """A group photo: HOG at upsample 1 finds the 46 px faces, and its smallest find says the 28 px ones
    (below its reach) are likely there; before, the harder pass ran only on photos with no face found."""
    photo, centres = group_photo(lfw, (46, 28, 46, 28), (600, 800))
    detections, stage = build_pack(None, Settings(faces=FaceSettings())).detector.detect(photo)
    assert stage == "hog/up1" and found(detections, centres) == 4
    assert sorted(d.stage or stage for d in detections) == ["hog/up1", "hog/up1", "hog/up2", "hog/up2"]


@pytest.mark.parametrize(
    ("shape", "upsample"), [((250, 250), 1), ((1024, 1280), 1), (PHONE, 1), ((6708, 8944), 1), (PHONE, 0)]
)
def test_detection_scale_keeps_small_photos_whole_and_large_ones_within_the_scan_budget(shape, upsample) -> None:
    scale = detection_scale(*shape, 64, upsample)
    if max(shape) <= 1280:
        assert scale == 1.0
    else:
        assert shape[0] * shape[1] * (scale * 2**upsample) ** 2 <= MAX_SCAN_PIXELS * 1.0001
        assert scale >= 1280 / max(shape)


def test_a_photo_too_large_for_the_scan_budget_says_which_faces_were_looked_for(
    tmp_path: Path, clean_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Above ~15 MP the budget raises the smallest face HOG looks for; the user is told, per photo."""
    import json

    from identity_cli.main import main

    detector = build_pack(None, Settings(faces=FaceSettings())).detector
    assert detector.scan_limit_px(250, 250) is None and detector.scan_limit_px(*PHONE) is None
    assert 120 < detector.scan_limit_px(6708, 8944) < 130  # 60 MP: faces from ~126 px
    photo = tmp_path / "wide.png"
    cv2.imwrite(str(photo), np.full((3872, 5164, 3), 128, np.uint8))  # 20 MP, no face
    main(["faces", "detect", str(photo), "--json"])
    out, err = capsys.readouterr()
    [report] = json.loads(out)
    assert 70 < report["scan_limited_px"] < 76 and report["faces"] == []
    assert "only faces from 73 px tall were looked for" in " ".join(err.split())
