"""faces.device: one setting resolved to a torch device and to ONNX Runtime providers, and reported by `version`.

Everything runs on the CPU; the last test runs the default recognizer on CUDA where torch sees one.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from identity.config import FaceSettings, Settings
from identity.errors import ConfigError, ModelError
from identity.faces import build_pack
from identity.faces.device import CPU_PROVIDER, CUDA_PROVIDER, Device
from identity.faces.onnx_session import open_session

HAS_CUDA = torch.cuda.is_available()
NO_CUDA_REASON = f"torch {torch.__version__} sees no CUDA device on this machine"


@pytest.mark.parametrize(
    ("text", "kind", "index", "shown"),
    [
        ("auto", "auto", None, "auto"),
        ("cpu", "cpu", None, "cpu"),
        ("cuda", "cuda", None, "cuda"),
        ("cuda:1", "cuda", 1, "cuda:1"),
        (" CUDA:0 ", "cuda", 0, "cuda:0"),
    ],
)
def test_each_setting_parses(text: str, kind: str, index: int | None, shown: str) -> None:
    device = Device.parse(text)
    assert (device.kind, device.index, str(device)) == (kind, index, shown)


@pytest.mark.parametrize("text", ["gpu", "cpu:0", "auto:1", "cuda:", "cuda:-1", "cuda:x", "mps", ""])
def test_a_bad_setting_is_a_config_error(text: str) -> None:
    with pytest.raises(ConfigError, match="IDENTITY_FACES__DEVICE"):
        Device.parse(text)


@pytest.mark.parametrize("text", ["gpu", "cpu:0", "cuda:", "cuda:-1"])
def test_settings_refuse_a_bad_device_at_load_naming_the_variable(text: str) -> None:
    with pytest.raises(ConfigError, match=r"^IDENTITY_FACES__DEVICE: .* not allowed \(expected one of auto, cpu, cuda"):
        Settings.load({"IDENTITY_FACES__DEVICE": text})


@pytest.mark.parametrize("text", ["auto", "cpu", "cuda", "cuda:3"])
def test_settings_accept_every_device_form(text: str, tmp_path: Path) -> None:
    assert Settings.load({"IDENTITY_FACES__DEVICE": text, "IDENTITY_DATA_DIR": str(tmp_path)}).faces.device == text
    assert Settings.load({"IDENTITY_DATA_DIR": str(tmp_path)}).faces.device == "auto"


def test_torch_device_for_cpu_and_auto() -> None:
    assert Device.parse("cpu").torch_device() == torch.device("cpu")
    assert Device.parse("auto").torch_device() == (torch.device("cuda", 0) if HAS_CUDA else torch.device("cpu"))


@pytest.mark.skipif(HAS_CUDA, reason="a machine with CUDA cannot show the error for a machine without it")
def test_cuda_without_cuda_is_a_clear_error_not_a_cpu_fallback() -> None:
    with pytest.raises(ModelError, match="IDENTITY_FACES__DEVICE is cuda but torch sees no CUDA device"):
        Device.parse("cuda").torch_device()


def test_a_gpu_past_the_last_one_is_a_clear_error() -> None:
    missing = torch.cuda.device_count() if HAS_CUDA else 0
    with pytest.raises(ModelError, match=f"IDENTITY_FACES__DEVICE is cuda:{missing + 7}"):
        Device(kind="cuda", index=missing + 7).torch_device()


@pytest.mark.parametrize(
    ("text", "available", "expected"),
    [
        ("cpu", [CUDA_PROVIDER, CPU_PROVIDER], [CPU_PROVIDER]),
        ("auto", [CPU_PROVIDER], [CPU_PROVIDER]),
        ("auto", ["AzureExecutionProvider", CPU_PROVIDER], [CPU_PROVIDER]),
        ("auto", [CUDA_PROVIDER, CPU_PROVIDER], [(CUDA_PROVIDER, {"device_id": 0}), CPU_PROVIDER]),
        ("cuda", [CUDA_PROVIDER, CPU_PROVIDER], [(CUDA_PROVIDER, {"device_id": 0}), CPU_PROVIDER]),
        ("cuda:2", [CUDA_PROVIDER, CPU_PROVIDER], [(CUDA_PROVIDER, {"device_id": 2}), CPU_PROVIDER]),
    ],
)
def test_onnx_providers(text: str, available: list[str], expected: list[object]) -> None:
    assert Device.parse(text).onnx_providers(available) == expected


def test_onnx_cuda_without_its_provider_is_a_clear_error() -> None:
    with pytest.raises(
        ModelError, match="IDENTITY_FACES__DEVICE is cuda:1 but onnxruntime has no CUDAExecutionProvider"
    ):
        Device.parse("cuda:1").onnx_providers([CPU_PROVIDER])


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-node graph (y = relu(x)): enough for ONNX Runtime to open a session on some provider."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "tiny", [x], [y])
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_an_onnx_session_on_cpu_uses_the_cpu_provider_only(tiny_onnx: Path) -> None:
    session = open_session(tiny_onnx, threads=1, device=Device.parse("cpu"))
    assert session.get_providers() == [CPU_PROVIDER]
    out = session.run(None, {"x": np.array([[-1, 0, 2, -3]], dtype=np.float32)})[0]
    assert out.tolist() == [[0, 0, 2, 0]]


def test_an_onnx_session_on_a_missing_gpu_is_refused(tiny_onnx: Path) -> None:
    import onnxruntime as ort

    if CUDA_PROVIDER in ort.get_available_providers():
        pytest.skip("onnxruntime has its CUDA provider here: a missing one cannot be shown")
    with pytest.raises(ModelError, match="no CUDAExecutionProvider"):
        open_session(tiny_onnx, device=Device.parse("cuda"))


def _recognizer(device: str):  # the default pack's torch recognizer, built by the registry's path
    return build_pack(None, Settings(faces=FaceSettings(device=device))).recognizer


@pytest.mark.parametrize("setting", ["cpu", "auto"])
def test_the_torch_recognizer_runs_where_the_setting_says(setting: str, t1_faces, dlib_pipeline) -> None:
    chips = np.stack([face.crop for face in t1_faces.faces])
    recognizer = _recognizer(setting)
    embeddings = recognizer.embed(chips)
    expected = "cuda" if setting == "auto" and HAS_CUDA else "cpu"
    assert {p.device.type for p in recognizer._model.parameters()} == {expected}
    assert embeddings.shape == (len(chips), 128) and embeddings.dtype == np.float32
    assert recognizer.runs_on().startswith(f"{expected}") and f"faces.device {setting}" in recognizer.runs_on()
    # The session's pipeline (defaults: auto) computes the same descriptors.
    assert np.allclose(embeddings, dlib_pipeline.pack.recognizer.embed(chips), atol=1e-4)


@pytest.mark.skipif(HAS_CUDA, reason="a machine with CUDA runs the recognizer there instead")
def test_a_torch_recognizer_asked_for_cuda_fails_at_load_without_it() -> None:
    recognizer = _recognizer("cuda")
    assert recognizer.runs_on().startswith("unavailable: IDENTITY_FACES__DEVICE is cuda")
    with pytest.raises(ModelError, match="torch sees no CUDA device"):
        recognizer.load()


def test_version_says_what_runs_where(capsys: pytest.CaptureFixture[str], clean_env, monkeypatch) -> None:
    from identity_cli.main import main

    monkeypatch.setenv("IDENTITY_FACES__DEVICE", "cpu")
    code = main(["version", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    report = json.loads(out)
    assert report["faces_device"] == "cpu"
    assert report["detector_runs_on"].startswith("cpu (dlib HOG runs on the CPU only")
    assert report["recognizer_runs_on"] == "cpu (torch, faces.device cpu)"
    assert report["model"].startswith("dlib-resnet@")  # the keys it had before are all still there
    assert {"identity", "schema_code", "schema_database", "model_source", "store_active_model", "detector"} < set(
        report
    )


@pytest.mark.skipif(not HAS_CUDA, reason=NO_CUDA_REASON)
def test_the_torch_recognizer_and_training_run_on_cuda(t1_faces) -> None:
    from identity.train.finetune import embed_passes

    chips = np.stack([face.crop for face in t1_faces.faces])
    on_gpu, on_cpu = _recognizer("cuda:0"), _recognizer("cpu")
    from_gpu, from_cpu = on_gpu.embed(chips), on_cpu.embed(chips)
    assert {p.device.type for p in on_gpu._model.parameters()} == {"cuda"}
    cosines = (from_gpu * from_cpu).sum(1) / np.linalg.norm(from_gpu, axis=1) / np.linalg.norm(from_cpu, axis=1)
    assert cosines.min() > 0.9999  # same network, same weights: only float rounding differs
    straight, mirrored = embed_passes(on_gpu._model, chips)  # fine-tuning's embedding pass follows the net's device
    assert straight.shape == mirrored.shape == (len(chips), 128)
    assert np.abs(straight - from_gpu / np.linalg.norm(from_gpu, axis=1, keepdims=True)).max() < 1e-4


def test_fine_tuning_puts_the_backbone_where_the_setting_says() -> None:
    from identity.train.backbones import load_backbone

    settings = Settings(faces=FaceSettings(device="cpu"))
    backbone = load_backbone(build_pack(None, settings), settings)
    assert {p.device.type for p in backbone.network.parameters()} == {"cpu"}
    if not HAS_CUDA:  # asked for a GPU that is not there: refused before any weights load
        cuda = Settings(faces=FaceSettings(device="cuda"))
        with pytest.raises(ModelError, match="torch sees no CUDA device"):
            load_backbone(build_pack(None, cuda), cuda)
