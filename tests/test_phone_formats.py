"""Phone photos (HEIC from iPhones, AVIF) are enrolled, searched and shown like JPEGs; a corrupt one is
that file's error and the rest of the batch goes on."""

from __future__ import annotations

import base64
import csv
import io
import json
from pathlib import Path

import pytest
from PIL import Image
from test_cli import run_cli

from identity.api.ui import _photo


def convert(source: Path, target: Path, fmt: str) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    Image.open(source).save(target, fmt, quality=90)
    return target


@pytest.fixture
def phone_photos(tmp_path: Path, lfw_dir: Path) -> Path:
    """Two persons' lfw-dev photos as HEIC and AVIF, and a HEIC cut short in the middle."""
    root = tmp_path / "phone"
    gore = sorted((lfw_dir / "Al_Gore").iterdir())
    convert(gore[0], root / "Al_Gore" / "IMG_0001.HEIC", "HEIF")
    convert(gore[1], root / "Al_Gore" / "IMG_0002.avif", "AVIF")
    convert(sorted((lfw_dir / "Aaron_Peirsol").iterdir())[0], root / "Aaron_Peirsol" / "IMG_0003.heic", "HEIF")
    whole = convert(gore[2], root / "Al_Gore" / "IMG_0004.heic", "HEIF").read_bytes()
    (root / "Al_Gore" / "IMG_0004.heic").write_bytes(whole[: len(whole) // 2])
    return root


def test_enroll_a_folder_of_phone_photos_with_one_corrupt_heic(capsys, clean_env, tmp_path, phone_photos) -> None:
    report = tmp_path / "report.csv"
    code, out, err = run_cli(capsys, "enroll", str(phone_photos), "-w", "1", "--report", str(report), "--json")
    assert json.loads(out)["counts"] == {"enrolled": 3, "failed": 1}, err
    rows = {Path(row["source_path"]).name: row for row in csv.DictReader(report.open())}
    assert (rows["IMG_0004.heic"]["outcome"], rows["IMG_0004.heic"]["reason"][:20]) == (
        "failed",
        "corrupt or truncated",
    )
    assert "\n" not in rows["IMG_0004.heic"]["reason"]
    assert code != 0  # a failed file is a failed run, as for a broken JPEG

    code, out, err = run_cli(capsys, "search", str(phone_photos / "Al_Gore" / "IMG_0002.avif"), "--json")
    assert code == 0, err
    [result] = json.loads(out)["results"]
    assert result["faces"][0]["candidates"][0]["person"]["external_id"] == "Al_Gore"


def test_the_ui_shows_an_uploaded_heic_as_an_upright_jpeg(tmp_path: Path) -> None:
    stored = Image.new("RGB", (40, 60), (40, 40, 40))  # sideways: upright it is 60 wide, 40 high
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "upload.heic"
    stored.save(path, "HEIF", exif=exif.tobytes())
    photo = _photo(path, [[10.0, 5.0, 30.0, 35.0]])
    assert photo.uri.startswith("data:image/jpeg;base64,")
    shown = Image.open(io.BytesIO(base64.b64decode(photo.uri.split(",", 1)[1])))
    assert (shown.format, shown.size, photo.width, photo.height) == ("JPEG", (60, 40), 60, 40)
    assert len(photo.crops) == 1 and photo.crops[0].startswith("data:image/jpeg;base64,")  # cut from the upright photo
