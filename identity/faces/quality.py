"""Per-face quality measurements and the gate that turns them into rejection reasons."""

from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np

from identity.config import FaceSettings
from identity.faces.types import Quality

# Rejection reasons, stable strings stored with faces and shown to users.
LOW_SCORE = "low_score"
TOO_SMALL = "too_small"
BLURRY = "blurry"
PROFILE = "profile"  # turned too far sideways (yaw)
TILTED = "tilted"  # head rolled too far towards a shoulder

# Depth of the nose tip in front of the eyes, as a share of half the inter-ocular
# distance (about 0.9 in the generic 3D face models used for head-pose estimation).
NOSE_DEPTH_RATIO = 0.9


def inter_ocular_px(landmarks: np.ndarray) -> float:
    return float(np.linalg.norm(landmarks[1] - landmarks[0]))


def roll_deg(landmarks: np.ndarray) -> float:
    dx, dy = landmarks[1] - landmarks[0]
    return math.degrees(math.atan2(dy, dx))


def yaw_deg(landmarks: np.ndarray) -> float:
    """Head yaw from the nose's sideways offset from the eyes' midpoint, roll removed.

    With the nose tip a depth d in front of eyes that sit +-e apart, a turn by yaw
    moves the nose sideways by d*sin(yaw) and the eyes' half-distance shrinks to
    e*cos(yaw), so yaw = atan(offset / half-distance / (d/e)).
    """
    points = np.asarray(landmarks, dtype=np.float64)
    eyes_mid = (points[0] + points[1]) / 2
    angle = math.radians(roll_deg(points))
    axis = np.array([math.cos(angle), math.sin(angle)])  # along the eye line
    half_iod = np.linalg.norm(points[1] - points[0]) / 2
    if half_iod < 1e-6:
        return 90.0  # eyes on top of each other: a full profile
    offset = float(np.dot(points[2] - eyes_mid, axis))
    return math.degrees(math.atan(offset / half_iod / NOSE_DEPTH_RATIO))


def blur_variance(crop: np.ndarray) -> float:
    """Variance of the Laplacian of a grey crop: low means few sharp edges."""
    grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY) if crop.ndim == 3 else crop
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def rejections(quality: Quality, settings: FaceSettings) -> tuple[str, ...]:
    """The gate: every reason, in a fixed order, the face falls short of the settings."""
    reasons = []
    if quality.det_score < settings.min_det_score:
        reasons.append(LOW_SCORE)
    if quality.iod_px < settings.min_iod_px:
        reasons.append(TOO_SMALL)
    if quality.blur < settings.min_blur:
        reasons.append(BLURRY)
    if abs(quality.yaw_deg) > settings.max_yaw_deg:
        reasons.append(PROFILE)
    if abs(quality.roll_deg) > settings.max_roll_deg:
        reasons.append(TILTED)
    return tuple(reasons)


def assess(landmarks: np.ndarray, det_score: float, arcface_crop: np.ndarray, settings: FaceSettings) -> Quality:
    """Measure one face (its 112x112 ArcFace-aligned crop gives the blur) and gate it."""
    measured = Quality(
        det_score=float(det_score),
        iod_px=inter_ocular_px(landmarks),
        blur=blur_variance(arcface_crop),
        yaw_deg=yaw_deg(landmarks),
        roll_deg=roll_deg(landmarks),
    )
    return dataclasses.replace(measured, rejections=rejections(measured, settings))
