"""Detection on large photos with bounded memory: a working scale, overlapping tiles, one merge.

Generic over detectors: it takes a "detect on this array" callable that answers
Detections in that array's pixels, and hands back Detections in the original photo's
pixels (boxes and landmarks; `native` is left to the caller, who knows the full image).

- The working scale shrinks the photo as far as its smallest wanted face allows
  (`min_face_px`, in original pixels, becomes the detector's own reliable minimum), but
  never below one tile's size: shrinking further would save no memory, only lose faces.
- A photo whose working size exceeds `max_tile_pixels` is cut into overlapping tiles of at
  most that size, so memory grows with the tile, not the photo. Any face no larger than
  the overlap lies whole inside some tile; a face cut by an inner tile edge is dropped
  from that tile, as the neighbouring tile holds it whole.
- Faces larger than the overlap are found by one coarse pass over the whole frame,
  shrunk to one tile's size.
- Boxes found twice (tile seams, coarse and fine passes) are merged by NMS.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import cv2
import numpy as np

from identity.faces.types import Detection, box_iou, cut_by_edge, frozen_array

DetectFn = Callable[[np.ndarray], list[Detection]]

MERGE_IOU = 0.3  # two boxes overlapping this much are one face; the higher score stands


@dataclass(frozen=True)
class TilePlan:
    scale: float  # working pixels per original pixel (<= 1)
    tiles: tuple[tuple[int, int, int, int], ...]  # x1, y1, x2, y2 in original pixels
    coarse_scale: float | None  # the whole-frame pass's scale, or None when the photo is one tile


def working_scale(pixels: int, min_face_px: float, native_min_face_px: float, max_tile_pixels: int) -> float:
    """How far a photo may shrink: until a face of min_face_px reaches the detector's reliable minimum, or it fits one
    tile."""
    keeps_min_face = native_min_face_px / max(min_face_px, 1.0)
    fits_one_tile = math.sqrt(max_tile_pixels / max(pixels, 1))
    return min(1.0, max(keeps_min_face, fits_one_tile))


def plan_tiles(width: int, height: int, scale: float, max_tile_pixels: int) -> TilePlan:
    """The tiles that cover a photo, each at most `max_tile_pixels` once shrunk by `scale`."""
    if width * height * scale * scale <= max_tile_pixels * 1.001:  # rounding of a scale chosen to fit one tile
        return TilePlan(scale, ((0, 0, width, height),), None)
    side = int(math.sqrt(max_tile_pixels) / scale)  # in original pixels
    overlap = side // 4
    xs, ys = _starts(width, side, overlap), _starts(height, side, overlap)
    tiles = tuple((x, y, min(x + side, width), min(y + side, height)) for y in ys for x in xs)
    return TilePlan(scale, tiles, math.sqrt(max_tile_pixels / (width * height)))


def detect_tiled(
    rgb: np.ndarray, detect: DetectFn, min_face_px: float, native_min_face_px: float, max_tile_pixels: int
) -> list[Detection]:
    """Every face of an RGB photo, in its own pixels, best score first, detected at most one tile at a time."""
    height, width = rgb.shape[:2]
    scale = working_scale(width * height, min_face_px, native_min_face_px, max_tile_pixels)
    plan = plan_tiles(width, height, scale, max_tile_pixels)
    found: list[Detection] = []
    if plan.coarse_scale is not None:
        found += _detect_region(rgb, detect, (0, 0, width, height), plan.coarse_scale, inner=(False,) * 4)
    for x1, y1, x2, y2 in plan.tiles:
        inner = (x1 > 0, y1 > 0, x2 < width, y2 < height)
        found += _detect_region(rgb, detect, (x1, y1, x2, y2), plan.scale, inner)
    return merge(found)


def merge(detections: list[Detection], iou: float = MERGE_IOU) -> list[Detection]:
    """Non-maximum suppression: of boxes overlapping at least `iou`, the best-scored one, best first."""
    kept: list[Detection] = []
    for detection in sorted(detections, key=lambda d: d.score, reverse=True):
        if all(box_iou(detection.bbox, k.bbox) < iou for k in kept):
            kept.append(detection)
    return kept


def _starts(length: int, side: int, overlap: int) -> list[int]:
    """Tile origins along one axis: steps of at most side - overlap, the last tile flush with the end."""
    if length <= side:
        return [0]
    count = math.ceil((length - overlap) / (side - overlap))
    step = (length - side) / (count - 1)
    return [round(i * step) for i in range(count)]


def _detect_region(
    rgb: np.ndarray,
    detect: DetectFn,
    box: tuple[int, int, int, int],
    scale: float,
    inner: tuple[bool, bool, bool, bool],
) -> list[Detection]:
    """Detections in one region shrunk by `scale`, mapped back to the photo; those cut by an inner edge dropped."""
    x1, y1, x2, y2 = box
    region = rgb[y1:y2, x1:x2]
    if scale < 1.0:
        size = (max(1, round((x2 - x1) * scale)), max(1, round((y2 - y1) * scale)))
        region = cv2.resize(region, size, interpolation=cv2.INTER_AREA)  # area averaging: no aliasing
    scale_x, scale_y = region.shape[1] / (x2 - x1), region.shape[0] / (y2 - y1)
    return [
        _to_original(d, scale_x, scale_y, x1, y1)
        for d in detect(region)
        if not cut_by_edge(d.bbox, region.shape[1], region.shape[0], inner)
    ]


def _to_original(detection: Detection, scale_x: float, scale_y: float, x_offset: int, y_offset: int) -> Detection:
    x1, y1, x2, y2 = detection.bbox
    bbox = (x1 / scale_x + x_offset, y1 / scale_y + y_offset, x2 / scale_x + x_offset, y2 / scale_y + y_offset)
    landmarks = np.asarray(detection.landmarks, dtype=np.float32) / (scale_x, scale_y) + (x_offset, y_offset)
    return replace(detection, bbox=bbox, landmarks=frozen_array(landmarks, np.float32), native=None)
