"""The bundled HOG pack on modern photo sizes: a face of IDENTITY_FACES__MIN_FACE_PX is found in a 12 MP
photo, and a 60 MP photo costs seconds, not minutes."""

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


def group_photo(lfw: Path, face_px: int, shape: tuple[int, int] = PHONE) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """lfw-dev photos scaled so their face (~110 px of the 250 px original) is face_px high, placed on a
    noisy grey frame; returns the photo and each face's centre."""
    rng = np.random.default_rng(3)
    photo = rng.integers(90, 140, (*shape, 3), dtype=np.uint8)
    centres = []
    for index, person in enumerate(PLACED):
        rgb = load_image(sorted((lfw / person).iterdir())[0]).rgb
        scale = face_px / 110
        tile = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        y, x = 600 + 900 * (index // 2), 700 + 1800 * (index % 2)
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


@pytest.mark.parametrize(("shape", "upsample"), [((250, 250), 1), ((1024, 1280), 1), (PHONE, 1), ((6708, 8944), 1), (PHONE, 0)])
def test_detection_scale_keeps_small_photos_whole_and_large_ones_within_the_scan_budget(shape, upsample) -> None:
    scale = detection_scale(*shape, 64, upsample)
    if max(shape) <= 1280:
        assert scale == 1.0
    else:
        assert shape[0] * shape[1] * (scale * 2**upsample) ** 2 <= MAX_SCAN_PIXELS * 1.0001
        assert scale >= 1280 / max(shape)
