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
from typing import Any, Sequence

import cv2
import numpy as np

from identity.errors import ModelError
from identity.faces.base import Detector, Recognizer
from identity.faces.types import Detection, frozen_array

logger = logging.getLogger(__name__)

HOG, CNN = "hog", "cnn"
DETECT_MAX_SIDE = 1280  # larger images are shrunk for detection only; landmarks use full resolution
# Fallback stages run only when their estimated time fits this budget (measured on one
# 2020s x86 core: HOG ~80 ns, MMOD ~8 us per upsampled pixel), so a large image
# without faces cannot cost minutes.
FALLBACK_BUDGET_S = 1.0
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


class DlibDetector(Detector):
    def __init__(self, stages: Sequence[Stage]) -> None:
        super().__init__()
        if not stages:
            raise ModelError("a dlib detector needs at least one stage")
        self.stages = list(stages)

    def _load(self) -> None:
        import dlib
        import face_recognition_models as weights

        self._dlib = dlib
        self._hog = dlib.get_frontal_face_detector()
        self._mmod = dlib.cnn_face_detection_model_v1(weights.cnn_face_detector_model_location())
        self._shape68 = dlib.shape_predictor(weights.pose_predictor_model_location())
        logger.info("dlib detector loaded: stages %s", [stage_label(s) for s in self.stages])

    def _detect(self, rgb: np.ndarray) -> tuple[list[Detection], str]:
        small, scale = _shrink(rgb, DETECT_MAX_SIDE)
        if min(small.shape[:2]) < MIN_DETECT_SIDE:
            return [], "none"
        pixels = small.shape[0] * small.shape[1]
        for index, stage in enumerate(self.stages):
            if index > 0 and pixels * 4 ** stage[1] * _NS_PER_PIXEL[stage[0]] > FALLBACK_BUDGET_S * 1e9:
                continue  # too slow on an image this large; the primary stage already had its chance
            boxes = self._boxes(small, stage)
            if boxes:
                height, width = rgb.shape[:2]
                return [self._describe(rgb, box, score, scale, width, height) for box, score in boxes], stage_label(stage)
        return [], "none"

    def _boxes(self, image: np.ndarray, stage: Stage) -> list[tuple[Any, float]]:
        kind, upsample = stage
        if kind == HOG:
            rects, scores, _ = self._hog.run(image, upsample, 0.0)
            return list(zip(rects, scores))
        return [(found.rect, float(found.confidence)) for found in self._mmod(image, upsample)]

    def _describe(self, rgb: np.ndarray, box: Any, score: float, scale: float, width: int, height: int) -> Detection:
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
        return Detection(bbox=bbox, landmarks=frozen_array(landmarks, np.float32), score=float(score), native=shape)


def landmarks_from_shape(shape: Any) -> np.ndarray:
    """The 5 landmarks, in our order, of dlib's 68-point shape: eye centres, nose tip, mouth corners."""
    points = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)
    return np.stack(
        [points[_LEFT_EYE].mean(axis=0), points[_RIGHT_EYE].mean(axis=0), points[_NOSE_TIP], points[_MOUTH_LEFT], points[_MOUTH_RIGHT]]
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
        return dlib.get_face_chip(rgb, detection.native, size=self.size, padding=self.padding)


class DlibResnetRecognizer(Recognizer):
    """dlib's ResNet descriptor, run by the torch port of the network (identity.faces.dlib_torch).

    Same weights, read from the same file: descriptors agree with dlib's own to 3e-7,
    at about a seventh of dlib's CPU time (benchmarks/dlib_port.py).
    """

    input_size = 150

    def __init__(self, threads: int | None = None) -> None:
        super().__init__()
        self.threads = threads

    def _load(self) -> None:
        import torch

        from identity.faces.dlib_torch import load_dlib_resnet

        if self.threads:
            torch.set_num_threads(self.threads)  # per process; workers set it to cores / workers
        self._torch = torch
        self._model = load_dlib_resnet()
        logger.info("dlib ResNet face descriptor loaded (torch, %d threads)", torch.get_num_threads())

    def _dim(self) -> int:
        return self._model.dim

    def _embed(self, crops: np.ndarray) -> np.ndarray:
        from identity.faces.dlib_torch import chips_to_tensor

        with self._torch.inference_mode():
            return self._model(chips_to_tensor(crops)).numpy()


def _shrink(rgb: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """The image scaled so its longer side is at most max_side, and the factor back to full size."""
    height, width = rgb.shape[:2]
    longest = max(height, width)
    if longest <= max_side:
        return rgb, 1.0
    factor = max_side / longest
    small = cv2.resize(rgb, (round(width * factor), round(height * factor)), interpolation=cv2.INTER_AREA)
    return small, longest / max_side
