"""Damaged and full stores (issue 21 items 4, 5, 10): every case ends in one line with what to run
(exit 4, the error as JSON under --json), and `doctor --repair` rebuilds from SQL and the photos.

The damage is real: bytes of a stored vector overwritten in the Edge shard's vector chunk, the chunk
file removed, the shard directory deleted, the SQLite file truncated or overwritten, the disk filled
on a small tmpfs (skipped where mounting one is not permitted).
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from identity.config import Settings
from identity.errors import NoSpace
from identity.store.vectors import open_vector_index
from identity.store.vectors.space import FILE_KINDS, GROWTH_STEP, MARGIN, check_space, required_bytes, unallocated_bytes
from identity_cli.main import main

MODEL = "dlib-resnet@2"
MB = 1024 * 1024
LFW_DIR = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "lfw-dev"  # conftest's, for a module fixture


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def photo(lfw_dir: Path, person: str, index: int = 0) -> str:
    return str(sorted((lfw_dir / person).iterdir())[index])


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two persons, two photos each, enrolled once for the module into a SQLite + Edge data dir."""
    if not LFW_DIR.is_dir():
        pytest.skip(f"lfw-dev not found at {LFW_DIR}")
    root = tmp_path_factory.mktemp("prepared")
    data = root / "data"
    with pytest.MonkeyPatch.context() as patch:
        for key in [k for k in os.environ if k.startswith("IDENTITY_")]:
            patch.delenv(key)
        patch.setenv("IDENTITY_DATA_DIR", str(data))
        for name in ("Al_Gore", "Aaron_Peirsol"):
            (root / "photos" / name).mkdir(parents=True)
            copies = [shutil.copy(photo(LFW_DIR, name, i), root / "photos" / name) for i in (0, 1)]
            assert main(["enroll", "--person", name, *map(str, copies), "--workers", "1"]) == 0
    return data


@pytest.fixture
def enrolled(prepared: Path, clean_env: dict[str, str]) -> Iterator[Path]:
    """The prepared store, moved to this test's data dir (a moved data dir keeps its binding; a copy beside
    the original would be refused), and a pristine copy put back in its place afterwards."""
    data = Path(clean_env["IDENTITY_DATA_DIR"])
    pristine = prepared.with_name("pristine")
    subprocess.run(["cp", "-a", "--sparse=always", str(prepared), str(pristine)], check=True)
    shutil.move(prepared, data)
    try:
        yield data
    finally:
        os.rename(pristine, prepared)


def faces_shard(data: Path) -> Path:
    [shard] = [Path(p) for p in glob.glob(str(data / "vectors" / "faces_*")) if ".damaged-" not in p]
    return shard


def repair(capsys: pytest.CaptureFixture[str]) -> dict:
    """`doctor --repair --json`'s report, after which a plain `doctor` must find nothing (whatever exit code
    the repair itself gives for what it found)."""
    code, out, err = run_cli(capsys, "doctor", "--repair", "--json")
    assert code in (0, 1) and "Traceback" not in err, err
    code, after, err = run_cli(capsys, "doctor", "--json")
    assert code == 0 and json.loads(after)["clean"], (err, after)
    return json.loads(out)


def assert_one_line_error(code: int, out: str, err: str, *needles: str) -> dict:
    assert code == 4, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    error = json.loads(out)
    assert error["exit_code"] == 4
    for needle in needles:
        assert needle in error["error"], (needle, error["error"])
    return error


# --- item 5: damaged vector bytes --------------------------------------------------------------


def overwrite_vector(data: Path, person_id: str) -> uuid.UUID:
    """Find one of the person's stored face vectors as float32 bytes in the shard's vector chunk and overwrite
    its first values; returns the face id."""
    with open_vector_index(Settings.load(), MODEL, 128) as index:
        faces = sorted(face for face, person in index.iter_ids() if str(person) == person_id)
        vectors = index.vectors(faces)
    [chunk] = glob.glob(str(faces_shard(data) / "segments/*/vector_storage/vectors/chunk_0.mmap"))
    content = bytearray(Path(chunk).read_bytes())
    at = content.find(np.asarray(vectors[faces[0]], dtype=np.float32).tobytes())
    assert at >= 0, "the vector's bytes are not in the chunk"
    content[at : at + 16] = np.full(4, 3e18, dtype=np.float32).tobytes()
    Path(chunk).write_bytes(bytes(content))
    return faces[0]


def test_damaged_vector_bytes_are_refused_found_by_doctor_and_re_embedded(
    capsys, enrolled: Path, lfw_dir: Path
) -> None:
    name = "Al_Gore"
    person_id = json.loads(run_cli(capsys, "person", "show", name, "--json")[1])["id"]
    overwrite_vector(enrolled, person_id)

    # search: a score no cosine can have is a store error naming the deep repair, not a 1e+36 candidate
    code, out, err = run_cli(capsys, "search", photo(lfw_dir, name), "--json")
    error = assert_one_line_error(code, out, err, "identity doctor --deep --repair")
    assert error["error_type"] == "StoreDamaged"

    # the next enrollment of that person stops on the damaged vector instead of writing a bad template
    code, out, err = run_cli(capsys, "enroll", "--person", name, photo(lfw_dir, name, 2), "--workers", "1", "--json")
    assert code == 4 and "identity doctor --deep --repair" in err, err

    code, out, _ = run_cli(capsys, "doctor", "--deep", "--json")
    found = json.loads(out)
    assert code == 1 and not found["clean"]
    assert found["integrity"]["damaged_vectors"] == 1 and found["integrity"]["deep"]

    fixed = repair(capsys)
    assert fixed["integrity"]["damaged_vectors"] == 0 and fixed["templates"] == 0
    assert fixed["repaired"]["faces_reenrolled"] >= 1

    code, out, err = run_cli(capsys, "search", photo(lfw_dir, name), "--json")
    assert code == 0, err
    [face] = json.loads(out)["results"][0]["faces"]
    assert face["candidates"][0]["person"]["external_id"] == name
    assert all(-1 <= c["score"] <= 1 for c in face["candidates"])


# --- item 10: damaged stores --------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["chunk removed", "config unreadable"])
def test_unreadable_shard_is_exit_4_and_doctor_repair_rebuilds_it(
    capsys, enrolled: Path, lfw_dir: Path, damage: str
) -> None:
    if damage == "chunk removed":  # the engine opens the shard, then cannot read a vector
        for chunk in glob.glob(str(faces_shard(enrolled) / "segments/*/vector_storage/vectors/chunk_0.mmap")):
            os.remove(chunk)
    else:  # the engine cannot open the shard at all
        (faces_shard(enrolled) / "edge_config.json").write_text("junk")
    code, out, err = run_cli(capsys, "search", photo(lfw_dir, "Al_Gore"), "--json")
    assert_one_line_error(code, out, err, str(faces_shard(enrolled)), "identity doctor --repair", "sets it aside")

    report = repair(capsys)
    assert report["integrity"]["rebuilt_shards"] == [str(faces_shard(enrolled))]
    assert not glob.glob(str(enrolled / "vectors" / "*.damaged-*"))  # the damaged bytes are gone with the repair
    assert report["repaired"]["faces_reenrolled"] == 4 and report["missing_vectors"] == 0

    code, out, err = run_cli(capsys, "search", photo(lfw_dir, "Al_Gore"), "--json")
    assert code == 0, err
    result = json.loads(out)["results"][0]
    assert result["faces"][0]["candidates"][0]["person"]["external_id"] == "Al_Gore"
    assert not [w for w in result["warnings"] if "vector store holds" in w]


def test_a_rebuild_that_cannot_enroll_every_face_keeps_the_damaged_shard(
    capsys, prepared: Path, enrolled: Path
) -> None:
    for chunk in glob.glob(str(faces_shard(enrolled) / "segments/*/vector_storage/vectors/chunk_0.mmap")):
        os.remove(chunk)
    source = sorted((prepared.parent / "photos" / "Al_Gore").glob("*.jpg"))[0]
    parked = source.with_suffix(".parked")
    source.rename(parked)  # the photo of one face is gone: that face cannot come back
    try:
        code, out, err = run_cli(capsys, "doctor", "--repair", "--json")
    finally:
        parked.rename(source)
    report = json.loads(out)
    assert report["repaired"]["faces_not_reenrolled"] == 1 and report["repaired"]["faces_reenrolled"] == 3
    [kept] = glob.glob(str(enrolled / "vectors" / "faces_*.damaged-*"))
    assert f"kept as {faces_shard(enrolled)}.damaged-*" in " ".join(err.split())


def test_deleted_faces_shard_makes_search_warn_and_doctor_repair_rebuilds_it(
    capsys, enrolled: Path, lfw_dir: Path
) -> None:
    shutil.rmtree(faces_shard(enrolled))
    code, out, err = run_cli(capsys, "search", photo(lfw_dir, "Al_Gore"), "--json")
    assert code == 0, err
    [warning] = [w for w in json.loads(out)["results"][0]["warnings"] if "vector store holds 0" in w]
    assert "4 indexed faces" in warning and "identity doctor --repair" in warning
    assert f"warning: {warning}" in " ".join(err.split())

    assert repair(capsys)["repaired"]["faces_reenrolled"] == 4
    code, out, err = run_cli(capsys, "search", photo(lfw_dir, "Al_Gore"), "--json")
    assert code == 0 and "vector store holds" not in out


@pytest.mark.parametrize("damage", ["truncated", "overwritten"])
def test_damaged_sqlite_file_is_exit_4_with_advice(capsys, enrolled: Path, lfw_dir: Path, damage: str) -> None:
    database = enrolled / "identity.db"
    if damage == "truncated":
        os.truncate(database, database.stat().st_size // 4)
    else:
        with open(database, "r+b") as handle:
            handle.write(b"this is no database header")
    for args in (["search", photo(lfw_dir, "Al_Gore")], ["doctor", "--repair"], ["person", "list"]):
        code, out, err = run_cli(capsys, *args, "--json")
        error = assert_one_line_error(code, out, err, str(database), "is damaged", "restore it from a backup")
        assert error["error_type"] == "StoreDamaged"


# --- item 4: disk space -----------------------------------------------------------------------


def test_space_arithmetic_counts_what_sparse_files_may_still_claim(tmp_path: Path) -> None:
    store = tmp_path / "vectors"
    (store / "shard" / "wal").mkdir(parents=True)
    sparse = store / "shard" / "wal" / "open-1"
    with open(sparse, "wb") as handle:
        handle.truncate(10 * MB)  # a 10 MB hole
        handle.write(b"x" * 4096)  # one page on disk
        handle.flush()
        os.fsync(handle.fileno())
    (store / "shard.damaged-20260101T000000").mkdir()
    with open(store / "shard.damaged-20260101T000000" / "chunk", "wb") as handle:
        handle.truncate(100 * MB)  # set aside by doctor: never written again, not counted
    allocated = sparse.stat().st_blocks * 512
    assert unallocated_bytes(store) == 10 * MB - allocated
    assert required_bytes(unallocated_bytes(store)) == 10 * MB - allocated + len(FILE_KINDS) * GROWTH_STEP + MARGIN
    assert required_bytes(0) == 3 * 32 * MB + MARGIN

    free = shutil.disk_usage(tmp_path).free
    with open(sparse, "r+b") as handle:
        handle.truncate(free + 1024 * MB)  # claims more than the disk has
    with pytest.raises(NoSpace) as caught:
        check_space(store)
    assert str(store) in caught.value.message and "MB free" in caught.value.message
    assert caught.value.details["needed_bytes"] > caught.value.details["free_bytes"]


def test_preallocation_gives_the_sparse_files_their_blocks(
    capsys, enrolled: Path, lfw_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert unallocated_bytes(enrolled / "vectors") > 100 * MB  # sparse, as the engine leaves them
    monkeypatch.setenv("IDENTITY_VECTORS__PREALLOCATE", "true")
    code, _, err = run_cli(capsys, "search", photo(lfw_dir, "Al_Gore"), "--json")
    assert code == 0, err
    assert unallocated_bytes(enrolled / "vectors") == 0  # a later write within them cannot fault


@pytest.fixture
def tmpfs(tmp_path: Path):
    """tmpfs(size): a tmpfs of that size (e.g. "48m"), where mounting one is permitted (root); skipped elsewhere."""
    mounts: list[Path] = []

    def mount(size: str) -> Path:
        point = tmp_path / f"tmpfs{len(mounts)}"
        point.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
        mounts.append(point)
        return point

    yield mount
    for point in mounts:
        subprocess.run(["umount", "-l", str(point)], check=False)


def move_store(data: Path, target: Path) -> dict[str, str]:
    """Move the data dir to `target` keeping its files sparse (a moved data dir keeps its binding)."""
    subprocess.run(["cp", "-a", "--sparse=always", str(data), str(target)], check=True)
    shutil.rmtree(data)
    return {**os.environ, "IDENTITY_DATA_DIR": str(target)}


def test_almost_full_disk_is_one_line_exit_4_not_sigbus(enrolled: Path, lfw_dir: Path, tmpfs) -> None:
    moved = tmpfs("48m") / "data"
    env = move_store(enrolled, moved)
    exe = Path(sys.executable).with_name("identity")
    for args in (
        ["search", photo(lfw_dir, "Al_Gore")],
        ["enroll", "--person", "Al_Gore", photo(lfw_dir, "Al_Gore", 2)],
    ):
        done = subprocess.run([str(exe), *args, "--json"], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 4, (done.returncode, done.stderr[-500:])  # was -7: SIGBUS
        error = assert_one_line_error(
            done.returncode, done.stdout, done.stderr, str(moved / "vectors"), "MB free", "MB needed"
        )
        assert error["error_type"] == "NoSpace" and error["free_bytes"] < error["needed_bytes"]


FILL_THEN_ENROLL = """
import shutil, subprocess, sys
from identity.config import Settings
from identity.app.core import open_deployment
from identity.services.enrollment.writer import EnrollmentWriter
from identity.services.queue.loop import process_queue, queue_jobs
from identity.store.sql.jobs import JobSpec

data, filler, photos = sys.argv[1], sys.argv[2], sys.argv[3:]
with open_deployment(Settings.load()) as dep:  # opened with room to spare; then the disk fills up
    free = shutil.disk_usage(data).free
    subprocess.run(["fallocate", "-l", str(free - 8 * 1024 * 1024), filler], check=True)
    batch, _ = queue_jobs(dep.app, [JobSpec(p, "Zoe") for p in photos])
    process_queue(dep.app, EnrollmentWriter(dep), batch, 1)
"""


def test_disk_filling_during_a_run_stops_the_chunk_with_no_space(enrolled: Path, lfw_dir: Path, tmpfs) -> None:
    mount = tmpfs("512m")
    env = move_store(enrolled, mount / "data")
    photos = [photo(lfw_dir, "Al_Gore", 2), photo(lfw_dir, "Aaron_Peirsol", 2)]
    done = subprocess.run(
        [sys.executable, "-c", FILL_THEN_ENROLL, str(mount / "data"), str(mount / "filler"), *photos],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 1 and "NoSpace: not enough free disk space" in done.stderr, (
        done.returncode,
        done.stderr[-800:],
    )
    os.remove(mount / "filler")
    exe = Path(sys.executable).with_name("identity")
    doctor = subprocess.run([str(exe), "doctor", "--json"], env=env, capture_output=True, text=True, timeout=120)
    assert doctor.returncode == 0 and json.loads(doctor.stdout)["clean"], doctor.stdout  # nothing half-written
