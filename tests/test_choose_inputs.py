"""choose_inputs: the one rule, for the CLI and HTTP alike, of what an enrollment request enrolls."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from identity.services.enrollment.inputs import UnclearInputs, choose_inputs


@pytest.fixture
def folder(tmp_path: Path, lfw_dir: Path) -> Path:
    root = tmp_path / "people"
    for person in ("Al_Gore", "Aaron_Peirsol"):
        (root / person).mkdir(parents=True)
        shutil.copy(lfw_dir / person / f"{person}_0001.jpg", root / person)
    return root


def test_one_folder_of_person_folders_or_files_of_one_person(folder: Path) -> None:
    by_folder = choose_inputs([folder])
    assert sorted(spec.external_id for spec in by_folder.specs) == ["Aaron_Peirsol", "Al_Gore"]
    photos = sorted(folder.glob("*/*.jpg"))
    by_person = choose_inputs(photos, person="someone", display_name="Some One")
    assert {(spec.external_id, spec.display_name) for spec in by_person.specs} == {("someone", "Some One")}
    assert len(by_person.specs) == 2


@pytest.mark.parametrize(
    "case",
    [
        "two folders",
        "a file alone",
        "a person without files",
        "nothing",
        "manifest and person",
        "person-from with a person",
    ],
)
def test_anything_else_is_unclear(case: str, folder: Path, tmp_path: Path) -> None:
    photo = next(folder.glob("*/*.jpg"))
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,external_id\n")
    calls = {
        "two folders": lambda: choose_inputs([folder, folder / "Al_Gore"]),
        "a file alone": lambda: choose_inputs([photo]),
        "a person without files": lambda: choose_inputs([], person="someone"),
        "nothing": lambda: choose_inputs([]),
        "manifest and person": lambda: choose_inputs([photo], person="someone", manifest=manifest),
        "person-from with a person": lambda: choose_inputs([photo], person="someone", person_from="leaf"),
    }
    with pytest.raises(UnclearInputs):
        calls[case]()
