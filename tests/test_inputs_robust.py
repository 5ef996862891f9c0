"""One bad input never stops a run: file and folder names that are not UTF-8 or hold control
characters, manifest rows that loop, hold a NUL, span lines or conflict, and manifests in Latin-1."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import pytest
from test_cli import run_cli

from identity.pathnames import fs_path, path_text, shown

RAW = os.fsdecode(b"P\xff")  # a folder name that is not UTF-8 (surrogateescape, as os.listdir gives it)


@pytest.mark.parametrize("name", ["a.jpg", os.fsdecode(b"x\xff\xfe.jpg"), r"lit\xff.jpg", r"\x5c.jpg", "é\x1b.jpg"])
def test_path_text_is_utf8_and_reads_back_to_the_name_on_disk(name: str) -> None:
    text = path_text(f"/d/{name}")
    text.encode("utf-8")  # any store and terminal takes it
    assert fs_path(text) == f"/d/{name}"


def test_shown_escapes_control_characters_and_undecodable_bytes() -> None:
    assert shown("a\x1b[31mb") == "a\\x1b[31mb" and shown(os.fsdecode(b"x\xff")) == "x\\xff" and shown("é") == "é"


@pytest.fixture
def odd_names(tmp_path: Path, lfw_dir: Path) -> tuple[Path, Path]:
    """DIR/<non-UTF-8 person>/<non-UTF-8 photo> and DIR/Q/<photo>; returns (DIR, the odd photo)."""
    root = tmp_path / "d"
    odd = root / RAW / os.fsdecode(b"x\xff.jpg")
    odd.parent.mkdir(parents=True)
    (root / "Q").mkdir()
    shutil.copy(sorted((lfw_dir / "Al_Gore").iterdir())[0], odd)
    shutil.copy(sorted((lfw_dir / "Aaron_Peirsol").iterdir())[0], root / "Q" / "b.jpg")
    return root, odd


def test_names_that_are_not_utf8_are_enrolled_clustered_and_searched(
    capsys, clean_env, monkeypatch, database_url, odd_names, tmp_path
) -> None:
    # Was: UnicodeEncodeError, nothing queued.
    monkeypatch.setenv("IDENTITY_DATABASE_URL", database_url)
    root, odd = odd_names
    report = tmp_path / "report.csv"
    code, out, err = run_cli(capsys, "enroll", str(root), "-w", "1", "--json", "--report", str(report))
    assert code == 0, err
    assert json.loads(out)["counts"] == {"enrolled": 2}
    assert path_text(odd) in {row["source_path"] for row in csv.DictReader(report.open())}
    code, out, _ = run_cli(capsys, "person", "list", "--json")
    assert sorted(p["external_id"] for p in json.loads(out)) == ["P\\xff", "Q"]
    code, out, err = run_cli(capsys, "search", str(odd), "--json")
    assert code == 0, err
    [result] = json.loads(out)["results"]
    assert (
        result["image"] == path_text(odd) and result["faces"][0]["candidates"][0]["person"]["external_id"] == "P\\xff"
    )
    code, out, err = run_cli(capsys, "cluster", str(root), "--workers", "1", "--json")
    assert code == 0, err
    paths = {f["source_path"] for c in json.loads(out)["singletons"] + json.loads(out)["clusters"] for f in c["faces"]}
    assert path_text(odd) in paths


def test_control_characters_in_names_never_reach_the_terminal(capsys, clean_env, tmp_path, copy_labelled) -> None:
    root = copy_labelled(tmp_path / "d", ["Al_Gore"], 1)
    evil = root / "E\x1b[2J"
    evil.mkdir()
    (evil / "gone.jpg").symlink_to(tmp_path / "deleted.jpg")  # a failed entry: its path is printed
    (root / "Al_Gore").rename(root / "[red]Boss")  # rich markup in a name is text, not a style (or an error)
    code, out, err = run_cli(capsys, "enroll", str(root), "-w", "1")
    assert code == 5
    assert "\x1b" not in out + err and "E\\x1b[2J" in err
    code, out, err = run_cli(capsys, "person", "list")
    assert code == 0 and "[red]Boss" in out, err
    code, out, err = run_cli(capsys, "search", str(evil / "gone.jpg"))
    assert "\x1b" not in out + err and "E\\x1b[2J" in err


def test_every_manifest_error_is_its_row_with_the_right_line(
    capsys, clean_env, monkeypatch, database_url, tmp_path, copy_labelled
) -> None:
    monkeypatch.setenv("IDENTITY_DATABASE_URL", database_url)
    photos = copy_labelled(tmp_path / "photos", ["Al_Gore", "Aaron_Peirsol"], 1)
    gore, peirsol = next((photos / "Al_Gore").iterdir()), next((photos / "Aaron_Peirsol").iterdir())
    loop = tmp_path / "loop.jpg"
    loop.symlink_to(loop)
    manifest = tmp_path / "people.csv"
    manifest.write_text(
        "path,external_id,display_name,team\n"
        f'{gore},E-1,"Al\nGore",x\n'  # lines 2-3: a quoted field over two lines
        f"{loop},E-2,,\n"  # 4: a symbolic link loop (was RuntimeError, no report)
        f"{peirsol},E-3,Nul\0name,\n"  # 5: a NUL (was ValueError on Postgres)
        "\n"  # 6: blank
        ",E-4,,\n"  # 7
        f"{gore},E-5,,\n"
    )  # 8: E-1's photo: a conflict, and no E-5 person without a face
    report = tmp_path / "report.csv"
    code, out, err = run_cli(
        capsys, "enroll", "--manifest", str(manifest), "--report", str(report), "--json", "-w", "1"
    )
    assert code == 5, err
    assert json.loads(out)["counts"] == {"enrolled": 1, "failed": 3, "conflict": 1}
    rows = {r["named_by"]: r for r in csv.DictReader(report.open())}
    assert rows["people.csv:2"]["outcome"] == "enrolled"
    assert rows["people.csv:4"]["reason"] == f"people.csv:4: {loop}: symbolic link loop"
    assert rows["people.csv:5"]["reason"] == "people.csv:5: column display_name contains a NUL character"
    assert rows["people.csv:7"]["reason"] == "people.csv:7: path is empty"
    assert rows["people.csv:8"]["outcome"] == "conflict"
    code, out, _ = run_cli(capsys, "person", "list", "--json")
    assert [(p["external_id"], p["display_name"]) for p in json.loads(out)] == [("E-1", "Al\nGore")]


def test_a_latin1_manifest_is_read_with_a_warning(capsys, clean_env, tmp_path, copy_labelled) -> None:
    photos = copy_labelled(tmp_path / "photos", ["Al_Gore"], 1)
    manifest = tmp_path / "latin.csv"
    manifest.write_bytes(
        f"path,external_id,display_name\n{next((photos / 'Al_Gore').iterdir())},E-1,José\n".encode("latin-1")
    )
    code, out, err = run_cli(capsys, "enroll", "--manifest", str(manifest), "--json", "-w", "1")
    assert code == 0, err  # was: a bare UnicodeDecodeError, no file name
    assert f"warning: {manifest}: not UTF-8 (line 2: byte 0xe9); read as Windows-1252" in err
    code, out, _ = run_cli(capsys, "person", "show", "E-1", "--json")
    assert json.loads(out)["display_name"] == "José"


def test_person_images_with_a_loop_and_a_name_that_is_not_utf8(capsys, clean_env, odd_names, tmp_path) -> None:
    _, odd = odd_names
    loop = tmp_path / "loop.jpg"
    loop.symlink_to(loop)
    report = tmp_path / "report.csv"
    code, out, err = run_cli(
        capsys, "enroll", "--person", "E-1", str(loop), str(odd), "-w", "1", "--json", "--report", str(report)
    )
    assert code == 5, err  # was: RuntimeError (the loop), UnicodeEncodeError (the name); nothing queued
    assert json.loads(out)["counts"] == {"enrolled": 1, "failed": 1}
    rows = {r["source_path"]: r for r in csv.DictReader(report.open())}
    assert rows[str(loop)]["reason"] == "symbolic link loop" and rows[path_text(odd)]["outcome"] == "enrolled"
