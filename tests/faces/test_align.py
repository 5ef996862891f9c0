"""5-point similarity alignment onto the ArcFace template."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from identity.faces.align import ARCFACE_TEMPLATE, align_face, similarity_transform, template, transform_points


def similarity(angle_deg: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    a = math.radians(angle_deg)
    return np.array(
        [[scale * math.cos(a), -scale * math.sin(a), shift[0]], [scale * math.sin(a), scale * math.cos(a), shift[1]]]
    )


def textured_image(size: int = 400, seed: int = 0) -> np.ndarray:
    """Smooth random texture: every region looks different, and resampling barely changes it."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
    return cv2.GaussianBlur(cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC), (0, 0), 3)


@pytest.mark.parametrize(
    "angle, scale, shift", [(0, 1, (0, 0)), (25, 2.5, (100, 40)), (-70, 0.6, (-5, 300)), (180, 1.3, (200, 200))]
)
def test_exact_landmarks_land_on_the_template(angle: float, scale: float, shift: tuple[float, float]) -> None:
    # Landmarks as a face placed anywhere in an image: the template moved by a similarity.
    landmarks = transform_points(similarity(angle, scale, shift), ARCFACE_TEMPLATE)
    matrix = similarity_transform(landmarks, template())
    assert np.abs(transform_points(matrix, landmarks) - ARCFACE_TEMPLATE).max() < 1e-6


def test_noisy_landmarks_land_within_a_pixel() -> None:
    rng = np.random.default_rng(1)
    for _ in range(50):
        placed = transform_points(
            similarity(rng.uniform(-60, 60), rng.uniform(0.5, 4), rng.uniform(0, 500, 2)), ARCFACE_TEMPLATE
        )
        noisy = placed + rng.normal(0, 0.3, placed.shape) * np.linalg.norm(placed[1] - placed[0]) / 35
        matrix = similarity_transform(noisy, template())
        assert np.linalg.norm(transform_points(matrix, noisy) - ARCFACE_TEMPLATE, axis=1).max() < 1.0


def test_least_squares_beats_any_perturbed_transform() -> None:
    rng = np.random.default_rng(2)
    src = ARCFACE_TEMPLATE * 2 + rng.normal(0, 3, ARCFACE_TEMPLATE.shape)
    best = similarity_transform(src, ARCFACE_TEMPLATE)
    error = ((transform_points(best, src) - ARCFACE_TEMPLATE) ** 2).sum()
    for _ in range(20):
        nudged = best + rng.normal(0, 1e-3, best.shape) * np.array([[1, 1, 100], [1, 1, 100]])
        nudged[1, :2] = [-nudged[0, 1], nudged[0, 0]]  # keep it a similarity
        assert ((transform_points(nudged, src) - ARCFACE_TEMPLATE) ** 2).sum() >= error


def test_mirrored_landmarks_are_not_reflected_back() -> None:
    """A reflection would fit mirrored points perfectly; a similarity must not use one."""
    mirrored = ARCFACE_TEMPLATE * np.array([-1, 1]) + np.array([200, 0])
    matrix = similarity_transform(mirrored, ARCFACE_TEMPLATE)
    assert np.linalg.det(matrix[:, :2]) > 0


def test_rotated_image_gives_the_same_crop() -> None:
    image = textured_image()
    landmarks = transform_points(similarity(10, 2.0, (90, 70)), ARCFACE_TEMPLATE)
    crop = align_face(image, landmarks)

    turn = cv2.getRotationMatrix2D((200, 200), 33, 1.0)  # the photo turned by 33 degrees
    turned = cv2.warpAffine(image, turn, (400, 400))
    turned_crop = align_face(turned, transform_points(turn, landmarks))

    assert crop.shape == turned_crop.shape == (112, 112, 3)
    difference = np.abs(crop.astype(int) - turned_crop.astype(int))
    assert difference.mean() < 3
    # Not a property of any two crops of this texture:
    assert np.abs(crop.astype(int) - align_face(turned, landmarks).astype(int)).mean() > 10


def test_other_crop_sizes_scale_the_template() -> None:
    landmarks = transform_points(similarity(15, 2.0, (90, 70)), ARCFACE_TEMPLATE)
    matrix = similarity_transform(landmarks, template(224))
    assert np.abs(transform_points(matrix, landmarks) - 2 * ARCFACE_TEMPLATE).max() < 1e-6
    assert align_face(textured_image(), landmarks, 224).shape == (224, 224, 3)


def test_degenerate_landmarks_raise() -> None:
    with pytest.raises(ValueError, match="degenerate"):
        similarity_transform(np.ones((5, 2)), ARCFACE_TEMPLATE)
