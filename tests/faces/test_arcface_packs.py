"""The insightface-onnx and torch-iresnet packs, with random weights built here.

- an iresnet-18 state dict (random weights, random BatchNorm statistics) saved as .pth,
- its ONNX export through export_onnx(),
- a tiny ONNX "detector" with SCRFD's 9 outputs whose only response is a white
  square, so where it finds a face (and the landmarks) is known in advance.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from identity.config import FaceSettings, Settings
from identity.errors import ModelError
from identity.faces import FacePipeline, build_pipeline, export_onnx
from identity.faces.iresnet import build_iresnet, load_iresnet

SQUARE = (160, 96, 176, 112)  # x1, y1, x2, y2 of the white square in the 320x320 test image
# Landmark offsets from the anchor, in stride units (the detector's constant key-point output).
KPS_OFFSETS = np.array([[-0.6, -0.4], [0.6, -0.4], [0.0, 0.1], [-0.5, 0.6], [0.5, 0.6]], dtype=np.float32)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = build_iresnet("r18")
    for module in model.modules():
        if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("weights") / "r18.pth"
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def recognizer_onnx(checkpoint: Path) -> Path:
    return export_onnx(checkpoint, checkpoint.with_suffix(".onnx"), arch="r18")


@pytest.fixture(scope="module")
def detector_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "scrfd_tiny.onnx"
    onnx.save(square_detector(), path)
    return path


def arcface_settings(**faces: object) -> Settings:
    return Settings(model=str(faces.pop("model")), faces=FaceSettings(torch_arch="r18", **faces))


@pytest.fixture(scope="module")
def torch_pipeline(checkpoint: Path) -> FacePipeline:
    return build_pipeline(arcface_settings(model="torch-iresnet", torch_checkpoint=str(checkpoint)))


@pytest.fixture(scope="module")
def onnx_pipeline(recognizer_onnx: Path) -> FacePipeline:
    return build_pipeline(arcface_settings(model="insightface-onnx", onnx_recognizer=str(recognizer_onnx)))


def random_crops(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 112, 112, 3), dtype=np.uint8)


def test_onnx_and_torch_recognizers_agree(torch_pipeline: FacePipeline, onnx_pipeline: FacePipeline) -> None:
    crops = random_crops(5)
    from_torch, from_onnx = torch_pipeline.embed_crops(crops), onnx_pipeline.embed_crops(crops)
    for embeddings in (from_torch, from_onnx):
        assert embeddings.shape == (5, 512) and embeddings.dtype == np.float32
        assert np.allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    assert np.abs(from_torch - from_onnx).max() < 1e-4
    assert (from_torch @ from_torch.T)[~np.eye(5, dtype=bool)].max() < 0.999  # distinct inputs, distinct vectors
    assert torch_pipeline.dim == onnx_pipeline.dim == 512


def test_recognizer_input_is_rgb_scaled_to_plus_minus_one(checkpoint: Path, torch_pipeline: FacePipeline) -> None:
    crops = random_crops(2, seed=1)
    model = load_iresnet(checkpoint, "r18")
    with torch.inference_mode():
        expected = model(torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 127.5 - 1.0).numpy()
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    assert np.abs(torch_pipeline.embed_crops(crops) - expected).max() < 1e-5
    assert np.abs(torch_pipeline.embed_crops(crops[..., ::-1]) - expected).max() > 1e-3  # BGR would be caught


def test_onnx_export_has_a_dynamic_batch(onnx_pipeline: FacePipeline) -> None:
    crops = random_crops(7, seed=2)
    alone = np.concatenate([onnx_pipeline.embed_crops(crops[i : i + 1]) for i in range(7)])
    assert np.abs(onnx_pipeline.embed_crops(crops) - alone).max() < 1e-5


def test_a_checkpoint_for_another_depth_is_named(checkpoint: Path) -> None:
    with pytest.raises(ModelError, match="holds an iresnet r18, but r50 was asked for"):
        load_iresnet(checkpoint, "r50")


def test_wrapped_and_data_parallel_checkpoints_load(checkpoint: Path, tmp_path: Path) -> None:
    state = torch.load(checkpoint, weights_only=True)
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, wrapped)
    crops = torch.rand(1, 3, 112, 112)
    with torch.inference_mode():
        assert torch.equal(load_iresnet(wrapped, "r18")(crops), load_iresnet(checkpoint, "r18")(crops))


def test_not_a_checkpoint(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"no tensors in here")
    with pytest.raises(ModelError, match="cannot read torch checkpoint"):
        load_iresnet(junk, "r50")


def test_in_graph_normalisation_of_mxnet_conversions_is_respected(tmp_path: Path) -> None:
    """A model that subtracts and scales inside its graph gets raw pixels, not pre-normalised ones."""
    path = tmp_path / "mxnet_style.onnx"
    onnx.save(mxnet_style_recognizer(), path)
    pipeline = build_pipeline(arcface_settings(model="insightface-onnx", onnx_recognizer=str(path)))
    crops = random_crops(3, seed=3)
    # The graph outputs the per-channel means of (x - 127.5) * 0.0078125, padded to 4 values.
    means = (crops.reshape(3, -1, 3).astype(np.float64).mean(axis=1) - 127.5) * 0.0078125
    expected = np.concatenate([means, np.full((3, 1), 1.0)], axis=1)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    assert np.abs(pipeline.embed_crops(crops) - expected).max() < 1e-5


def test_scrfd_decoding_places_the_face_and_landmarks(detector_onnx: Path) -> None:
    from identity.faces.onnx_models import ScrfdDetector

    detections, stage = ScrfdDetector(detector_onnx).detect(square_image())
    assert stage == "scrfd" and len(detections) == 1
    [found] = detections
    # The 320x320 image is scaled x2 to the 640x640 input, where the square fills exactly the
    # stride-32 cell (10, 6), whose anchor sits at its top-left corner (320, 192): (160, 96) here.
    anchor = np.array([SQUARE[0], SQUARE[1]], dtype=np.float32)
    assert np.allclose(found.bbox, (anchor[0] - 32, anchor[1] - 32, anchor[0] + 32, anchor[1] + 32), atol=0.5)
    assert np.allclose(found.landmarks, anchor + KPS_OFFSETS * 16, atol=0.5)
    assert found.score > 0.9


def test_insightface_pack_end_to_end(detector_onnx: Path, recognizer_onnx: Path, torch_pipeline: FacePipeline) -> None:
    from identity.faces import decode_image

    settings = arcface_settings(
        model="insightface-onnx", onnx_detector=str(detector_onnx), onnx_recognizer=str(recognizer_onnx)
    )
    pipeline = build_pipeline(settings)
    assert re.fullmatch(r"insightface-onnx@1\+[0-9a-f]{8}", pipeline.model_id)
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(square_image()).save(buffer, "PNG")
    [result] = pipeline.process([decode_image(buffer.getvalue(), "square.png")])
    assert result.detector == "scrfd" and len(result.faces) == 1
    face = result.faces[0]
    assert face.crop.shape == (112, 112, 3) and face.embedding.shape == (512,)
    assert np.abs(face.embedding - torch_pipeline.embed_crops(face.crop[None])[0]).max() < 1e-4


def test_torch_and_onnx_packs_agree_on_a_real_photo(
    torch_pipeline: FacePipeline, onnx_pipeline: FacePipeline, t1_path: Path
) -> None:
    """Without faces.onnx_detector both packs detect with dlib and align to the ArcFace template."""
    from identity.faces import load_image

    image = load_image(t1_path)
    [a], [b] = torch_pipeline.process([image]), onnx_pipeline.process([image])
    assert len(a.faces) == len(b.faces) == 6
    for fa, fb in zip(a.faces, b.faces):
        assert fa.crop.shape == (112, 112, 3)
        assert np.abs(fa.embedding - fb.embedding).max() < 1e-4


# --- model builders -------------------------------------------------------------------------


def square_image() -> np.ndarray:
    image = np.zeros((320, 320, 3), dtype=np.uint8)
    x1, y1, x2, y2 = SQUARE
    image[y1:y2, x1:x2] = 255
    return image


def square_detector() -> onnx.ModelProto:
    """SCRFD's output layout (scores, boxes, key points for strides 8, 16, 32; two anchors each).

    Each stride average-pools the normalised input over its cells; only stride 32
    scores anything, high where a cell is white. Boxes are +-2 strides around the
    anchor; key points are KPS_OFFSETS strides from it.
    """
    nodes, inits, outputs = [], [], {"score": [], "bbox": [], "kps": []}
    for stride in (8, 16, 32):
        pooled = f"pool{stride}"
        nodes.append(
            helper.make_node(
                "AveragePool", ["input"], [pooled], kernel_shape=[stride, stride], strides=[stride, stride]
            )
        )
        heads = {
            "score": (
                np.full((2, 3, 1, 1), 10 / 3, np.float32),
                np.full(2, -5.0 if stride == 32 else -30.0, np.float32),
                1,
            ),
            "bbox": (np.zeros((8, 3, 1, 1), np.float32), np.full(8, 2.0, np.float32), 4),
            "kps": (np.zeros((20, 3, 1, 1), np.float32), np.tile(KPS_OFFSETS.reshape(-1), 2), 10),
        }
        for head, (weight, bias, width) in heads.items():
            name = f"{head}{stride}"
            inits += [
                numpy_helper.from_array(weight, f"{name}_w"),
                numpy_helper.from_array(bias.astype(np.float32), f"{name}_b"),
            ]
            conv = [f"{name}_conv"]
            nodes.append(helper.make_node("Conv", [pooled, f"{name}_w", f"{name}_b"], conv))
            if head == "score":
                nodes.append(helper.make_node("Sigmoid", conv, [f"{name}_sig"]))
                conv = [f"{name}_sig"]
            nodes.append(helper.make_node("Transpose", conv, [f"{name}_t"], perm=[0, 2, 3, 1]))
            inits.append(numpy_helper.from_array(np.array([-1, width], np.int64), f"{name}_shape"))
            nodes.append(helper.make_node("Reshape", [f"{name}_t", f"{name}_shape"], [name]))
            outputs[head].append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["n", width]))
    graph = helper.make_graph(
        nodes,
        "square_detector",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, "h", "w"])],
        outputs["score"] + outputs["bbox"] + outputs["kps"],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def mxnet_style_recognizer() -> onnx.ModelProto:
    """Sub and Mul up front (as MXNet conversions have), then per-channel means and a constant 1."""
    nodes = [
        helper.make_node("Sub", ["data", "mean"], ["centred"], name="_minusscalar0"),
        helper.make_node("Mul", ["centred", "scale"], ["scaled"], name="_mulscalar0"),
        helper.make_node("GlobalAveragePool", ["scaled"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("Pad", ["flat", "pads", "one"], ["fc1"]),
    ]
    inits = [
        numpy_helper.from_array(np.array(127.5, np.float32), "mean"),
        numpy_helper.from_array(np.array(0.0078125, np.float32), "scale"),
        numpy_helper.from_array(np.array([0, 0, 0, 1], np.int64), "pads"),
        numpy_helper.from_array(np.array(1.0, np.float32), "one"),
    ]
    graph = helper.make_graph(
        nodes,
        "mxnet_style",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, ["n", 3, 112, 112])],
        [helper.make_tensor_value_info("fc1", TensorProto.FLOAT, ["n", 4])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
