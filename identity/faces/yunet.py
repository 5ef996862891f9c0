"""YuNet: a small CNN face detector with 5 landmarks, run by OpenCV's cv2.FaceDetectorYN.

Its model file ships in no package: `identity models install yunet` puts it in the data
directory (identity.faces.installed). Photos are detected tile by tile at the scale their
smallest wanted face allows (identity.faces.tiling).

For dlib's ResNet, each YuNet box is mapped onto the box dlib's 68-point predictor was
trained on (its HOG detector's), and the predictor's shape rides in `Detection.native`,
so DlibChipAligner cuts the same chip as in the dlib-resnet pack.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import cv2
import numpy as np

from identity.errors import ModelError
from identity.faces.base import Detector
from identity.faces.dlib_models import landmarks_from_shape
from identity.faces.tiling import detect_tiled
from identity.faces.types import Detection, frozen_array

logger = logging.getLogger(__name__)

STAGE = "yunet"
NMS_IOU = 0.3  # YuNet's own suppression inside one tile
TOP_K = 5000  # candidates kept before YuNet's suppression
MAX_TILE_PIXELS = 4_000_000  # one tile's working size: YuNet needs ~0.1 GB per megapixel
# faces.min_face_px unset: a 12 MP photo is then one 4 MP pass (faces from 42 px found); 40 needed 3 passes, 3x the
# time.
DEFAULT_MIN_FACE_PX = 48
# face height found reliably at scale 1: 97% of 24 px lfw-dev faces, 78% of 20 px (docs/models.md "Detectors")
NATIVE_MIN_FACE_PX = 24.0

# dlib's HOG box from YuNet's 5 landmarks: centre = landmark mean + (dx, dy) * eye-to-mouth
# distance, square side = size * that distance. Medians over 399 lfw-dev faces (400 random
# photos) where HOG (upsample 1) and YuNet both fired. On those faces the 68 points found in
# the mapped box lie 1.5% of the eye distance (median) from those in HOG's box (3.7% in
# YuNet's raw box), and the embeddings agree at cosine 0.99983 median, 0.9986 at the 5th
# percentile (raw box: 0.99961, 0.9924).
_HOG_DX, _HOG_DY, _HOG_SIZE = -0.083, -0.070, 2.324


class YunetDetector(Detector):
    """YuNet boxes, tiled, each with dlib's 68-point shape (for dlib's chip) and the 5 landmarks made from it."""

    def __init__(self, model_path: Path, min_score: float, min_face_px: float) -> None:
        super().__init__()
        self.model_path = Path(model_path)
        self.min_score = min_score
        self.min_face_px = min_face_px
        self._net_lock = threading.Lock()  # one cv2.FaceDetectorYN holds one input size at a time

    def runs_on(self) -> str:
        return "cpu (OpenCV's YuNet runs on the CPU only here; dlib's 68-point landmarks too)"

    def _load(self) -> None:
        log = cv2.utils.logging
        level = log.getLogLevel()
        log.setLogLevel(log.LOG_LEVEL_ERROR)  # OpenCV 5 warns on every load that its new engine ignores targets
        try:
            self._net = cv2.FaceDetectorYN.create(str(self.model_path), "", (320, 320), self.min_score, NMS_IOU, TOP_K)
        except cv2.error as exc:
            raise ModelError(
                f"cannot load YuNet from {self.model_path}: {str(exc).strip().split('error: ')[-1]}"
            ) from None
        finally:
            log.setLogLevel(level)
        import dlib
        import face_recognition_models as weights

        self._dlib = dlib
        self._predictor = dlib.shape_predictor(weights.pose_predictor_model_location())
        logger.info("YuNet detector loaded from %s (min score %.2f)", self.model_path, self.min_score)

    def _detect(self, rgb: np.ndarray) -> tuple[list[Detection], str]:
        found = detect_tiled(rgb, self._detect_array, self.min_face_px, NATIVE_MIN_FACE_PX, MAX_TILE_PIXELS)
        found = [self._with_shape(rgb, d) for d in found]
        return found, STAGE if found else "none"

    def _detect_array(self, rgb: np.ndarray) -> list[Detection]:
        """YuNet on one RGB array, in its pixels."""
        height, width = rgb.shape[:2]
        bgr = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)
        with self._net_lock:
            self._net.setInputSize((width, height))
            _, rows = self._net.detect(bgr)
        if rows is None:
            return []
        # A row: x, y, w, h, then 5 (x, y) landmarks in our order (image-left eye first), then the score.
        return [
            Detection(
                bbox=(float(r[0]), float(r[1]), float(r[0] + r[2]), float(r[1] + r[3])),
                landmarks=frozen_array(r[4:14].reshape(5, 2), np.float32),
                score=float(r[14]),
                stage=STAGE,
            )
            for r in rows
        ]

    def _with_shape(self, rgb: np.ndarray, detection: Detection) -> Detection:
        """The detection with dlib's 68-point shape, found in the box dlib's predictor expects.

        Its 5 landmarks come from the 68 points, as in the dlib-resnet pack: the quality gate's
        limits were set on those (YuNet's own eye points sit 6% further apart, median on lfw-dev).
        """
        left, top, right, bottom = hog_box(detection.landmarks)
        shape = self._predictor(rgb, self._dlib.rectangle(left, top, right, bottom))
        return Detection(
            bbox=detection.bbox,
            landmarks=frozen_array(landmarks_from_shape(shape), np.float32),
            score=detection.score,
            native=shape,
            stage=detection.stage,
        )


def hog_box(landmarks: np.ndarray) -> tuple[int, int, int, int]:
    """The box dlib's HOG detector would draw around a face, from its 5 YuNet landmarks (inclusive corners)."""
    points = np.asarray(landmarks, dtype=np.float64)
    eyes, mouth = points[:2].mean(axis=0), points[3:].mean(axis=0)
    unit = float(np.linalg.norm(mouth - eyes))
    cx, cy = points.mean(axis=0) + (_HOG_DX * unit, _HOG_DY * unit)
    half = _HOG_SIZE * unit / 2
    return round(cx - half), round(cy - half), round(cx + half), round(cy + half)


def yunet_load_error(path: Path) -> str | None:
    """Why OpenCV cannot load `path` as its ONNX face detector (None: it loads)."""
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # its backend notes are not the user's concern
    try:
        cv2.FaceDetectorYN.create(str(path), "", (320, 320))
    except cv2.error as exc:
        return f"OpenCV {cv2.__version__} cannot load it as an ONNX face detector ({' '.join(str(exc).split())[:160]})"
    return None
