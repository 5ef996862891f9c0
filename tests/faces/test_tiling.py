"""Tile plans bound what one detector call sees, cover the photo, and merge what two tiles both saw."""

from __future__ import annotations

import numpy as np
import pytest

from identity.faces.tiling import detect_tiled, merge, plan_tiles, working_scale
from identity.faces.types import Detection, frozen_array

MAX_TILE = 4_000_000


def _detection(box: tuple[float, float, float, float], score: float) -> Detection:
    x1, y1, x2, y2 = box
    landmarks = [
        [x1 + (x2 - x1) * fx, y1 + (y2 - y1) * fy]
        for fx, fy in ((0.3, 0.4), (0.7, 0.4), (0.5, 0.6), (0.35, 0.8), (0.65, 0.8))
    ]
    return Detection(box, frozen_array(landmarks, np.float32), score)


def test_the_scale_shrinks_only_as_far_as_the_smallest_wanted_face_allows() -> None:
    assert working_scale(60_000_000, 40, 20, MAX_TILE) == 0.5
    assert working_scale(60_000_000, 10, 20, MAX_TILE) == 1.0  # never enlarged
    assert working_scale(1_000_000, 40, 20, MAX_TILE) == 1.0  # a photo that fits one tile is never shrunk
    assert working_scale(16_000_000, 40, 20, MAX_TILE) == 0.5  # shrunk to one tile, no further


@pytest.mark.parametrize(
    "size, scale", [((4032, 3024), 1.0), ((4032, 3024), 0.5), ((9000, 6750), 1.0), ((800, 600), 1.0)]
)
def test_tiles_cover_the_photo_and_each_fits_the_tile_budget(size: tuple[int, int], scale: float) -> None:
    width, height = size
    plan = plan_tiles(width, height, scale, MAX_TILE)
    covered = np.zeros((-(-height // 8), -(-width // 8)), dtype=bool)  # 8x8 cells
    for x1, y1, x2, y2 in plan.tiles:
        assert (x2 - x1) * (y2 - y1) * scale**2 <= MAX_TILE
        covered[y1 // 8 : -(-y2 // 8), x1 // 8 : -(-x2 // 8)] = True
    assert covered.all()
    if len(plan.tiles) > 1:
        assert plan.coarse_scale is not None and width * height * plan.coarse_scale**2 <= MAX_TILE * 1.001
    else:
        assert plan.coarse_scale is None


def test_nms_keeps_the_best_of_overlapping_boxes() -> None:
    kept = merge(
        [_detection((0, 0, 100, 100), 0.8), _detection((5, 5, 105, 105), 0.9), _detection((300, 0, 400, 100), 0.7)]
    )
    assert [d.score for d in kept] == [0.9, 0.7]


def test_detections_come_back_in_the_photos_pixels() -> None:
    # A "detector" that finds the one bright square of whatever array it is given.
    def bright_square(array: np.ndarray) -> list[Detection]:
        ys, xs = np.nonzero(array[:, :, 0] > 128)
        return [_detection((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1), 0.9)] if len(xs) else []

    photo = np.zeros((3024, 4032, 3), dtype=np.uint8)
    photo[1000:1100, 3000:3100] = 255
    [found] = detect_tiled(photo, bright_square, min_face_px=40, native_min_face_px=20, max_tile_pixels=MAX_TILE)
    assert np.allclose(found.bbox, (3000, 1000, 3100, 1100), atol=2)
    assert np.allclose(found.landmarks[0], (3030, 1040), atol=2)
