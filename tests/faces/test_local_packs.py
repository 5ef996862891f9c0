"""Local (fine-tuned) model packs: saving versions atomically, finding them, and running them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from identity.config import Settings
from identity.errors import ModelError
from identity.faces import build_pack, build_pipeline, decode_image, list_local_packs, list_packs, load_local_pack


def test_versions_count_up_and_a_bare_name_means_the_latest_promoted(tmp_path: Path, save_stand_in) -> None:
    assert save_stand_in(tmp_path, "team-ft") == "team-ft@1"
    assert save_stand_in(tmp_path, "team-ft", promoted=False, training={"epochs": 3}) == "team-ft@2"
    assert [p.ref for p in list_local_packs(tmp_path)] == ["team-ft@1", "team-ft@2"]
    assert not [p for p in (tmp_path / "models").iterdir() if p.name.startswith(".")]  # no staging folder left
    latest = load_local_pack(tmp_path, "team-ft@2")
    assert (latest.promoted, latest.manifest["training"], latest.manifest["version"]) == (False, {"epochs": 3}, 2)
    assert latest.recognizer_path.is_file() and (latest.path / "checkpoint.pt").is_file()
    assert load_local_pack(tmp_path, "team-ft").ref == "team-ft@1"  # @2 is not promoted
    with pytest.raises(ModelError, match="no model pack team-ft@7 in .*; known: team-ft@1, team-ft@2"):
        load_local_pack(tmp_path, "team-ft@7")


def test_only_promoted_versions_are_chosen_by_name(tmp_path: Path, save_stand_in) -> None:
    save_stand_in(tmp_path, "draft", promoted=False)
    with pytest.raises(ModelError, match=r"'draft' has no promoted version \(draft@1\); name one explicitly"):
        load_local_pack(tmp_path, "draft")


def test_builtin_and_malformed_names_are_refused(tmp_path: Path, save_stand_in) -> None:
    with pytest.raises(ModelError, match="'dlib-resnet' is a built-in model pack"):
        save_stand_in(tmp_path, "dlib-resnet")
    with pytest.raises(ModelError, match="not a model pack name"):
        save_stand_in(tmp_path, "team@2")
    with pytest.raises(ModelError, match="unknown aligner 'mtcnn'"):
        save_stand_in(tmp_path, "team", aligner="mtcnn")
    assert list_local_packs(tmp_path) == []


def test_missing_or_corrupt_manifest_is_one_clear_error(tmp_path: Path, save_stand_in) -> None:
    save_stand_in(tmp_path, "team")
    manifest = tmp_path / "models" / "team@1" / "pack.json"
    manifest.write_text("{not json")
    with pytest.raises(ModelError, match=r"model pack team@1 .*pack.json is unreadable or not JSON"):
        load_local_pack(tmp_path, "team@1")
    manifest.write_text(
        json.dumps(
            {"name": "team", "version": 1, "aligner": "dlib-chip", "input_size": 150, "dim": "128", "mirror": True}
        )
    )
    with pytest.raises(ModelError, match="'dim' must be a int, got '128'"):
        load_local_pack(tmp_path, "team@1")
    manifest.unlink()
    with pytest.raises(ModelError, match="pack.json is missing"):
        load_local_pack(tmp_path, "team@1")
    assert list_local_packs(tmp_path) == []  # listing skips a broken pack instead of failing


def test_a_local_pack_runs_with_its_weights_digest_in_the_id(
    tmp_path: Path, save_stand_in, stand_in_files, one_face
) -> None:
    import io

    import torch

    save_stand_in(tmp_path, "team-ft")
    settings = Settings(data_dir=tmp_path, model="team-ft")
    pack = build_pack("team-ft", settings)
    assert pack.model_id.startswith("team-ft@1+") and len(pack.model_id) == len("team-ft@1+") + 8
    assert (pack.mirror, pack.default_threshold.far) == (True, None)  # no measured threshold in the manifest
    assert build_pack(pack.model_id, settings).model_id == pack.model_id
    with pytest.raises(ModelError, match="needs weights with digest 00000000"):
        build_pack("team-ft@1+00000000", settings)

    pipeline = build_pipeline(settings)
    buffer = io.BytesIO()
    one_face.save(buffer, format="PNG")
    [found] = pipeline.process([decode_image(buffer.getvalue(), "face.png")])
    [face] = found.faces
    assert face.crop.shape == (150, 150, 3) and face.embedding.shape == (128,)
    assert abs(float(np.linalg.norm(face.embedding)) - 1.0) < 1e-5
    # The ONNX graph gets raw 0..255 pixels, NCHW: the same as the torch net fed the crop directly.
    net = stand_in_files[2]
    with torch.inference_mode():
        expected = net(torch.from_numpy(face.crop[None].astype(np.float32)).permute(0, 3, 1, 2)).numpy()[0]
    got = pipeline.pack.recognizer.embed(face.crop[None])[0]
    assert np.allclose(got, expected, atol=1e-4)


def test_the_list_shows_local_packs_and_whether_they_are_promoted(tmp_path: Path, save_stand_in) -> None:
    save_stand_in(tmp_path, "team-ft")
    save_stand_in(tmp_path, "team-ft", promoted=False)
    rows = {i.model_id: i for i in list_packs(Settings(data_dir=tmp_path), active="team-ft")}
    assert rows["team-ft@1"].promoted is True and rows["team-ft@2"].promoted is False
    assert rows["dlib-resnet@2"].promoted is None
    assert [m for m, i in rows.items() if i.active] == ["team-ft@1"]
    with pytest.raises(ModelError, match="known packs: dlib-resnet, insightface-onnx, team-ft, torch-iresnet"):
        build_pack("nope", Settings(data_dir=tmp_path))


def test_a_recognizer_that_disagrees_with_its_manifest_is_refused(tmp_path: Path, save_stand_in) -> None:
    save_stand_in(tmp_path, "team-ft", dim=512)
    pipeline = build_pipeline(Settings(data_dir=tmp_path, model="team-ft"))
    with pytest.raises(ModelError, match="produces 128-d embeddings; its pack.json says 512"):
        pipeline.load()
