"""The torch port of dlib's face ResNet reproduces dlib's own descriptors from the same weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from identity.errors import ModelError
from identity.faces import load_image
from identity.faces.dlib_format import read_dlib_network
from identity.faces.dlib_torch import chips_to_tensor, dlib_model_path, load_dlib_resnet


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def _torch_and_dlib(chips: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The port's descriptors and dlib's own (its C++ network, not the pack's recognizer, which is the port)."""
    import dlib
    import torch

    with torch.inference_mode():
        ported = load_dlib_resnet()(chips_to_tensor(chips)).numpy()
    reference = dlib.face_recognition_model_v1(str(dlib_model_path())).compute_face_descriptor(
        [np.ascontiguousarray(c) for c in chips]
    )
    return ported, np.array(reference, dtype=np.float32)


def test_port_matches_dlib_on_a_group_photo(t1_faces) -> None:
    chips = np.stack([face.crop for face in t1_faces.faces])
    chips = np.concatenate([chips, chips[:, :, ::-1]])  # mirrored chips too, as the default pack embeds them
    ported, reference = _torch_and_dlib(chips)
    assert ported.shape == reference.shape == (12, 128)
    assert _cosines(ported, reference).min() >= 0.999
    assert np.allclose(np.linalg.norm(ported, axis=1), np.linalg.norm(reference, axis=1), rtol=1e-3)


def test_port_matches_dlib_on_lfw_faces(dlib_pipeline, lfw: Path) -> None:
    paths = sorted(lfw.glob("*/*.jpg"))[::300][:16]
    chips = np.stack(
        [result.faces[0].crop for result in dlib_pipeline.process([load_image(p) for p in paths]) if result.faces]
    )
    ported, reference = _torch_and_dlib(chips)
    assert len(chips) >= 12
    assert _cosines(ported, reference).min() >= 0.999


def test_file_layout_is_dlibs_resnet() -> None:
    layers = read_dlib_network(dlib_model_path())
    assert [layer.kind for layer in layers[:5]] == ["input", "con", "affine", "relu", "max_pool"]
    assert layers[-1].kind == "fc" and layers[-1].ints[:2] == (128, 256)
    assert sum(layer.kind == "add_prev" for layer in layers) == 14  # residual blocks
    assert sum(layer.kind == "con" for layer in layers) == 29


def test_a_truncated_or_foreign_file_is_a_clear_error(tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.dat"
    truncated.write_bytes(dlib_model_path().read_bytes()[:100_000])
    with pytest.raises(
        ModelError, match="truncated.dat is not a dlib face recognition network: unexpected end of file"
    ):
        read_dlib_network(truncated)
    foreign = tmp_path / "shape_predictor.dat"
    import face_recognition_models

    foreign.write_bytes(Path(face_recognition_models.pose_predictor_five_point_model_location()).read_bytes())
    with pytest.raises(ModelError, match="shape_predictor.dat is not a dlib face recognition network"):
        read_dlib_network(foreign)
    with pytest.raises(ModelError, match="cannot read"):
        read_dlib_network(tmp_path / "missing.dat")
