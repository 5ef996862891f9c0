"""`identity faces detect` and `identity models ...` through the real root command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from identity.errors import ExitCode
from identity_cli.main import main


@pytest.fixture(autouse=True)
def wide_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tables as on a wide terminal, so cells are not wrapped mid-word."""
    from identity_cli import output

    monkeypatch.setattr(output.console, "width", 300)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, " ".join(err.split())  # error lines are wrapped to the terminal too


def test_detect_json_and_crops(capsys, clean_env, t1_path: Path, tmp_path: Path) -> None:
    crops = tmp_path / "crops"
    code, out, _ = run(capsys, "faces", "detect", str(t1_path), "--json", "--crops", str(crops))
    assert code == ExitCode.OK
    [report] = json.loads(out)
    assert report["model"] == "dlib-resnet@2" and len(report["faces"]) == 6
    face = report["faces"][0]
    assert set(face) >= {
        "bbox",
        "landmarks",
        "det_score",
        "iod_px",
        "blur",
        "yaw_deg",
        "roll_deg",
        "rejections",
        "ok",
        "crop",
    }
    written = sorted(crops.glob("*.png"))
    assert len(written) == 6 and Image.open(written[0]).size == (150, 150)


def test_detect_table_then_no_face_exit_code(capsys, clean_env, one_face: Image.Image, tmp_path: Path) -> None:
    face, blank = tmp_path / "face.png", tmp_path / "blank.png"
    one_face.save(face)
    Image.new("RGB", (120, 90), (128, 128, 128)).save(blank)
    code, out, err = run(capsys, "faces", "detect", str(face), str(blank))
    assert code == ExitCode.NO_FACE
    assert "face.png" in out and "ok" in out  # the good image is still reported
    assert f"no face found in {blank}" in err


def test_detect_unreadable_image_exit_code(capsys, clean_env, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"")
    code, _, err = run(capsys, "faces", "detect", str(bad))
    assert code == ExitCode.ERROR
    assert "empty file" in err and "Traceback" not in err


def test_models_list_table(capsys, clean_env) -> None:
    code, out, _ = run(capsys, "models", "list")
    assert code == ExitCode.OK
    assert "dlib-resnet@2" in out and "torch-iresnet@1" in out


def test_models_list_marks_the_configured_model(capsys, clean_env, monkeypatch) -> None:
    monkeypatch.setenv("IDENTITY_MODEL", "dlib-resnet@1")
    code, out, _ = run(capsys, "models", "list", "--json")
    assert code == ExitCode.OK
    assert [r["model_id"] for r in json.loads(out)["packs"] if r["active"]] == ["dlib-resnet@1"]


def test_export_onnx_reports_a_missing_checkpoint(capsys, clean_env, tmp_path: Path) -> None:
    code, _, err = run(capsys, "models", "export-onnx", str(tmp_path / "none.pth"), str(tmp_path / "out.onnx"))
    assert code == ExitCode.ERROR
    assert "does not exist" in err
