"""Image loading: every kind of odd file becomes 8-bit RGB or one ImageError with a reason."""

from __future__ import annotations

import hashlib
import io
import struct
import time
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from identity.errors import ImageError
from identity.faces import decode_image, load_image
from identity.faces.images import looks_like_image

ORIENTATION = 0x0112
LOSSY = ("JPEG", "WEBP", "GIF", "HEIF", "AVIF")  # GIF: its 256-colour palette


def gradient(width: int = 64, height: int = 48) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 255 // width, y * 255 // height, (x + y) % 256], axis=2).astype(np.uint8)


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def test_digest_is_of_the_file_bytes_and_pixels_are_rgb(tmp_path: Path) -> None:
    data = encode(Image.fromarray(gradient()), "PNG")
    path = tmp_path / "g.png"
    path.write_bytes(data)
    loaded = load_image(path)
    assert loaded.sha256 == hashlib.sha256(data).hexdigest()
    assert (loaded.width, loaded.height, loaded.path) == (64, 48, str(path))
    assert loaded.rgb.dtype == np.uint8 and loaded.rgb.shape == (48, 64, 3)
    assert np.array_equal(loaded.rgb, gradient())


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF", "HEIF", "AVIF"])
def test_supported_formats_decode(fmt: str) -> None:
    loaded = decode_image(encode(Image.fromarray(gradient()), fmt), f"g.{fmt.lower()}")
    assert loaded.rgb.shape == (48, 64, 3)
    tolerance = 40 if fmt in LOSSY else 0
    assert np.abs(loaded.rgb.astype(int) - gradient()).mean() <= tolerance


def test_truncated_jpeg_is_one_image_error(tmp_path: Path) -> None:
    data = encode(Image.fromarray(gradient(256, 256)), "JPEG", quality=90)
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError) as caught:
        load_image(path)
    assert "truncated" in caught.value.reason
    assert "\n" not in str(caught.value)


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageError, match="empty file"):
        load_image(path)


def test_text_file_named_jpg(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("these are not the pixels you are looking for\n")
    with pytest.raises(ImageError, match="not a supported image"):
        load_image(path)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "absent.jpg")
    with pytest.raises(ImageError, match="not a regular file"):
        load_image(tmp_path)


def test_file_size_limit_applies_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    path.write_bytes(encode(Image.fromarray(gradient()), "PNG"))
    with pytest.raises(ImageError, match="more than the 100 allowed"):
        load_image(path, max_bytes=100)


def test_png_alpha_is_composited_on_white() -> None:
    rgba = np.zeros((10, 20, 4), dtype=np.uint8)
    rgba[:, :10] = (200, 10, 10, 255)  # opaque red half
    rgba[:, 10:] = (0, 0, 0, 0)  # transparent half, black underneath
    loaded = decode_image(encode(Image.fromarray(rgba, "RGBA"), "PNG"), "alpha.png")
    assert loaded.rgb.shape == (10, 20, 3)
    assert tuple(loaded.rgb[5, 2]) == (200, 10, 10)
    assert tuple(loaded.rgb[5, 15]) == (255, 255, 255)


def test_sixteen_bit_png_is_scaled_not_clipped() -> None:
    values = np.array([[0, 257 * 64, 257 * 128, 65535]], dtype=np.uint16).repeat(4, axis=0)
    image = Image.fromarray(values)
    assert image.mode.startswith("I;16")
    loaded = decode_image(encode(image, "PNG"), "deep.png")
    assert loaded.rgb.dtype == np.uint8
    assert loaded.rgb[0, :, 0].tolist() == [0, 64, 128, 255]
    assert np.array_equal(loaded.rgb[..., 0], loaded.rgb[..., 2])


def test_cmyk_jpeg_becomes_rgb() -> None:
    rgb = gradient(96, 96)
    data = encode(Image.fromarray(rgb).convert("CMYK"), "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    loaded = decode_image(data, "cmyk.jpg")
    assert loaded.rgb.shape == (96, 96, 3)
    assert np.abs(loaded.rgb.astype(int) - rgb).mean() < 12


def test_palette_and_greyscale_become_rgb() -> None:
    grey = decode_image(encode(Image.fromarray(gradient()[..., 0]), "PNG"), "grey.png")
    assert grey.rgb.shape == (48, 64, 3) and np.array_equal(grey.rgb[..., 0], gradient()[..., 0])
    palette = Image.fromarray(gradient()).quantize(16)
    assert decode_image(encode(palette, "PNG"), "p.png").rgb.shape == (48, 64, 3)


def test_first_frame_of_an_animated_gif() -> None:
    frames = [Image.new("RGB", (8, 8), color) for color in ((250, 0, 0), (0, 0, 250))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    loaded = decode_image(data, "anim.gif")
    assert loaded.rgb[4, 4, 0] > 200 and loaded.rgb[4, 4, 2] < 50


def test_exif_orientation_is_applied() -> None:
    upright = gradient(60, 40)  # wider than tall
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)  # as a sideways camera wrote it
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    loaded = decode_image(encode(stored, "PNG", exif=exif), "turned.png")
    assert loaded.rgb.shape == (40, 60, 3)
    assert np.array_equal(loaded.rgb, upright)


@pytest.mark.parametrize("side", [30000, 9000])  # past Pillow's own bomb limit, and past only ours
def test_huge_header_is_refused_before_decoding(side: int) -> None:
    """A crafted PNG header: gigabytes of pixels if decoded; refused from the header alone."""
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)  # 8-bit RGB
    data = (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 1000))
        + png_chunk(b"IEND", b"")
    )
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(ImageError, match="pixels") as caught:
            decode_image(data, "bomb.png")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(side * side) in caught.value.reason
    assert peak < 5_000_000
    assert time.perf_counter() - started < 2.0


def test_pixel_limit_is_configurable() -> None:
    with pytest.raises(ImageError, match="more than the 1000 allowed"):
        decode_image(encode(Image.fromarray(gradient()), "PNG"), "g.png", max_pixels=1000)


def test_unsupported_format_is_refused() -> None:
    data = encode(Image.fromarray(gradient()), "PPM")
    with pytest.raises(ImageError, match="not a supported image"):
        decode_image(data, "g.ppm")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF", "HEIF", "AVIF"])
def test_damaged_files_load_or_raise_image_error_only(fmt: str) -> None:
    """Cut short or with bytes overwritten, every format either decodes or raises ImageError."""
    data = encode(Image.fromarray(gradient()), fmt)
    rng = np.random.default_rng(len(data))
    variants = [data[:cut] for cut in np.linspace(1, len(data) - 1, 12).astype(int)]
    for _ in range(12):
        damaged = bytearray(data)
        spot = int(rng.integers(0, len(data) - 8))
        damaged[spot : spot + 8] = rng.integers(0, 256, 8, dtype=np.uint8).tobytes()
        variants.append(bytes(damaged))
    for variant in variants:
        try:
            loaded = decode_image(variant, f"damaged.{fmt.lower()}")
        except ImageError as exc:
            assert exc.reason and "\n" not in exc.reason
        else:
            assert loaded.rgb.shape == (48, 64, 3) and loaded.rgb.dtype == np.uint8


# Phone formats: iPhones write HEIC, newer cameras and browsers AVIF.


def marked_corner(width: int = 60, height: int = 40) -> np.ndarray:
    """Wider than tall, with a red top-left corner: any turn or mirror moves the corner or swaps the sides."""
    pixels = np.full((height, width, 3), 40, dtype=np.uint8)
    pixels[:10, :10] = (250, 0, 0)
    return pixels


def assert_upright(loaded_rgb: np.ndarray) -> None:
    assert loaded_rgb.shape == (40, 60, 3)
    assert loaded_rgb[:10, :10, 0].mean() > 200 and loaded_rgb[-10:, -10:, 0].mean() < 90
    assert loaded_rgb[:10, -10:, 0].mean() < 90 and loaded_rgb[-10:, :10, 0].mean() < 90


def sideways(fmt: str, orientation_tag: Image.Exif | bytes) -> bytes:
    """Pixels stored turned, as a phone held upright writes them, with EXIF 'rotate 90 clockwise to display'."""
    return encode(
        Image.fromarray(marked_corner()).transpose(Image.Transpose.ROTATE_90), fmt, exif=orientation_tag, quality=95
    )


def turned_by_exif() -> Image.Exif:
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    return exif


def test_a_heic_with_the_heif_rotation_and_the_orientation_tag_is_turned_once() -> None:
    """As an iPhone writes it: the HEIF rotation (irot) and the EXIF tag both say 'turn 90 degrees'."""
    data = sideways("HEIF", turned_by_exif().tobytes())  # pillow-heif writes the tag's turn as irot too
    assert b"irot" in data and b"\x01\x12\x00\x03\x00\x00\x00\x01\x00\x06" in data  # EXIF tag kept
    assert_upright(decode_image(data, "phone.heic").rgb)


def test_a_heic_with_only_the_orientation_tag_comes_out_upright() -> None:
    data = sideways("HEIF", turned_by_exif())  # given an Exif object, pillow-heif writes the tag alone
    assert b"irot" not in data
    assert_upright(decode_image(data, "tagged.heic").rgb)


def test_a_heic_with_only_the_heif_rotation_comes_out_upright() -> None:
    data = bytearray(sideways("HEIF", turned_by_exif().tobytes()))
    tag = data.find(b"\x01\x12\x00\x03\x00\x00\x00\x01\x00\x06")  # big-endian EXIF entry: orientation = 6
    data[tag + 9] = 1  # the EXIF tag now says upright; only the HEIF irot box turns the pixels
    assert b"irot" in data
    assert_upright(decode_image(bytes(data), "irot-only.heic").rgb)


@pytest.mark.parametrize("tag", [turned_by_exif(), turned_by_exif().tobytes()])
def test_an_avif_with_its_rotation_is_turned_once(tag: Image.Exif | bytes) -> None:
    data = sideways("AVIF", tag)
    assert b"irot" in data
    assert_upright(decode_image(data, "phone.avif").rgb)


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
def test_phone_formats_keep_the_pixel_limit(fmt: str) -> None:
    with pytest.raises(ImageError, match="more than the 1000 allowed"):
        decode_image(encode(Image.fromarray(gradient()), fmt), f"g.{fmt.lower()}", max_pixels=1000)


def test_a_corrupt_heic_is_one_line_saying_so() -> None:
    data = sideways("HEIF", turned_by_exif().tobytes())
    with pytest.raises(ImageError) as caught:
        decode_image(data[: len(data) // 2], "cut.heic")
    assert "corrupt or truncated HEIF/AVIF" in caught.value.reason and "\n" not in str(caught.value)


@pytest.mark.parametrize(("fmt", "name"), [("HEIF", "IMG_0001"), ("AVIF", "export")])
def test_a_phone_photo_without_a_suffix_is_taken_by_a_folder_scan(tmp_path: Path, fmt: str, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(encode(Image.fromarray(gradient()), fmt))
    assert looks_like_image(path)
    assert looks_like_image(tmp_path / "IMG_0002.HEIC")  # by its suffix, unopened
