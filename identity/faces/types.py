"""The values the face engine hands to its callers.

Landmarks everywhere are a float32 (5, 2) array of (x, y) pixel coordinates in the
order of the ArcFace template, as seen in the image (not from the subject's view):

    0: eye on the image's left      1: eye on the image's right
    2: nose tip
    3: mouth corner on the image's left   4: mouth corner on the image's right

Arrays inside these values are read-only so that a caller cannot change a result
another caller also holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

BBox = tuple[float, float, float, float]  # x1, y1, x2, y2 in image pixels


def frozen_array(values: Any, dtype: type) -> np.ndarray:
    """A read-only copy, so results cannot be edited behind their owner's back."""
    array: np.ndarray = np.array(values, dtype=dtype, copy=True)
    array.flags.writeable = False
    return array


@dataclass(frozen=True)
class LoadedImage:
    """A decoded image: 8-bit RGB pixels, upright (EXIF orientation applied)."""

    rgb: np.ndarray  # uint8, (height, width, 3), C-contiguous
    sha256: str  # hex digest of the file's bytes, as stored on disk
    path: str  # file path, or the name given to decode_image()

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])


@dataclass(frozen=True)
class Quality:
    """Measurements of one face and the gate's verdict on them."""

    det_score: float  # the detector's own score; scales differ between detectors
    iod_px: float  # inter-ocular distance in image pixels
    blur: float  # variance of the Laplacian of the 112x112 aligned grey crop
    yaw_deg: float  # estimated from landmarks; + when the nose points to the image's right
    roll_deg: float  # angle of the eye line; + when the image-right eye is lower
    rejections: tuple[str, ...] = ()  # reasons the gate refused the face; empty when ok

    @property
    def ok(self) -> bool:
        return not self.rejections


@dataclass(frozen=True)
class Detection:
    """A detector's output for one face, before alignment and embedding."""

    bbox: BBox
    landmarks: np.ndarray  # (5, 2) float32, the order documented above
    score: float
    native: Any = field(default=None, compare=False)  # the detector's own landmark object, for its aligner
    stage: str | None = None  # the detection stage that found this face, when it differs from the image's


EDGE_MARGIN_PX = 2  # a box this close to a frame's edge (or past it) was cut by that edge
ALL_EDGES = (True, True, True, True)


def cut_by_edge(
    bbox: Sequence[float], width: int, height: int, edges: tuple[bool, bool, bool, bool] = ALL_EDGES
) -> bool:
    """Whether a box runs off a width x height frame at one of `edges` (left, top, right, bottom)."""
    x1, y1, x2, y2 = bbox
    return (
        (edges[0] and x1 <= EDGE_MARGIN_PX)
        or (edges[1] and y1 <= EDGE_MARGIN_PX)
        or (edges[2] and x2 >= width - EDGE_MARGIN_PX)
        or (edges[3] and y2 >= height - EDGE_MARGIN_PX)
    )


SAME_FACE_IOU = 0.5  # a re-detected face stands for a stored one when their boxes overlap at least this much


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two [x1, y1, x2, y2] boxes."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def same_face(boxes: Sequence[Sequence[float]], stored: Sequence[float]) -> int | None:
    """Index of the box that stands for a stored face (best overlap, at least SAME_FACE_IOU), or None."""
    if not boxes:
        return None
    best = max(range(len(boxes)), key=lambda i: box_iou(boxes[i], stored))
    return best if box_iou(boxes[best], stored) >= SAME_FACE_IOU else None


def central_face(boxes: Sequence[Sequence[float]], width: int, height: int) -> int | None:
    """Index of the box whose centre is nearest the image centre (a labelled photo's subject), or None."""
    if not boxes:
        return None
    cx, cy = width / 2, height / 2
    return min(
        range(len(boxes)),
        key=lambda i: ((boxes[i][0] + boxes[i][2]) / 2 - cx) ** 2 + ((boxes[i][1] + boxes[i][3]) / 2 - cy) ** 2,
    )


@dataclass(frozen=True)
class DetectedFace:
    bbox: BBox
    landmarks: np.ndarray  # (5, 2) float32, the order documented above
    det_score: float
    quality: Quality
    embedding: np.ndarray  # float32 unit vector of the pack's dimension
    crop: np.ndarray  # the aligned RGB uint8 crop the recognizer saw
    detector: str = ""  # the detection stage that found this face, e.g. "hog/up1"; recorded with it

    @property
    def area(self) -> float:
        """Box area in pixels: how enrollment and search pick the main face of a photo."""
        x1, y1, x2, y2 = self.bbox
        return max(0.0, x2 - x1) * max(0.0, y2 - y1)


@dataclass(frozen=True)
class ImageFaces:
    """Every face found in one image (possibly none)."""

    path: str
    sha256: str
    width: int
    height: int
    faces: tuple[DetectedFace, ...]
    detector: str  # the detection stage that found the faces, e.g. "hog/up1", "mmod/up0", "scrfd"
    capped: int = 0  # faces found beyond faces.max_faces and dropped (the lowest scores)
    # The photo was too large to look for faces as small as wanted within the detector's time budget:
    # faces shorter than this (original pixels) may be missed. None: not limited.
    scan_limited_px: float | None = None


def scan_limit_warning(image: str, width: int, height: int, limit_px: float) -> str:
    """What a user is told when a photo was too large to look for faces as small as wanted."""
    return (
        f"{image}: at {width * height / 1e6:.0f} MP only faces from {limit_px:.0f} px tall were looked for (the "
        "detector's time budget); smaller ones may be missed: crop the photo, or use the yunet-dlib-resnet pack, "
        "whose tiles have no such limit"
    )
