"""Quality measurements and the gate's rejection reasons."""

from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np
import pytest

from identity.config import FaceSettings
from identity.faces import BLURRY, LOW_SCORE, PROFILE, TILTED, TOO_SMALL, Quality
from identity.faces.align import ARCFACE_TEMPLATE
from identity.faces.quality import assess, blur_variance, inter_ocular_px, rejections, roll_deg, yaw_deg
from identity.serialize import to_json

GOOD = Quality(det_score=1.0, iod_px=60.0, blur=200.0, yaw_deg=5.0, roll_deg=-3.0)


def rotate(points: np.ndarray, angle_deg: float) -> np.ndarray:
    a = math.radians(angle_deg)
    rotation = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    centre = points.mean(axis=0)
    return (points - centre) @ rotation.T + centre


def test_a_good_face_passes() -> None:
    assert rejections(GOOD, FaceSettings()) == ()


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"det_score": 0.2}, LOW_SCORE),
        ({"iod_px": 12.0}, TOO_SMALL),
        ({"blur": 3.0}, BLURRY),
        ({"yaw_deg": -70.0}, PROFILE),
        ({"roll_deg": 60.0}, TILTED),
    ],
)
def test_each_threshold_has_its_reason(change: dict[str, float], reason: str) -> None:
    settings = FaceSettings(min_det_score=0.5)
    assert rejections(dataclasses.replace(GOOD, **change), settings) == (reason,)


def test_all_reasons_together_in_a_fixed_order() -> None:
    bad = Quality(det_score=-1.0, iod_px=1.0, blur=0.0, yaw_deg=89.0, roll_deg=-89.0)
    assert rejections(bad, FaceSettings()) == (LOW_SCORE, TOO_SMALL, BLURRY, PROFILE, TILTED)


def test_thresholds_come_from_settings() -> None:
    strict = FaceSettings(min_iod_px=100.0, max_yaw_deg=2.0)
    assert rejections(GOOD, strict) == (TOO_SMALL, PROFILE)


def test_frontal_template_is_level_and_straight() -> None:
    assert abs(yaw_deg(ARCFACE_TEMPLATE)) < 2
    assert abs(roll_deg(ARCFACE_TEMPLATE)) < 1
    assert inter_ocular_px(ARCFACE_TEMPLATE) == pytest.approx(35.24, abs=0.01)


@pytest.mark.parametrize("angle", [-40, -10, 15, 35])
def test_roll_is_the_eye_line_angle_and_does_not_look_like_yaw(angle: float) -> None:
    turned = rotate(ARCFACE_TEMPLATE, angle)
    assert roll_deg(turned) == pytest.approx(angle, abs=1.0)
    assert abs(yaw_deg(turned)) < 2


def test_yaw_follows_the_nose() -> None:
    def with_nose_shift(dx: float) -> np.ndarray:
        points = ARCFACE_TEMPLATE.copy()
        points[2, 0] += dx
        return points

    assert yaw_deg(with_nose_shift(8)) > 20
    assert yaw_deg(with_nose_shift(-8)) < -20
    assert yaw_deg(with_nose_shift(40)) > 60  # nose beyond the eye: a profile


def test_blur_drops_when_the_crop_is_blurred() -> None:
    rng = np.random.default_rng(0)
    sharp = rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)
    blurred = cv2.GaussianBlur(sharp, (0, 0), 4)
    assert blur_variance(sharp) > 100 * blur_variance(blurred)


def test_assess_measures_and_gates() -> None:
    flat = np.full((112, 112, 3), 128, dtype=np.uint8)  # no edges at all
    quality = assess(ARCFACE_TEMPLATE.astype(np.float32), 0.9, flat, FaceSettings())
    assert quality.rejections == (BLURRY,) and not quality.ok
    assert quality.iod_px == pytest.approx(35.24, abs=0.01)
    assert to_json(quality)["rejections"] == [BLURRY]
