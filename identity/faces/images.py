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
import pillow_heif
from PIL import Image, ImageOps, UnidentifiedImageError

from identity.errors import ImageError
from identity.faces.types import LoadedImage

logger = logging.getLogger(__name__)

# HEIF (iPhones' HEIC) is read by pillow-heif's libheif, AVIF by Pillow's own plugin (which reports
# the AVIF rotation as the EXIF orientation, so the EXIF step below applies it once).
pillow_heif.register_heif_opener()
FORMATS = (
    "JPEG",
    "PNG",
    "WEBP",
    "BMP",
    "TIFF",
    "GIF",
    "HEIF",
    "AVIF",
)  # JPEG includes cameras' multi-picture (MPO) files
MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_PIXELS = 60_000_000  # ~60 MP; a 30000x30000 header (900 MP) is refused unread
EXIF_ORIENTATION = 0x0112
BACKGROUND = (255, 255, 255)  # transparent pixels are composited onto white
# What a folder scan takes for a photo without opening it: the suffixes of FORMATS, and,
# for files named otherwise (camera exports without one), the first bytes of those formats.
IMAGE_SUFFIXES = frozenset(
    {
        ".jpg",
        ".jpeg",
        ".jpe",
        ".jfif",
        ".mpo",
        ".png",
        ".webp",
        ".bmp",
        ".dib",
        ".tif",
        ".tiff",
        ".gif",
        ".heic",
        ".heif",
        ".hif",
        ".avif",
    }
)
IMAGE_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"BM", b"II*\x00", b"MM\x00*", b"GIF87a", b"GIF89a")
# HEIF and AVIF are ISO-BMFF files: an `ftyp` box at byte 4, its major brand at bytes 8..12.
ISOBMFF_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis"})


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
    return (
        head.startswith(IMAGE_SIGNATURES) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP") or _is_isobmff_image(head)
    )


def _is_isobmff_image(head: bytes) -> bool:
    return head[4:8] == b"ftyp" and head[8:12] in ISOBMFF_BRANDS


def decode_image(data: bytes, name: str, max_bytes: int = MAX_FILE_BYTES, max_pixels: int = MAX_PIXELS) -> LoadedImage:
    """Decode image bytes (an upload, a blob); `name` only labels errors and results."""
    if not data:
        raise ImageError(name, "empty file")
    if len(data) > max_bytes:
        raise ImageError(name, f"file is {len(data)} bytes, more than the {max_bytes} allowed")
    digest = hashlib.sha256(data).hexdigest()
    try:
        image: Image.Image = Image.open(io.BytesIO(data), formats=FORMATS)
    except UnidentifiedImageError:
        if _is_isobmff_image(data[:12]):  # a HEIC/AVIF whose boxes libheif or libavif could not parse
            raise ImageError(name, "corrupt or truncated HEIF/AVIF image: its container cannot be parsed") from None
        raise ImageError(name, f"not a supported image (expected one of {', '.join(FORMATS)})") from None
    except Image.DecompressionBombError as exc:  # Pillow's own, higher, limit tripped while reading the header
        raise ImageError(name, f"too many pixels: {_one_line(exc)}") from None
    except Exception as exc:  # Pillow's parsers raise many unrelated types for bad headers
        raise ImageError(name, f"unreadable image header: {_one_line(exc)}") from None
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageError(name, f"image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise ImageError(
            name, f"image is {width}x{height} = {width * height} pixels, more than the {max_pixels} allowed"
        )
    try:
        image.load()  # the first frame only, for animations and multi-page files
        if image.format == "HEIF":
            _heif_orientation_once(image, data)
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


def _heif_orientation_once(image: Image.Image, data: bytes) -> None:
    """Leave the EXIF orientation for _upright only when the HEIF file does not turn its pixels itself.

    libheif applies the HEIF rotation and mirror (irot/imir) while decoding, and pillow-heif then sets
    the EXIF tag to 1 (an iPhone writes both: applying both would turn the photo twice). A file with
    the EXIF tag and no irot/imir (what `save(..., exif=...)` from some tools writes) keeps its tag.
    """
    orientation = image.info.get("original_orientation")
    if orientation and orientation != 1 and not {b"irot", b"imir"} & _heif_item_properties(data):
        image.getexif()[EXIF_ORIENTATION] = orientation


def _heif_item_properties(data: bytes) -> set[bytes]:
    """The types of the item properties in a HEIF file (meta > iprp > ipco), read from its boxes."""
    meta = _child_box(memoryview(data), b"meta", full=True)  # a view: the image data is never copied
    iprp = _child_box(meta, b"iprp") if meta is not None else None
    ipco = _child_box(iprp, b"ipco") if iprp is not None else None
    return {kind for kind, _ in _boxes(ipco)} if ipco is not None else set()


def _child_box(data: memoryview, wanted: bytes, full: bool = False) -> memoryview | None:
    for kind, body in _boxes(data):
        if kind == wanted:
            return body[4:] if full else body  # a full box starts with its version and flags
    return None


def _boxes(data: memoryview) -> list[tuple[bytes, memoryview]]:
    """The (type, body) of the ISO-BMFF boxes laid one after another in data; stops at the first bad size."""
    found, offset = [], 0
    while offset + 8 <= len(data):
        size, kind, header = int.from_bytes(data[offset : offset + 4], "big"), bytes(data[offset + 4 : offset + 8]), 8
        if size == 1 and offset + 16 <= len(data):
            size, header = int.from_bytes(data[offset + 8 : offset + 16], "big"), 16
        elif size == 0:
            size = len(data) - offset
        if size < header or offset + size > len(data):
            break
        found.append((kind, data[offset + header : offset + size]))
        offset += size
    return found


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:200]
