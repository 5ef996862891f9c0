"""What one search may ask of the inference pool: a number of images and of pixels, read before any decoding.

A small request can hold an inference thread for minutes (many blank photos, or a few huge
ones that compress well), so these are checked on the spooled uploads, from the image
headers alone, before the first image is decoded. Too much is a 413 naming the limit.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from identity.api.errors import ApiError
from identity.config import ApiSettings


def check_count(count: int, api: ApiSettings) -> None:
    if count > api.max_images_per_request:
        raise ApiError(
            413,
            f"{count} images in one request, more than the {api.max_images_per_request} allowed "
            "(IDENTITY_API__MAX_IMAGES_PER_REQUEST): send them in several requests",
            {"images": count, "limit": api.max_images_per_request},
        )


def check_pixels(paths: Sequence[Path], api: ApiSettings) -> None:
    """413 when the images' pixels, summed from their headers, pass api.max_pixels_per_request."""
    total = sum(header_pixels(path) for path in paths)
    if total > api.max_pixels_per_request:
        raise ApiError(
            413,
            f"the images hold {total / 1e6:.1f} MP in all, more than the "
            f"{api.max_pixels_per_request / 1e6:g} MP allowed in one request "
            "(IDENTITY_API__MAX_PIXELS_PER_REQUEST)",
            {"pixels": total, "limit": api.max_pixels_per_request},
        )


def header_pixels(path: Path) -> int:
    """width x height from the file's header (nothing decoded); 0 when the header cannot be read:
    the pipeline then says why the file is no usable image."""
    try:
        with Image.open(path) as image:
            width, height = image.size
    except Exception:  # Pillow raises many types for files that are not images, and a bomb error for huge ones
        return 0
    return max(width, 0) * max(height, 0)
