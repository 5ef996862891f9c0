"""The default pack end to end, with dlib's real weights."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from identity.config import Settings
from identity.errors import ImageError
from identity.faces import FacePipeline, ImageFaces, build_pipeline, decode_image, load_image, process_paths_parallel


def test_importing_the_api_loads_no_model_library() -> None:
    probe = (
        "import sys; from identity.config import Settings; import identity.faces as f;"
        "p = f.build_pipeline(Settings()); print(p.model_id);"
        "print('HEAVY', [m for m in ('torch', 'dlib', 'onnxruntime', 'insightface') if m in sys.modules])"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert "HEAVY []" in result.stdout, result.stdout + result.stderr


def test_six_faces_in_the_group_photo(t1_faces: ImageFaces) -> None:
    result = t1_faces
    assert len(result.faces) == 6
    assert result.detector == "hog/up1"
    assert (result.width, result.height) == (1280, 886)
    for face in result.faces:
        x1, y1, x2, y2 = face.bbox
        assert 0 <= x1 < x2 <= result.width and 0 <= y1 < y2 <= result.height
        assert face.landmarks.shape == (5, 2) and face.landmarks.dtype == np.float32
        # Landmarks in the documented order, inside their face's box.
        (lx, ly), (rx, ry), (nx, ny), (mlx, mly), (mrx, mry) = face.landmarks
        assert lx < rx and mlx < mrx and max(ly, ry) < ny < max(mly, mry)
        assert x1 - 5 <= min(lx, mlx) and max(rx, mrx) <= x2 + 5
        assert face.embedding.shape == (128,) and face.embedding.dtype == np.float32
        assert np.linalg.norm(face.embedding) == pytest.approx(1.0, abs=1e-5)
        assert face.crop.shape == (150, 150, 3)
        assert face.quality.ok and face.quality.iod_px > 30
        assert not face.embedding.flags.writeable
    # Six different people: no two embeddings nearly identical.
    matrix = np.stack([f.embedding for f in result.faces])
    similarity = matrix @ matrix.T
    assert similarity[~np.eye(6, dtype=bool)].max() < 0.93


def test_an_image_without_a_face(dlib_pipeline: FacePipeline) -> None:
    rng = np.random.default_rng(0)
    sky = np.clip(np.linspace(90, 200, 240)[:, None, None] + rng.normal(0, 3, (240, 320, 3)), 0, 255).astype(np.uint8)
    image = decode_image(_png(sky), "sky.png")
    [result] = dlib_pipeline.process([image])
    assert result.faces == () and result.detector == "none"


def test_exif_rotated_photo_is_found_upright(
    dlib_pipeline: FacePipeline, one_face: Image.Image, tmp_path: Path
) -> None:
    path = tmp_path / "phone.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera was held sideways; viewers rotate 90 degrees clockwise
    one_face.transpose(Image.Transpose.ROTATE_90).save(path, "JPEG", quality=95, exif=exif)
    assert Image.open(path).size == (280, 250)  # what is stored is sideways

    [result] = dlib_pipeline.process([load_image(path)])
    assert (result.width, result.height) == (250, 280)
    assert len(result.faces) == 1
    face = result.faces[0]
    assert result.detector == "hog/up1"  # HOG only finds upright faces
    assert abs(face.quality.roll_deg) < 25
    eyes_y, mouth_y = face.landmarks[:2, 1].mean(), face.landmarks[3:, 1].mean()
    assert eyes_y < face.landmarks[2, 1] < mouth_y


def test_same_person_is_closer_than_different_people(dlib_pipeline: FacePipeline, lfw: Path) -> None:
    names = [
        "Aaron_Peirsol/Aaron_Peirsol_0001.jpg",
        "Aaron_Peirsol/Aaron_Peirsol_0002.jpg",
        "Adam_Sandler/Adam_Sandler_0001.jpg",
    ]
    results = dlib_pipeline.process([load_image(lfw / name) for name in names])
    a, b, other = (_central(r) for r in results)
    cut = dlib_pipeline.default_threshold.value
    assert a @ b > cut > max(a @ other, b @ other)
    assert a @ b > max(a @ other, b @ other) + 0.05


def test_mirror_recipe_is_the_mean_of_both_crops(
    settings: Settings, dlib_pipeline: FacePipeline, t1_faces: ImageFaces
) -> None:
    plain = build_pipeline(settings.replace(model="dlib-resnet@1"))
    assert (plain.model_id, dlib_pipeline.model_id) == ("dlib-resnet@1", "dlib-resnet@2")
    assert plain.dim == dlib_pipeline.dim == 128
    result = t1_faces
    crops = np.stack([f.crop for f in result.faces])
    one_way, other_way = plain.embed_crops(crops), plain.embed_crops(crops[:, :, ::-1])
    mean = one_way + other_way
    mean /= np.linalg.norm(mean, axis=1, keepdims=True)
    assert np.abs(mean - np.stack([f.embedding for f in result.faces])).max() < 1e-5
    assert np.abs(one_way - mean).max() > 1e-2  # the recipes really differ


def test_results_keep_input_order_across_a_batch(dlib_pipeline: FacePipeline, one_face: Image.Image) -> None:
    face = decode_image(_png(np.asarray(one_face)), "face.png")
    blank = decode_image(_png(np.full((100, 100, 3), 127, np.uint8)), "blank.png")
    results = dlib_pipeline.process([blank, face, blank, face])
    assert [len(r.faces) for r in results] == [0, 1, 0, 1]
    assert [r.path for r in results] == ["blank.png", "face.png", "blank.png", "face.png"]
    assert np.array_equal(results[1].faces[0].embedding, results[3].faces[0].embedding)


def test_parallel_processing_with_two_workers(
    settings: Settings, dlib_pipeline: FacePipeline, one_face: Image.Image, tmp_path: Path
) -> None:
    face = tmp_path / "face.png"
    one_face.save(face)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    blank = tmp_path / "blank.png"
    blank.write_bytes(_png(np.zeros((64, 64, 3), np.uint8)))
    paths = [face, broken, blank, face, face]
    outcomes = list(process_paths_parallel(settings, paths, workers=2, chunk_size=2))
    assert [p for p, _ in outcomes] == [str(p) for p in paths]
    first, error, empty, *rest = (o for _, o in outcomes)
    assert isinstance(error, ImageError) and error.path == str(broken) and "header" in error.reason
    assert isinstance(empty, ImageFaces) and empty.faces == ()
    [expected] = dlib_pipeline.process([load_image(face)])
    for outcome in (first, *rest):
        assert isinstance(outcome, ImageFaces) and len(outcome.faces) == 1
        assert np.allclose(outcome.faces[0].embedding, expected.faces[0].embedding, atol=1e-6)


def _central(result: ImageFaces) -> np.ndarray:
    centre = np.array([result.width / 2, result.height / 2])
    face = min(result.faces, key=lambda f: np.linalg.norm(np.array(f.bbox).reshape(2, 2).mean(axis=0) - centre))
    return face.embedding


def _png(rgb: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "PNG")
    return buffer.getvalue()
