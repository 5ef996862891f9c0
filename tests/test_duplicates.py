"""Duplicates are normal in archives: identical files are clustered, enrolled and searched once,
and reported as duplicates of the first path."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from test_cli import run_cli


@pytest.fixture
def archive(tmp_path: Path, copy_labelled) -> tuple[Path, Path, Path]:
    """Two persons' photos, one of them twice in its person's folder; returns (root, first, copy)."""
    root = copy_labelled(tmp_path / "archive", ["Al_Gore", "Aaron_Peirsol"], 1)
    first = next((root / "Al_Gore").iterdir())
    copy = first.with_name("zz_copy.jpg")  # sorts after the first
    shutil.copy(first, copy)
    return root, first, copy


def test_cluster_of_a_folder_with_copies_clusters_each_photo_once(
    capsys, clean_env, monkeypatch, database_url, archive
) -> None:
    # Was: IntegrityError (UNIQUE constraint failed: face_clusters.id), exit 1, after all the detection.
    monkeypatch.setenv("IDENTITY_DATABASE_URL", database_url)
    root, first, copy = archive
    code, out, err = run_cli(capsys, "cluster", str(root), "--workers", "1", "--json")
    assert code == 0, err
    run = json.loads(out)
    assert run["duplicates"] == [{"path": str(copy), "duplicate_of": str(first)}]
    assert run["photos"] == 2 and run["faces"] == 2
    ids = [c["cluster_id"] for c in run["clusters"] + run["singletons"]]
    assert len(ids) == len(set(ids)) == 2
    assert str(copy) not in {f["source_path"] for c in run["clusters"] + run["singletons"] for f in c["faces"]}
    code, out, err = run_cli(capsys, "cluster", str(root), "--workers", "1")  # again: same ids, copy named
    assert code == 0, err
    assert f"duplicate: {copy}: same file as {first}" in err
    code, out, _ = run_cli(capsys, "cluster", "list", "--min-size", "1", "--json")
    assert sorted(c["cluster_id"] for c in json.loads(out)) == sorted(ids)


def test_enroll_and_search_take_a_copy_once(capsys, clean_env, archive) -> None:
    root, first, copy = archive
    other = root / "Zed" / "gore.jpg"  # the same bytes under another person: a conflict
    other.parent.mkdir()
    shutil.copy(first, other)
    code, out, err = run_cli(capsys, "enroll", str(root), "-w", "1", "--json")
    assert code == 5, err  # the conflict
    run = json.loads(out)
    assert run["counts"] == {"enrolled": 2, "duplicate": 1, "conflict": 1}
    assert run["duplicates"] == [
        {"path": str(copy), "duplicate_of": str(first)},
        {"path": str(other), "duplicate_of": str(first)},
    ]
    code, out, _ = run_cli(capsys, "person", "list", "--json")
    assert sorted(p["external_id"] for p in json.loads(out)) == ["Aaron_Peirsol", "Al_Gore"]  # no Zed without a face
    code, out, err = run_cli(capsys, "search", str(first), str(copy), "--json")
    assert code == 0, err
    shown = json.loads(out)
    assert [r["image"] for r in shown["results"]] == [str(first)]
    assert shown["duplicates"] == [{"path": str(copy), "duplicate_of": str(first)}]
    code, out, _ = run_cli(capsys, "searches", "list", "--json")
    assert len(json.loads(out)) == 1  # logged once
