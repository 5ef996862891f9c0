"""Turn image files into upright 8-bit RGB arrays, or one ImageError saying why not.

Sizes are checked before any pixel is decoded: the file size before reading, the
pixel count from the header (decompression bombs). Only the formats below are
opened, so a crafted file cannot reach one of Pillow's rarer parsers.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from identity.errors import ImageError
from identity.faces.types import LoadedImage

logger = logging.getLogger(__name__)

FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF")  # JPEG includes cameras' multi-picture (MPO) files
MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_PIXELS = 60_000_000  # ~60 MP; a 30000x30000 header (900 MP) is refused unread
BACKGROUND = (255, 255, 255)  # transparent pixels are composited onto white
# What a folder scan takes for a photo without opening it: the suffixes of FORMATS, and,
# for files named otherwise (camera exports without one), the first bytes of those formats.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".jfif", ".mpo", ".png", ".webp", ".bmp", ".dib",
                            ".tif", ".tiff", ".gif"})
IMAGE_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"BM", b"II*\x00", b"MM\x00*", b"GIF87a", b"GIF89a")


def load_image(
    path: str | os.PathLike[str], max_bytes: int = MAX_FILE_BYTES, max_pixels: int = MAX_PIXELS
) -> LoadedImage:
    """Read and decode one image file; the digest covers the bytes on disk."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise ImageError(path, "not a regular file")
        if size > max_bytes:
            raise ImageError(path, f"file is {size} bytes, more than the {max_bytes} allowed")
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImageError(path, "no such file") from None
    except PermissionError:
        raise ImageError(path, "permission denied") from None
    except OSError as exc:
        raise ImageError(path, f"cannot read file: {exc.strerror or exc}") from None
    return decode_image(data, str(path), max_bytes=max_bytes, max_pixels=max_pixels)


def looks_like_image(path: str | os.PathLike[str]) -> bool:
    """True for a file a folder scan should queue: an image suffix, or an image format's first bytes.

    Decoding decides later; this only keeps Thumbs.db or notes.txt out of the failures.
    """
    path = Path(path)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return True
    try:
        with path.open("rb") as handle:
            head = handle.read(12)
    except OSError:
        return True  # unreadable: queue it, so the pipeline reports why
    return head.startswith(IMAGE_SIGNATURES) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


def decode_image(
    data: bytes, name: str, max_bytes: int = MAX_FILE_BYTES, max_pixels: int = MAX_PIXELS
) -> LoadedImage:
    """Decode image bytes (an upload, a blob); `name` only labels errors and results."""
    if not data:
        raise ImageError(name, "empty file")
    if len(data) > max_bytes:
        raise ImageError(name, f"file is {len(data)} bytes, more than the {max_bytes} allowed")
    digest = hashlib.sha256(data).hexdigest()
    try:
        image = Image.open(io.BytesIO(data), formats=FORMATS)
    except UnidentifiedImageError:
        raise ImageError(name, f"not a supported image (expected one of {', '.join(FORMATS)})") from None
    except Image.DecompressionBombError as exc:  # Pillow's own, higher, limit tripped while reading the header
        raise ImageError(name, f"too many pixels: {_one_line(exc)}") from None
    except Exception as exc:  # Pillow's parsers raise many unrelated types for bad headers
        raise ImageError(name, f"unreadable image header: {_one_line(exc)}") from None
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageError(name, f"image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise ImageError(name, f"image is {width}x{height} = {width * height} pixels, more than the {max_pixels} allowed")
    try:
        image.load()  # the first frame only, for animations and multi-page files
        image = _upright(image, name)
        rgb = to_rgb8(image)
    except Exception as exc:  # truncated or corrupt data surfaces here, in as many types as there are decoders
        raise ImageError(name, f"corrupt or truncated image data: {_one_line(exc)}") from None
    return LoadedImage(rgb=rgb, sha256=digest, path=name)


def to_rgb8(image: Image.Image) -> np.ndarray:
    """Any Pillow mode as a C-contiguous uint8 (H, W, 3) RGB array."""
    mode = image.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # Pillow's convert("RGB") clips 16-bit values at 255 (a white image); scale instead.
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or values.max(initial=0) > 255 else 255.0
        grey = np.clip(values * (255.0 / top) + 0.5, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))
    if mode == "F":
        values = np.nan_to_num(np.asarray(image, dtype=np.float64))
        scale = 255.0 if values.max(initial=0) <= 1.0 else 1.0  # float TIFFs come as 0..1 or 0..255
        grey = np.clip(values * scale + 0.5, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))
    if mode in ("RGBA", "LA", "La", "RGBa", "PA") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
        image = Image.alpha_composite(background, rgba)
    return np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))


def _upright(image: Image.Image, name: str) -> Image.Image:
    """Apply the EXIF orientation tag; a broken EXIF block is logged, not fatal."""
    try:
        return ImageOps.exif_transpose(image)
    except Exception as exc:  # malformed EXIF should not cost us an otherwise good photo
        logger.warning("%s: ignoring unreadable EXIF orientation (%s)", name, _one_line(exc))
        return image


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:200]
