"""`identity finetune`: CosFace fine-tuning of the dlib ResNet port on a small labelled folder cut from lfw-dev."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from identity.config import Settings
from identity_cli.main import main

PEOPLE = [
    "Al_Gore",
    "Aaron_Peirsol",
    "Alejandro_Toledo",
    "Andre_Agassi",
    "Hans_Blix",
    "Vicente_Fox",
    "Ali_Naimi",
    "Amelie_Mauresmo",
    "Anna_Kournikova",
    "Adam_Sandler",
]


@pytest.fixture
def labelled(tmp_path: Path, copy_labelled) -> Path:
    root = copy_labelled(tmp_path / "labelled", PEOPLE, 4)
    return root


@pytest.fixture(scope="module")
def t1_faces_crops() -> np.ndarray:
    """The six face chips of insightface's sample photo, cut by the default pack."""
    import insightface

    from identity.faces import build_pipeline, load_image

    path = Path(insightface.__file__).parent / "data" / "images" / "t1.jpg"
    [found] = build_pipeline(Settings(model="dlib-resnet@2")).process([load_image(path)])
    return np.stack([face.crop for face in found.faces])


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_head_mode_forced_saves_a_promoted_pack_that_embeds_like_its_base(
    capsys, clean_env, labelled, t1_faces_crops
) -> None:
    code, out, err = run(
        capsys, "finetune", str(labelled), "--mode", "head", "--epochs", "1", "--force", "--workers", "1", "--json"
    )
    assert code == 0, err
    report = json.loads(out)
    assert report["train_persons"] + report["val_persons"] == len(PEOPLE)
    assert report["train_faces"] + report["val_faces"] == 4 * len(PEOPLE)
    assert 0 < report["before"]["rank1"] <= 1 and report["epochs"][0]["epoch"] == 0
    assert report["promoted"] is True and report["saved"] == "dlib-resnet-ft@1"
    pack = Path(clean_env["IDENTITY_DATA_DIR"]) / "models" / "dlib-resnet-ft@1"
    manifest = json.loads((pack / "pack.json").read_text())
    assert manifest["promoted"] is True and manifest["base"] == "dlib-resnet@2"
    assert manifest["threshold"]["far"] == 1e-3

    from identity.faces import build_pipeline

    base = build_pipeline(Settings(model="dlib-resnet@2")).embed_crops(t1_faces_crops)
    tuned = build_pipeline(Settings(data_dir=Path(clean_env["IDENTITY_DATA_DIR"]), model="dlib-resnet-ft@1"))
    assert tuned.model_id.startswith("dlib-resnet-ft@1+")
    embeddings = tuned.embed_crops(t1_faces_crops)
    # One epoch of a head that starts as the identity: close to the base, and far from noise (a broken export).
    assert np.allclose(np.linalg.norm(embeddings, axis=1), 1, atol=1e-5)
    assert (embeddings * base).sum(1).min() > 0.8


def test_a_model_that_does_not_beat_its_base_is_neither_saved_nor_promoted(capsys, clean_env, labelled) -> None:
    code, out, err = run(
        capsys, "finetune", str(labelled), "--mode", "head", "--epochs", "1", "--lr", "3", "--workers", "1", "--json"
    )
    assert code == 0, err
    report = json.loads(out)
    assert report["after"]["rank1"] <= report["before"]["rank1"]
    assert report["promoted"] is False and report["saved"] is None and report["better"] is False
    assert not (Path(clean_env["IDENTITY_DATA_DIR"]) / "models").exists()
    code, out, err = run(
        capsys, "finetune", str(labelled), "--mode", "head", "--epochs", "1", "--lr", "3", "--workers", "1"
    )
    assert code == 0 and "not saved: no epoch beat the starting model" in out


def test_full_mode_moves_the_backbone_and_reports_each_epoch(labelled) -> None:
    import torch

    from identity.faces.dlib_torch import load_dlib_resnet
    from identity.train.data import collect_chips, folder_faces
    from identity.train.finetune import FULL, TrainOptions, train
    from identity.train.validation import split_by_person

    settings = Settings(data_dir=labelled.parent / "data")
    chips = collect_chips(settings, folder_faces(labelled), 1, lambda n: None)
    split = split_by_person(chips.labels, 0.2, 7)
    steps: list[float] = []
    epochs: list[dict[str, float]] = []

    def stage(name: str, total: int):
        if name.startswith("epochs"):
            return lambda n, **fields: epochs.append(fields)
        return lambda n, **fields: steps.append(fields["loss"]) if "loss" in fields else None

    result = train(
        load_dlib_resnet(),
        chips.chips,
        chips.labels,
        split,
        TrainOptions(mode=FULL, epochs=2, lr=1e-4, patience=5),
        stage,
    )
    assert [e.epoch for e in result.epochs] == [0, 1, 2]
    assert len(steps) == 2 * int(np.ceil(len(split.train) / 32)) and all(np.isfinite(steps))
    # The run's bar shows validation rank-1 before training and loss plus rank-1 after each epoch.
    assert [sorted(fields) for fields in epochs] == [["val_rank1", "val_tar"]] + [["loss", "val_rank1", "val_tar"]] * 2
    assert epochs[2]["val_rank1"] == result.epochs[2].figures.rank1
    original = load_dlib_resnet()
    moved = max(
        float((a - b).detach().abs().max()) for a, b in zip(result.model.backbone.parameters(), original.parameters())
    )
    assert moved > 1e-5
    with torch.inference_mode():
        assert result.model(torch.zeros(1, 3, 150, 150)).shape == (1, 128)


def test_finetune_reads_the_enrolled_people_by_default(capsys, clean_env, labelled) -> None:
    code, _, err = run(capsys, "enroll", str(labelled), "--workers", "1")
    assert code in (0, 5), err
    code, out, err = run(capsys, "finetune", "--mode", "head", "--epochs", "1", "--workers", "1", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["source"] == "enrolled faces (dlib-resnet@2)"
    assert report["train_persons"] + report["val_persons"] == len(PEOPLE)
    assert report["train_faces"] + report["val_faces"] >= 3 * len(PEOPLE)


def test_too_few_people_is_a_clear_error(capsys, clean_env, labelled) -> None:
    for person in PEOPLE[3:]:
        shutil.rmtree(labelled / person)
    code, _, err = run(capsys, "finetune", str(labelled), "--workers", "1")
    assert code == 1
    [line] = [line for line in err.splitlines() if line.startswith("error:")]
    assert line.endswith("labelled: 3 persons with a usable face; fine-tuning needs at least 4")


def test_a_torch_iresnet_checkpoint_is_the_other_starting_point(
    capsys, clean_env, labelled, monkeypatch, tmp_path
) -> None:
    """Random weights stand in for a glint360k checkpoint: the code path, not accuracy."""
    import torch

    from identity.faces import build_pipeline, load_image
    from identity.faces.iresnet import build_iresnet

    torch.manual_seed(0)
    checkpoint = tmp_path / "r18.pth"
    torch.save(build_iresnet("r18").state_dict(), checkpoint)
    monkeypatch.setenv("IDENTITY_MODEL", "torch-iresnet")
    monkeypatch.setenv("IDENTITY_FACES__TORCH_CHECKPOINT", str(checkpoint))
    monkeypatch.setenv("IDENTITY_FACES__TORCH_ARCH", "r18")
    code, out, err = run(
        capsys, "finetune", str(labelled), "--mode", "head", "--epochs", "1", "--force", "--workers", "1", "--json"
    )
    assert code == 0, err
    report = json.loads(out)
    assert report["base_model"].startswith("torch-iresnet@1+") and report["saved"] == "torch-iresnet-ft@1"
    data_dir = Path(clean_env["IDENTITY_DATA_DIR"])
    manifest = json.loads((data_dir / "models" / "torch-iresnet-ft@1" / "pack.json").read_text())
    assert (manifest["aligner"], manifest["input_size"], manifest["dim"], manifest["mirror"]) == (
        "arcface-112",
        112,
        512,
        False,
    )
    tuned = build_pipeline(Settings(data_dir=data_dir, model="torch-iresnet-ft@1"))
    [found] = tuned.process(
        [load_image(labelled / "Al_Gore" / sorted(p.name for p in (labelled / "Al_Gore").iterdir())[0])]
    )
    assert found.faces and found.faces[0].crop.shape == (112, 112, 3) and found.faces[0].embedding.shape == (512,)


def test_a_pack_without_trainable_weights_is_refused_before_any_work(
    capsys, clean_env, labelled, monkeypatch, tmp_path
) -> None:
    recognizer = tmp_path / "arcface.onnx"
    recognizer.write_bytes(b"an ONNX graph cannot be trained")  # refused before anything reads it
    monkeypatch.setenv("IDENTITY_MODEL", "insightface-onnx")
    monkeypatch.setenv("IDENTITY_FACES__ONNX_RECOGNIZER", str(recognizer))
    code, _, err = run(capsys, "finetune", str(labelled))
    assert code == 1
    assert "cannot be fine-tuned: start from dlib-resnet" in err and "cutting face chips" not in err
