"""What enrollment takes in: every entry under DIR accounted for, nested archives refused
until the user says which folder names a person, bad manifest rows failing alone, the
report path checked first, the subject rule for photos with several faces, and persons
whose faces disagree flagged."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import pytest

from identity.errors import IdentityError
from identity.services.enrollment.inputs import PersonFrom, from_directory

LONG_ID = "x" * 500


def t1_photo() -> Path:
    """insightface's sample photo with six faces."""
    import insightface

    return Path(insightface.__file__).parent / "data" / "images" / "t1.jpg"


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    from identity_cli.main import main

    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def report_rows(path: Path) -> dict[str, dict[str, str]]:
    return {Path(r["source_path"]).name: r for r in csv.DictReader(path.open())}


@pytest.fixture
def odd_archive(tmp_path: Path, copy_labelled) -> Path:
    """One real photo, then every kind of entry a shared drive holds besides photos."""
    root = copy_labelled(tmp_path / "archive", ["Al_Gore"], 1)
    person = root / "Al_Gore"
    (person / "notes.txt").write_text("not an image")
    (person / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0 not a photo")
    (person / ".DS_Store").write_bytes(b"\0")
    (person / "gone.jpg").symlink_to(tmp_path / "deleted.jpg")  # dangling
    (person / "self.jpg").symlink_to(person / "self.jpg")  # a link to itself
    (person / "null.jpg").symlink_to("/dev/null")  # a device
    os.mkfifo(person / "pipe.jpg")
    (person / "again").symlink_to(person)  # a folder link looping back
    (root / "loose.jpg").write_bytes((next(person.glob("*_0001.jpg"))).read_bytes())  # not in a person folder
    return root


def test_every_entry_under_dir_has_a_state_and_a_reason(odd_archive: Path) -> None:
    inputs = from_directory(odd_archive)
    assert [Path(s.source_path).name for s in inputs.specs] == ["Al_Gore_0001.jpg"]
    rows = {Path(r.source_path).name: (r.outcome, r.reason) for r in inputs.unqueued}
    assert rows == {
        "notes.txt": ("skipped", "not an image file"),
        "Thumbs.db": ("skipped", "not an image file"),
        ".DS_Store": ("skipped", "hidden"),
        "gone.jpg": ("failed", f"broken symbolic link (to {odd_archive.parent / 'deleted.jpg'})"),
        "self.jpg": ("failed", "symbolic link loop"),
        "null.jpg": ("skipped", "not a regular file (device)"),
        "pipe.jpg": ("skipped", "not a regular file (FIFO)"),
        "again": ("failed", "folder link loops back to a folder above it"),
        "loose.jpg": ("skipped", "not inside a person folder (--person-from top)"),
    }
    assert {
        r.external_id for r in inputs.unqueued if r.source_path.endswith(".jpg") and "loose" not in r.source_path
    } == {"Al_Gore"}


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a chmod 000 folder anyway")
def test_an_unreadable_person_folder_fails_by_name(tmp_path: Path, copy_labelled) -> None:
    root = copy_labelled(tmp_path / "archive", ["Al_Gore", "Aaron_Peirsol"], 1)
    (root / "Aaron_Peirsol").chmod(0)
    try:
        inputs = from_directory(root)
    finally:
        (root / "Aaron_Peirsol").chmod(0o755)
    [row] = inputs.unqueued
    assert (row.external_id, row.outcome, row.reason) == (
        "Aaron_Peirsol",
        "failed",
        "cannot read folder (Permission denied)",
    )


def test_cli_reports_every_entry_with_the_folder_that_named_its_person(
    capsys, clean_env, odd_archive, tmp_path
) -> None:
    report = tmp_path / "report.csv"
    code, out, _ = run_cli(capsys, "enroll", str(odd_archive), "--report", str(report), "--json", "--workers", "1")
    assert code == 5  # the broken links failed; the skipped files alone would not
    counts = json.loads(out)["counts"]
    assert counts == {"enrolled": 1, "skipped": 6, "failed": 3}
    rows = report_rows(report)
    assert len(rows) == 10
    assert list(next(csv.reader(report.open()))) == [
        "job_id",
        "source_path",
        "external_id",
        "outcome",
        "reason",
        "faces_found",
        "named_by",
        "flags",
    ]
    assert (rows["Al_Gore_0001.jpg"]["outcome"], rows["Al_Gore_0001.jpg"]["named_by"]) == ("enrolled", "Al_Gore")
    assert (rows["pipe.jpg"]["outcome"], rows["pipe.jpg"]["job_id"], rows["pipe.jpg"]["named_by"]) == (
        "skipped",
        "",
        "Al_Gore",
    )


@pytest.fixture
def nested(tmp_path: Path, copy_labelled) -> Path:
    """archive/DEPT/PERSON/photo: two departments, two people each, one photo each."""
    root = tmp_path / "archive"
    copy_labelled(root / "eng", ["Al_Gore", "Aaron_Peirsol"], 1)
    copy_labelled(root / "ops", ["Alejandro_Toledo", "Tony_Blair"], 1)
    return root


def test_nested_archive_is_refused_naming_the_layouts(capsys, clean_env, nested: Path) -> None:
    code, _, err = run_cli(capsys, "enroll", str(nested))
    assert code == 1
    assert "person folders hold sub-folders with images" in err and "--person-from" in err
    assert len(err.strip().splitlines()) == 1
    assert not Path(clean_env["IDENTITY_DATA_DIR"]).exists()  # refused before the store was opened


def test_person_from_leaf_depth_and_top(nested: Path) -> None:
    persons = {
        PersonFrom.parse(rule): sorted({s.external_id for s in from_directory(nested, PersonFrom.parse(rule))})
        for rule in ("leaf", "depth:2", "depth 2", "top")
    }
    people = ["Aaron_Peirsol", "Al_Gore", "Alejandro_Toledo", "Tony_Blair"]
    assert persons[PersonFrom(leaf=True)] == people and persons[PersonFrom(depth=2)] == people
    assert persons[PersonFrom()] == ["eng", "ops"]  # asked for: PERSON/2019/photo stays one person
    named = from_directory(nested, PersonFrom(leaf=True)).named_by
    assert sorted(named.values()) == ["eng/Aaron_Peirsol", "eng/Al_Gore", "ops/Alejandro_Toledo", "ops/Tony_Blair"]
    deeper = from_directory(nested, PersonFrom(depth=3))
    assert not deeper.specs and {r.reason for r in deeper.unqueued} == {
        "not inside a person folder (--person-from depth:3)"
    }
    with pytest.raises(IdentityError, match="depth:N"):
        PersonFrom.parse("middle")


def test_cli_person_from_leaf_names_persons_by_their_own_folder(capsys, clean_env, nested, tmp_path) -> None:
    report = tmp_path / "report.csv"
    code, out, _ = run_cli(
        capsys, "enroll", str(nested), "--person-from", "leaf", "--report", str(report), "--json", "--workers", "1"
    )
    assert code == 0 and json.loads(out)["counts"] == {"enrolled": 4}
    assert {r["external_id"]: r["named_by"] for r in report_rows(report).values()} == {
        "Al_Gore": "eng/Al_Gore",
        "Aaron_Peirsol": "eng/Aaron_Peirsol",
        "Alejandro_Toledo": "ops/Alejandro_Toledo",
        "Tony_Blair": "ops/Tony_Blair",
    }


def test_manifest_row_with_too_long_an_id_fails_alone(
    capsys, clean_env, monkeypatch, database_url, tmp_path, copy_labelled
) -> None:
    monkeypatch.setenv("IDENTITY_DATABASE_URL", database_url)
    photos = copy_labelled(tmp_path / "photos", ["Al_Gore", "Aaron_Peirsol"], 1)
    manifest = tmp_path / "people.csv"
    gore, peirsol = sorted((photos / "Al_Gore").iterdir())[0], sorted((photos / "Aaron_Peirsol").iterdir())[0]
    manifest.write_text(f"path,external_id\n{gore},E-1\n{peirsol},{LONG_ID}\n,E-3\n")
    report = tmp_path / "report.csv"
    code, out, _ = run_cli(capsys, "enroll", "--manifest", str(manifest), "--report", str(report), "--json", "-w", "1")
    assert code == 5 and json.loads(out)["counts"] == {"enrolled": 1, "failed": 2}
    rows = list(csv.DictReader(report.open()))
    failed = sorted((r["named_by"], r["reason"]) for r in rows if r["outcome"] == "failed")
    assert failed == [
        ("people.csv:3", "people.csv:3: external id is 500 characters, more than the 255 allowed"),
        ("people.csv:4", "people.csv:4: path is empty"),
    ]
    code, out, _ = run_cli(capsys, "person", "list", "--json")
    assert [p["external_id"] for p in json.loads(out)] == ["E-1"]


def test_one_id_rule_for_person_and_person_add(capsys, clean_env, tmp_path, copy_labelled) -> None:
    photo = sorted((copy_labelled(tmp_path / "p", ["Al_Gore"], 1) / "Al_Gore").iterdir())[0]
    for args in (["enroll", "--person", LONG_ID, str(photo)], ["person", "add", "--external-id", LONG_ID]):
        code, _, err = run_cli(capsys, *args)
        assert code == 1 and "external id is 500 characters, more than the 255 allowed" in err


def test_person_with_a_missing_image_fails_that_file_only(capsys, clean_env, tmp_path, copy_labelled) -> None:
    photo = sorted((copy_labelled(tmp_path / "p", ["Al_Gore"], 1) / "Al_Gore").iterdir())[0]
    report = tmp_path / "report.csv"
    code, _, _ = run_cli(
        capsys,
        "enroll",
        "--person",
        "E-7",
        str(photo),
        str(tmp_path / "missing.jpg"),
        "--report",
        str(report),
        "--json",
        "-w",
        "1",
    )
    assert code == 5
    rows = report_rows(report)
    assert rows[photo.name]["outcome"] == "enrolled" and rows[photo.name]["named_by"] == "--person"
    assert (rows["missing.jpg"]["outcome"], rows["missing.jpg"]["reason"]) == ("failed", "no such file")


def test_report_path_is_checked_before_any_work(capsys, clean_env, tmp_path, copy_labelled) -> None:
    root = copy_labelled(tmp_path / "photos", ["Al_Gore"], 1)
    code, _, err = run_cli(capsys, "enroll", str(root), "--report", "/no/such/dir/r.csv")
    assert code == 1 and "/no/such/dir/r.csv: cannot write the report there: no folder /no/such/dir" in err
    assert not Path(clean_env["IDENTITY_DATA_DIR"]).exists()  # nothing enrolled, no store even created


@pytest.fixture(scope="module")
def six_faces():
    from identity.config import Settings
    from identity.faces import build_pipeline, load_image

    return build_pipeline(Settings(workers=1)).process([load_image(t1_photo())])[0]


def test_subject_rules_on_a_photo_with_six_faces(six_faces) -> None:
    from identity.evaluation.protocol import subject_face
    from identity.services.enrollment.writer import choose_faces

    assert len(six_faces.faces) == 6
    assert choose_faces(six_faces, "dominant", 2.0) == ([], "multiple_faces")  # today's rule, the default
    assert choose_faces(six_faces, "reject", 2.0) == ([], "multiple_faces")
    assert choose_faces(six_faces, "central", 2.0) == ([subject_face(six_faces)], None)
    assert choose_faces(six_faces, "all", 2.0) == (list(six_faces.faces), None)
    one = type(six_faces)(**{**six_faces.__dict__, "faces": six_faces.faces[:1]})
    assert choose_faces(one, "reject", 2.0) == ([six_faces.faces[0]], None)


def test_dominant_leaves_out_faces_the_frame_cuts_unless_the_largest_is_cut_too(six_faces) -> None:
    """A portrait with a bystander's half face at its edge (what YuNet finds and HOG did not) enrolls its subject."""
    import dataclasses

    from identity.services.enrollment.writer import choose_faces

    subject = six_faces.faces[0]
    x1, y1, x2, y2 = subject.bbox
    side = x2 - x1
    bystander = dataclasses.replace(subject, bbox=(-6.0, y1, side * 0.9 - 6, y2))  # about as large, run off the left
    photo = dataclasses.replace(six_faces, faces=(subject, bystander))
    assert choose_faces(photo, "dominant", 2.0) == ([subject], None)
    whole = dataclasses.replace(bystander, bbox=(10.0, y1, 10 + side * 0.9, y2))
    assert choose_faces(dataclasses.replace(photo, faces=(subject, whole)), "dominant", 2.0) == ([], "multiple_faces")
    cut_subject = dataclasses.replace(subject, bbox=(x1, -3.0, x2, y2 - y1 - 3))  # as large, run off the top
    assert choose_faces(dataclasses.replace(photo, faces=(cut_subject, bystander)), "dominant", 2.0) == (
        [],
        "multiple_faces",
    )  # both cut: nothing tells the subject apart


def test_cli_subject_central_enrolls_the_photo_default_rejects_it(capsys, clean_env, tmp_path) -> None:
    root = tmp_path / "group"
    (root / "Team").mkdir(parents=True)
    shutil.copy(t1_photo(), root / "Team" / "t1.jpg")
    code, out, _ = run_cli(capsys, "enroll", str(root), "--json", "-w", "1")
    assert code == 0 and json.loads(out)["counts"] == {"rejected": 1}
    (root / "Team" / "t1.jpg").unlink()
    (root / "Team" / "t1_central.jpg").write_bytes(t1_photo().read_bytes() + b"\0")  # other bytes, same picture
    code, out, _ = run_cli(capsys, "enroll", str(root), "--subject", "central", "--json", "-w", "1")
    assert code == 0 and json.loads(out)["counts"] == {"enrolled": 1}
    (root / "Team" / "t1_central.jpg").rename(tmp_path / "elsewhere.jpg")
    (root / "Crowd").mkdir()
    (root / "Crowd" / "t1_all.jpg").write_bytes(t1_photo().read_bytes() + b"\0\0")
    code, out, _ = run_cli(capsys, "enroll", str(root), "--subject", "all", "--json", "-w", "1")
    assert code == 0 and json.loads(out)["counts"] == {"enrolled": 1}
    code, out, _ = run_cli(capsys, "person", "list", "--json")
    faces = {p["external_id"]: p["faces"] for p in json.loads(out)}
    assert faces["Team"] == 1 and 2 <= faces["Crowd"] <= 6  # every face of the photo that passes the gate
    code, _, err = run_cli(capsys, "enroll", str(root), "--subject", "largest")
    assert code == 2 and "--subject 'largest': expected one of dominant" in err


def test_folder_mixing_people_is_flagged_a_real_person_is_not(capsys, clean_env, tmp_path, copy_labelled) -> None:
    root = copy_labelled(tmp_path / "photos", ["Tony_Blair"], 3)
    mixed = root / "Mixed"
    mixed.mkdir()
    for person in ("Al_Gore", "Aaron_Peirsol", "Alejandro_Toledo"):
        photo = sorted((copy_labelled(tmp_path / "src" / person, [person], 1) / person).iterdir())[0]
        shutil.copy(photo, mixed / photo.name)
    report = tmp_path / "report.csv"
    code, out, err = run_cli(capsys, "enroll", str(root), "--report", str(report), "--json", "-w", "1")
    assert code == 0  # a warning, not a failure
    [flagged] = json.loads(out)["inconsistent_persons"]
    assert (flagged["external_id"], flagged["faces"]) == ("Mixed", 3) and flagged["agreeing_pairs_share"] < 1 / 3
    flags = {r["external_id"]: r["flags"] for r in csv.DictReader(report.open())}
    assert flags["Mixed"].startswith("inconsistent_person:") and flags["Tony_Blair"] == ""
    code, out, _ = run_cli(capsys, "doctor", "--json")
    assert code == 0 and [p["external_id"] for p in json.loads(out)["inconsistent_persons"]] == ["Mixed"]
