"""dlib's models, with weights from the face_recognition_models package (works offline).

- DlibDetector: HOG (fast) or MMOD CNN boxes, then the 68-point shape predictor,
  which gives both dlib's chip alignment and the ArcFace-order landmarks (eye
  centres, nose tip, mouth corners).
- DlibChipAligner: dlib's 150x150 face chip, 0.25 padding, what the ResNet expects.
  On lfw-dev, chips from the 68-point shape verified better than chips from the
  5-point one (99.02% vs 98.92%, TAR@FAR=1e-3 95.5% vs 94.8%), so only it is used.
- DlibResnetRecognizer: dlib's ResNet face descriptor, 128-d, computed by the torch
  port of the network (same weights, 7x faster than dlib's own CPU code).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from identity.errors import ModelError
from identity.faces.base import Detector, Recognizer
from identity.faces.device import AUTO_DEVICE, Device, torch_runs_on
from identity.faces.types import Detection, frozen_array

logger = logging.getLogger(__name__)

HOG, CNN = "hog", "cnn"
# The scale a photo is detected at (landmarks always use full resolution). dlib's HOG and MMOD
# windows are 80 px, so at upsample u they find faces down to ~80 / 2**u px in the image they
# scan. A photo is scaled so that a face of `min_face_px` original pixels reaches that size
# (never enlarged: upsample does that), within a budget of upsampled pixels; photos up to
# FULL_SIZE_SIDE are always scanned whole, as before the scale was chosen.
WINDOW_PX = 80
# faces.min_face_px unset: 90% of 40-80 px faces found in 12 MP photos, 1.9 s of CPU per such photo (docs/accuracy.md).
DEFAULT_MIN_FACE_PX = 64
FULL_SIZE_SIDE = 1280
MAX_SCAN_PIXELS = 24_000_000  # HOG at ~80 ns per scanned pixel: ~2 s of one core for the first stage
# Fallback stages run only when their estimated time fits this budget (measured on one
# 2020s x86 core: HOG ~80 ns, MMOD ~8 us per upsampled pixel), so a large image
# without faces cannot cost minutes.
FALLBACK_BUDGET_S = 1.0
# The HOG fallback stage also runs when the first stage found a face under this many times its
# smallest findable size (WINDOW_PX / 2**upsample): small faces come in crowds, and the next smaller
# ones are out of its reach. Measured with benchmarks/detection.py (docs/accuracy.md): on det-dev's
# group photos recall went from 66.2% to 78.9% (0.05 -> 0.06 false detections per photo), and 1 of
# 150 lfw-dev portraits (faces ~110 px) triggers it; at 1.5x, 81% but 3 of 150. MMOD (~8 us per pixel) still runs only
# when no face
# is found: in the crowd pass it added nothing on det-dev and cost 0.5 s per lfw-dev photo it ran on.
CROWD_FACE_RATIO = 1.25
SAME_FACE_IOU = 0.3  # a later stage's box overlapping an earlier stage's this much is the same face
_NS_PER_PIXEL = {HOG: 80, CNN: 8000}
# dlib's detectors fail on an image a few pixels a side: a RuntimeError (1x1), or heap
# corruption that aborts the process (8x8, 8x200). Nothing that small holds a face they find.
MIN_DETECT_SIDE = 16

# 68-point indices that make the 5 ArcFace-order landmarks.
_LEFT_EYE, _RIGHT_EYE, _NOSE_TIP, _MOUTH_LEFT, _MOUTH_RIGHT = slice(36, 42), slice(42, 48), 30, 48, 54

Stage = tuple[str, int]  # (detector kind, upsampling)


def default_stages(kind: str, upsample: int, fallback: bool) -> list[Stage]:
    """The configured detector first, then the retries that paid off on lfw-dev.

    There HOG at upsample 1 missed 31 of 6,274 faces: HOG at upsample 2 found 13 of
    them, MMOD at upsample 0 all 31 (MMOD at upsample 1 costs 4x as much, found no more).
    """
    if kind not in (HOG, CNN):
        raise ModelError(f"unknown dlib detector {kind!r}; use 'hog' or 'cnn'")
    stages = [(kind, upsample)]
    if fallback:
        stages += [(HOG, upsample + 1), (CNN, max(upsample - 1, 0))] if kind == HOG else [(CNN, upsample + 1)]
    return stages


def stage_label(stage: Stage) -> str:
    kind, upsample = stage
    return f"{'mmod' if kind == CNN else kind}/up{upsample}"


def detection_scale(height: int, width: int, min_face_px: int, upsample: int) -> float:
    """The factor a height x width photo is resized by before the first stage scans it at `upsample`."""
    whole = min(1.0, FULL_SIZE_SIDE / max(height, width))
    wanted: float = min(1.0, WINDOW_PX / 2**upsample / min_face_px)
    affordable = math.sqrt(MAX_SCAN_PIXELS / (height * width * 4**upsample))
    return max(whole, min(wanted, affordable))


class DlibDetector(Detector):
    def __init__(self, stages: Sequence[Stage], min_face_px: int) -> None:
        super().__init__()
        if not stages:
            raise ModelError("a dlib detector needs at least one stage")
        self.stages = list(stages)
        self.min_face_px = min_face_px

    def _load(self) -> None:
        import dlib
        import face_recognition_models as weights

        self._dlib = dlib
        self._hog = dlib.get_frontal_face_detector()
        self._mmod = dlib.cnn_face_detection_model_v1(weights.cnn_face_detector_model_location())
        self._shape68 = dlib.shape_predictor(weights.pose_predictor_model_location())
        logger.info("dlib detector loaded: stages %s", [stage_label(s) for s in self.stages])

    def runs_on(self) -> str:
        import dlib

        # No faces.device here: HOG is CPU code in every dlib build; MMOD runs where this dlib build runs it.
        if not any(kind == CNN for kind, _ in self.stages):
            return "cpu (dlib HOG runs on the CPU only)"
        mmod = "dlib's CUDA build" if dlib.DLIB_USE_CUDA else "the CPU too: this dlib is built without CUDA"
        return f"cpu (dlib HOG runs on the CPU only; its MMOD stage on {mmod})"

    def scan_limit_px(self, height: int, width: int) -> float | None:
        upsample = self.stages[0][1]
        reach = WINDOW_PX / 2**upsample / detection_scale(height, width, self.min_face_px, upsample)
        return round(reach) if reach > self.min_face_px + 0.5 else None

    def _detect(self, rgb: np.ndarray) -> tuple[list[Detection], str]:
        first_upsample = self.stages[0][1]
        small, scale = _resized(rgb, detection_scale(rgb.shape[0], rgb.shape[1], self.min_face_px, first_upsample))
        if min(small.shape[:2]) < MIN_DETECT_SIDE:
            return [], "none"
        pixels = small.shape[0] * small.shape[1]
        crowd_px = CROWD_FACE_RATIO * WINDOW_PX / 2**first_upsample
        found: list[tuple[Any, float, str]] = []  # (box in the scanned image, score, stage label)
        for index, stage in enumerate(self.stages):
            if index > 0:
                if found and (stage[0] != HOG or min(box.height() for box, _, _ in found) >= crowd_px):
                    continue  # MMOD only for photos with no face; HOG again only near the first stage's reach
                if pixels * 4 ** stage[1] * _NS_PER_PIXEL[stage[0]] > FALLBACK_BUDGET_S * 1e9:
                    continue  # too slow on an image this large; the primary stage already had its chance
            label = stage_label(stage)
            found += [
                (box, score, label)
                for box, score in self._boxes(small, stage)
                if all(_iou(box, seen) < SAME_FACE_IOU for seen, _, _ in found)
            ]
        if not found:
            return [], "none"
        height, width = rgb.shape[:2]
        image_stage = found[0][2]
        return [
            self._describe(rgb, box, score, scale, width, height, None if label == image_stage else label)
            for box, score, label in found
        ], image_stage

    def _boxes(self, image: np.ndarray, stage: Stage) -> list[tuple[Any, float]]:
        kind, upsample = stage
        if kind == HOG:
            rects, scores, _ = self._hog.run(image, upsample, 0.0)
            return list(zip(rects, scores))
        return [(found.rect, float(found.confidence)) for found in self._mmod(image, upsample)]

    def _describe(
        self, rgb: np.ndarray, box: Any, score: float, scale: float, width: int, height: int, stage: str | None
    ) -> Detection:
        rect = self._dlib.rectangle(
            round(box.left() * scale), round(box.top() * scale), round(box.right() * scale), round(box.bottom() * scale)
        )
        shape = self._shape68(rgb, rect)
        landmarks = landmarks_from_shape(shape)
        bbox = (
            float(max(rect.left(), 0)),
            float(max(rect.top(), 0)),
            float(min(rect.right() + 1, width)),
            float(min(rect.bottom() + 1, height)),
        )
        return Detection(
            bbox=bbox, landmarks=frozen_array(landmarks, np.float32), score=float(score), native=shape, stage=stage
        )


def landmarks_from_shape(shape: Any) -> np.ndarray:
    """The 5 landmarks, in our order, of dlib's 68-point shape: eye centres, nose tip, mouth corners."""
    points = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)
    return np.stack(
        [
            points[_LEFT_EYE].mean(axis=0),
            points[_RIGHT_EYE].mean(axis=0),
            points[_NOSE_TIP],
            points[_MOUTH_LEFT],
            points[_MOUTH_RIGHT],
        ]
    )


class DlibChipAligner:
    """dlib's own chip alignment (the one its ResNet was trained with), from the 68-point shape."""

    def __init__(self, size: int = 150, padding: float = 0.25) -> None:
        self.size = size
        self.padding = padding

    def __call__(self, rgb: np.ndarray, detection: Detection) -> np.ndarray:
        import dlib

        if detection.native is None:
            raise ModelError("dlib's chip alignment needs dlib landmarks; pair it with the dlib detector")
        chip: np.ndarray = dlib.get_face_chip(rgb, detection.native, size=self.size, padding=self.padding)
        return chip


class DlibResnetRecognizer(Recognizer):
    """dlib's ResNet descriptor, run by the torch port of the network (identity.faces.dlib_torch).

    Same weights, read from the same file: descriptors agree with dlib's own to 3e-7,
    at about a seventh of dlib's CPU time (benchmarks/dlib_port.py).
    """

    input_size = 150

    def __init__(self, threads: int | None = None, device: Device = AUTO_DEVICE) -> None:
        super().__init__()
        self.threads = threads
        self.device = device

    def runs_on(self) -> str:
        return torch_runs_on(self.device)

    def _load(self) -> None:
        import torch

        from identity.faces.dlib_torch import load_dlib_resnet

        if self.threads:
            torch.set_num_threads(self.threads)  # per process; workers set it to cores / workers
        self._torch = torch
        self._device = self.device.torch_device()  # before the weights: a GPU that is not there fails at once
        self._model = load_dlib_resnet().to(self._device)
        logger.info(
            "dlib ResNet face descriptor loaded (torch on %s, %d threads)", self._device, torch.get_num_threads()
        )

    def _dim(self) -> int:
        return self._model.dim

    def _embed(self, crops: np.ndarray) -> np.ndarray:
        from identity.faces.dlib_torch import chips_to_tensor

        with self._torch.inference_mode():
            embeddings: np.ndarray = self._model(chips_to_tensor(crops, self._device)).cpu().numpy()
        return embeddings


def _iou(a: Any, b: Any) -> float:
    """Intersection over union of two dlib rectangles (inclusive pixel bounds)."""
    inter = a.intersect(b)
    shared = inter.area() if not inter.is_empty() else 0
    iou: float = shared / (a.area() + b.area() - shared)
    return iou


def _resized(rgb: np.ndarray, factor: float) -> tuple[np.ndarray, float]:
    """The image resized by factor (at most 1), and the factor back to full size."""
    if factor >= 1.0:
        return rgb, 1.0
    height, width = rgb.shape[:2]
    small = cv2.resize(rgb, (round(width * factor), round(height * factor)), interpolation=cv2.INTER_AREA)
    return small, width / small.shape[1]
