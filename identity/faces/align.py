"""5-point similarity alignment against the ArcFace template: pure functions, no state.

The transform is the least-squares similarity (rotation, uniform scale, translation;
never a reflection) that maps detected landmarks onto the template (Umeyama, 1991).
"""

from __future__ import annotations

import cv2
import numpy as np

from identity.faces.types import Detection

# Where the 5 landmarks (see identity.faces.types for the order) sit in a 112x112 ArcFace crop.
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)
ARCFACE_SIZE = 112


def template(size: int = ARCFACE_SIZE) -> np.ndarray:
    """The ArcFace template scaled to a size x size crop."""
    return ARCFACE_TEMPLATE * (size / ARCFACE_SIZE)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 matrix of the similarity that best maps src points onto dst points."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(f"need two matching (n>=2, 2) point sets, got {src.shape} and {dst.shape}")
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    src_var = (src_c**2).sum() / len(src)
    if src_var < 1e-12:
        raise ValueError("landmarks are degenerate (all at one point)")
    u, s, vt = np.linalg.svd(dst_c.T @ src_c / len(src))
    sign = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])  # forbid reflections
    rotation = u @ sign @ vt
    scale = np.trace(np.diag(s) @ sign) / src_var
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - scale * rotation @ src_mean
    return matrix


def transform_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    moved: np.ndarray = points @ matrix[:, :2].T + matrix[:, 2]
    return moved


def align_face(rgb: np.ndarray, landmarks: np.ndarray, size: int = ARCFACE_SIZE) -> np.ndarray:
    """The size x size crop with the landmarks moved onto the ArcFace template."""
    matrix = similarity_transform(landmarks, template(size))
    return cv2.warpAffine(
        rgb, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )


class ArcFaceAligner:
    """The aligner of ArcFace/CosFace recognizers: the landmarks onto the 112x112 template."""

    size = ARCFACE_SIZE

    def __call__(self, rgb: np.ndarray, detection: Detection) -> np.ndarray:
        return align_face(rgb, detection.landmarks, self.size)
