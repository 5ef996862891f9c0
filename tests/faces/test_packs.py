"""The pack registry: names, versions, ids, and explicit errors for what cannot be built."""

from __future__ import annotations

from pathlib import Path

import pytest

from identity.config import FaceSettings, Settings
from identity.errors import ModelError
from identity.faces import build_pack, build_pipeline, list_packs
from identity.faces.installed import YUNET, detectors_dir
from identity.faces.packs import default_model


def test_default_is_the_mirror_recipe_of_dlib_resnet() -> None:
    pack = build_pack("dlib-resnet", Settings())
    assert (pack.model_id, pack.mirror) == ("dlib-resnet@2", True)
    assert (pack.default_threshold.value, pack.default_threshold.far) == (0.928, 1e-3)
    assert build_pack("dlib-resnet@1", Settings()).model_id == "dlib-resnet@1"


@pytest.mark.parametrize(
    "model, message",
    [
        (
            "dlib",
            "unknown model pack 'dlib'; known packs: dlib-resnet, insightface-onnx, torch-iresnet, yunet-dlib-resnet",
        ),
        ("dlib-resnet@7", "no version '7'"),
    ],
)
def test_unknown_names_and_versions_are_refused(model: str, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        build_pack(model, Settings())


def test_unknown_dlib_detector_is_refused() -> None:
    with pytest.raises(ModelError, match="unknown dlib detector 'mtcnn'"):
        build_pack("dlib-resnet", Settings(faces=FaceSettings(detector="mtcnn")))


def test_arcface_packs_need_their_weights_and_never_download_by_default() -> None:
    with pytest.raises(ModelError, match="needs faces.onnx_recognizer"):
        build_pack("insightface-onnx", Settings())
    with pytest.raises(ModelError, match="needs faces.torch_checkpoint"):
        build_pack("torch-iresnet", Settings())


def test_missing_and_corrupt_onnx_files_fail_on_load(tmp_path: Path) -> None:
    missing = build_pipeline(
        Settings(model="insightface-onnx", faces=FaceSettings(onnx_recognizer=str(tmp_path / "none.onnx")))
    )
    with pytest.raises(ModelError, match="does not exist"):
        missing.load()
    junk = tmp_path / "junk.onnx"
    junk.write_text("not a protobuf")
    corrupt = build_pipeline(Settings(model="insightface-onnx", faces=FaceSettings(onnx_recognizer=str(junk))))
    with pytest.raises(ModelError, match="cannot load ONNX model"):
        corrupt.load()


def test_user_weights_are_part_of_the_model_id(tmp_path: Path) -> None:
    first, second = tmp_path / "a.onnx", tmp_path / "b.onnx"
    first.write_bytes(b"weights one")
    second.write_bytes(b"weights two")
    ids = {
        build_pack("insightface-onnx", Settings(faces=FaceSettings(onnx_recognizer=str(path)))).model_id
        for path in (first, second, first)
    }
    assert len(ids) == 2 and all(i.startswith("insightface-onnx@1+") for i in ids)


def test_list_marks_the_active_pack(tmp_path: Path) -> None:
    infos = list_packs(Settings(data_dir=tmp_path, model="dlib-resnet"))
    assert [i.model_id for i in infos] == [
        "dlib-resnet@1",
        "dlib-resnet@2",
        "yunet-dlib-resnet@1",
        "insightface-onnx@1",
        "torch-iresnet@1",
    ]
    assert [i.model_id for i in infos if i.active] == ["dlib-resnet@2"]
    assert [i.model_id for i in list_packs(Settings(data_dir=tmp_path, model="torch-iresnet")) if i.active] == [
        "torch-iresnet@1"
    ]
    assert [i.model_id for i in list_packs(Settings(data_dir=tmp_path), active="dlib-resnet@1") if i.active] == [
        "dlib-resnet@1"
    ]
    assert not any(i.active for i in list_packs())


def test_parallel_processing_refuses_a_bad_pack_before_starting_workers(tmp_path: Path) -> None:
    from identity.faces import process_paths_parallel

    with pytest.raises(ModelError, match="unknown model pack"):
        next(process_paths_parallel(Settings(model="nope"), [tmp_path / "a.jpg"], workers=2))


def _install_yunet(data_dir: Path) -> None:
    """Stands in for `identity models install yunet`: the packs only look for the file under its pinned name."""
    detectors_dir(data_dir).mkdir(parents=True, exist_ok=True)
    (detectors_dir(data_dir) / YUNET.filename).write_bytes(b"an onnx file")


@pytest.mark.parametrize(
    "detector, installed, model, reason",
    [
        ("auto", True, "yunet-dlib-resnet", "YuNet is installed and faces.detector is auto"),
        ("auto", False, "dlib-resnet", "YuNet is not installed and faces.detector is auto"),
        ("yunet", True, "yunet-dlib-resnet", "faces.detector is yunet"),
        ("hog", True, "dlib-resnet", "faces.detector is hog"),
        ("cnn", False, "dlib-resnet", "faces.detector is cnn"),
    ],
)
def test_default_model_follows_the_detector_setting_and_what_is_installed(
    tmp_path: Path, detector: str, installed: bool, model: str, reason: str
) -> None:
    if installed:
        _install_yunet(tmp_path)
    chosen, why = default_model(Settings(data_dir=tmp_path, faces=FaceSettings(detector=detector)))
    assert chosen == model and why.startswith(reason)


def test_yunet_is_refused_with_the_install_hint_when_not_installed(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="run `identity models install yunet`"):
        default_model(Settings(data_dir=tmp_path, faces=FaceSettings(detector="yunet")))
    with pytest.raises(ModelError, match="run `identity models install yunet`"):
        build_pack("yunet-dlib-resnet", Settings(data_dir=tmp_path))


def test_the_dlib_pack_detects_with_hog_whatever_pack_the_detector_setting_names(tmp_path: Path) -> None:
    for detector in ("auto", "yunet"):
        pack = build_pack("dlib-resnet", Settings(data_dir=tmp_path, faces=FaceSettings(detector=detector)))
        assert pack.detector.stages[0] == ("hog", 1)
