"""Erasure is a durable intent: stopped at any step, it is finished by the next `person delete` or by
`doctor --repair`, and then no byte of the person is left; the person's kept unknown faces, cluster
members and searches of their photos go with them; their external id cannot be enrolled meanwhile.

The enrolled store is prepared once (SQLite + Edge, unknown faces kept): before X is enrolled,
one of X's photos, another photo of X and a stranger's are searched (kept as unknown) and
clustered; X is then enrolled from three photos (one in uploads/, as the HTTP API stores them)
beside a kept person. Each case restores that data dir at the same path and stops the erasure
at one step (the step function raising, or `chattr +i` on the vectors directory).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_erasure import rows_containing

from identity.app.core import open_deployment
from identity.config import ReviewSettings, Settings
from identity.services.clustering.clusters import cluster_searches
from identity.services.curation import erasure
from identity.services.enrollment.writer import EnrollmentWriter
from identity.services.queue.loop import process_queue, queue_jobs
from identity.services.search.identify import SearchOptions, search_image
from identity.store.sql import jobs
from identity.store.sql.faces import face_keys_of_person
from identity.store.sql.persons import person_by_external_id
from identity.store.sql.tables import ClusterMember, SearchEvent, UnknownFace
from identity_cli.main import main

PERSON, NAME = "Erase_Me", "Erase Me"
SOURCE, OTHER, STRANGER = "Alejandro_Toledo", "Al_Gore", "Tony_Blair"


@dataclass
class Prepared:
    root: Path  # holds data/ (the live data dir, restored per case) and master/ (the prepared copy)
    photos: list[Path]  # X's enrolled photos (the last one under uploads/)
    probe: Path  # another photo of X, searched before X was enrolled
    vectors: list[np.ndarray]  # X's face vectors, template and kept unknown faces
    ids: list[uuid.UUID]  # X's person id, face ids, kept unknown face ids
    stranger_unknown: uuid.UUID  # the stranger's kept face: not X's, it stays

    @property
    def data(self) -> Path:
        return self.root / "data"

    def strings(self) -> list[str]:
        digests = [hashlib.sha256(p.read_bytes()).hexdigest() for p in [*self.photos[:2], self.probe]]
        return [PERSON, NAME, *map(str, self.photos), str(self.probe), *digests]

    def restore(self) -> None:
        shutil.rmtree(self.data, ignore_errors=True)
        _copy(self.root / "master", self.data)


def _copy(source: Path, target: Path) -> None:
    """Copy keeping the Edge files sparse (gigabytes apparent, kilobytes used)."""
    subprocess.run(["cp", "-a", "--sparse=always", str(source), str(target)], check=True)


def settings_for(data: Path, database_url: str | None = None) -> Settings:
    return Settings(data_dir=data, database_url=database_url, workers=1, review=ReviewSettings(keep_unknown_faces=True))


def prepare(root: Path, lfw_dir: Path, database_url: str | None = None) -> Prepared:
    """X searched (kept as unknown) and clustered, then enrolled beside a kept person; what X left, noted."""
    photos_dir, data = root / "photos_of_Erase_Me", root / "data"
    photos_dir.mkdir(parents=True)
    sources = sorted((lfw_dir / SOURCE).iterdir())
    photos = [photos_dir / f"Erase_Me_secret_{n}.jpg" for n in range(2)] + [data / "uploads" / "Erase_Me_up.jpg"]
    photos[2].parent.mkdir(parents=True)
    for source, path in zip(sources, photos):
        shutil.copy(source, path)
    probe = root / "who_is_Erase_Me.jpg"
    shutil.copy(sources[5], probe)
    stranger = root / "stranger.jpg"
    shutil.copy(sorted((lfw_dir / STRANGER).iterdir())[0], stranger)
    kept = [jobs.JobSpec(str(p), OTHER) for p in sorted((lfw_dir / OTHER).iterdir())[:2]]
    with open_deployment(settings_for(data, database_url)) as dep:
        process_queue(dep.app, EnrollmentWriter(dep), queue_jobs(dep.app, kept)[0], 1)
        for photo in (photos[0], probe, stranger):  # X unknown yet: kept
            assert search_image(dep.app, str(photo), SearchOptions(top_k=1)).faces[0].decision == "unknown"
        assert cluster_searches(dep.app).faces == 3
        batch, _ = queue_jobs(dep.app, [jobs.JobSpec(str(p), PERSON, NAME) for p in photos])
        assert process_queue(dep.app, EnrollmentWriter(dep), batch, 1).counts == {"enrolled": 3}
        assert search_image(dep.app, str(probe), SearchOptions()).faces[0].best.person.external_id == PERSON
        return _noted(dep, root, photos, probe)


def _noted(dep: Any, root: Path, photos: list[Path], probe: Path) -> Prepared:
    with dep.app.sessions() as session:
        unknown = {row.source_path: row.id for row in session.query(UnknownFace)}
        person_id = person_by_external_id(session, PERSON).id
        face_ids = [row.id for row in face_keys_of_person(session, person_id)]
    mine = [unknown[str(photos[0])], unknown[str(probe)]]
    vectors = [
        *dep.index.vectors(face_ids).values(),
        dep.templates.vectors([person_id])[person_id],
        *dep.unknown_faces().vectors(mine).values(),
    ]
    assert len(vectors) == 6
    return Prepared(root, photos, probe, vectors, [person_id, *face_ids, *mine], unknown[str(root / "stranger.jpg")])


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory, lfw_dir: Path) -> Prepared:
    # `from conftest import ...` would find tests/faces/conftest.py in a whole-suite run: the fixture instead
    root = tmp_path_factory.mktemp("durable")
    ready = prepare(root, lfw_dir)
    _copy(ready.data, root / "master")
    return ready


@pytest.fixture
def live(prepared: Prepared, monkeypatch: pytest.MonkeyPatch) -> Prepared:
    """The prepared store restored, and the CLI pointed at it."""
    for key in list(os.environ):
        if key.startswith("IDENTITY_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("IDENTITY_DATA_DIR", str(prepared.data))
    monkeypatch.setenv("IDENTITY_WORKERS", "1")
    monkeypatch.setenv("IDENTITY_REVIEW__KEEP_UNKNOWN_FACES", "true")
    prepared.restore()
    return prepared


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any]:
    code = main(list(args))
    out = capsys.readouterr().out
    return code, json.loads(out) if "--json" in args and out.strip() else out


def fail(*_: object) -> dict[str, Any]:
    """A step stopped by the disk (what a kill at that step leaves is the same: the step not recorded as done)."""
    raise OSError(28, "No space left on device")


@pytest.fixture
def immutable_vectors(live: Prepared):
    """`chattr +i` on the vectors directory: a purge cannot create its rebuilt shard beside the old one."""
    vectors = live.data / "vectors"
    if subprocess.run(["chattr", "+i", str(vectors)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not permitted here")
    yield
    subprocess.run(["chattr", "-i", str(vectors)], check=True)


STEPS = ["sql", "vectors", "uploads", "forgotten", "complete"]
STEP_FUNCTIONS = {
    "sql": "_apply_sql",
    "vectors": "_apply_vectors",
    "uploads": "_apply_uploads",
    "forgotten": "_forget",
    "complete": "_complete",
}


@pytest.mark.parametrize("step", STEPS)
def test_an_erasure_stopped_at_a_step_is_finished_by_the_next_delete_or_doctor(
    step: str, live: Prepared, capsys, monkeypatch, find_traces
) -> None:
    with monkeypatch.context() as patch:
        patch.setattr(erasure, STEP_FUNCTIONS[step], fail)
        stopped(capsys, step)
    if STEPS.index(step) % 2:
        finish_with_doctor(capsys, settings_for(live.data))
    else:
        finish_with_delete(capsys, step)
    assert_no_trace(live, capsys, find_traces)


def test_a_purge_refused_by_the_filesystem_leaves_the_erasure_pending_until_delete_again(
    live: Prepared, capsys, immutable_vectors, find_traces
) -> None:
    stopped(capsys, "vectors", reason="Permission")
    subprocess.run(["chattr", "-i", str(live.data / "vectors")], check=True)
    finish_with_delete(capsys, "vectors")
    assert_no_trace(live, capsys, find_traces)


def test_enrolling_or_adding_an_external_id_whose_erasure_is_pending_is_refused(
    live: Prepared, capsys, monkeypatch
) -> None:
    with monkeypatch.context() as patch:
        patch.setattr(erasure, "_apply_vectors", fail)
        stopped(capsys, "vectors")
    code, refused = cli(capsys, "enroll", "--person", PERSON, str(live.probe), "--json")
    assert code == 4 and "pending" in refused["error"] and f"identity person delete {PERSON}" in refused["error"]
    code, refused = cli(capsys, "person", "add", "--external-id", PERSON, "--json")
    assert code == 4 and refused["error_type"] == "ErasurePending"
    assert cli(capsys, "person", "delete", PERSON, "--json")[1]["completed_pending"] is True
    code, enrolled = cli(capsys, "enroll", "--person", PERSON, str(live.probe), "--json")
    assert code == 0, enrolled


def test_unknown_faces_cluster_members_and_searches_of_the_persons_photos_go_with_them(live: Prepared, capsys) -> None:
    code, erased = cli(capsys, "person", "delete", PERSON, "--json")
    assert code == 0 and "completed_pending" not in erased
    sql = erased["removed"]["sql"]
    assert sql["unknown_faces"] == 2  # one by its photo (an enrolled one), one by its vector (the probe)
    assert sql["cluster_members"] >= 2 and sql["search_events_redacted_by_photo"] == 2
    unknown = [name for name in erased["removed"]["vectors"] if name.startswith("unknown_")]
    assert len(unknown) == 1 and erased["removed"]["vectors"][unknown[0]]["points_kept"] == 1
    assert erased["removed"]["uploaded_files"] == 1 and not live.photos[2].exists()
    with open_deployment(settings_for(live.data)) as dep:
        with dep.app.sessions() as session:
            assert [row.id for row in session.query(UnknownFace)] == [live.stranger_unknown]  # the stranger stays
            members = session.query(ClusterMember).all()
            searched = [e.query_name for e in session.query(SearchEvent)]
    assert all(m.unknown_face_id == live.stranger_unknown for m in members)
    assert str(live.probe) not in searched and str(live.photos[0]) not in searched


def test_postgres_erasure_stopped_at_the_vector_step_is_finished(
    tmp_path: Path, lfw_dir: Path, postgres_url: str, capsys, monkeypatch, find_traces
) -> None:
    ready = prepare(tmp_path, lfw_dir, postgres_url)
    monkeypatch.setenv("IDENTITY_DATA_DIR", str(ready.data))
    monkeypatch.setenv("IDENTITY_DATABASE_URL", postgres_url)
    monkeypatch.setenv("IDENTITY_REVIEW__KEEP_UNKNOWN_FACES", "true")
    with monkeypatch.context() as patch:
        patch.setattr(erasure, "_apply_vectors", fail)
        stopped(capsys, "vectors")
    finish_with_doctor(capsys, settings_for(ready.data, postgres_url))
    assert find_traces(ready.data, vectors=ready.vectors, ids=ready.ids, strings=ready.strings()) == {}
    needles = [*ready.strings(), *map(str, ready.ids)]
    assert rows_containing(postgres_url, needles) == []


def stopped(capsys, step: str, reason: str = "No space left") -> None:
    """`person delete` fails at `step`: exit 4, a JSON error naming the pending erasure and how to finish it."""
    code, error = cli(capsys, "person", "delete", PERSON, "--json")
    assert code == 4 and error["error_type"] == "ErasurePending" and error["step"] == step, error
    assert reason in error["error"] and f"identity person delete {PERSON}" in error["error"]
    assert "identity doctor --repair" in error["error"]
    code, report = cli(capsys, "doctor", "--json")
    assert report["pending_erasures"] == 1 and report["clean"] is False


def finish_with_delete(capsys, step: str) -> None:
    code, done = cli(capsys, "person", "delete", PERSON, "--json")
    assert code == 0 and done["completed_pending"] is True, done
    if STEPS.index(step) <= STEPS.index("uploads"):
        assert done["deleted"] == PERSON  # the plan still named them
    code, again = cli(capsys, "person", "delete", PERSON, "--json")
    assert code == 0 and again["already_deleted"] is True


def finish_with_doctor(capsys, settings: Settings) -> None:
    from identity.services.maintenance.doctor import diagnose, repair

    with open_deployment(settings) as dep:
        report = diagnose(dep.app, deep=True)
        repair(dep.app, report)  # finishes the erasure, then looks again before repairing the rest
    assert report.repaired["erasures_completed"] == 1 and report.pending_erasures == 0, report
    assert report.integrity.deep  # that second look read every vector back, as asked, not a sample
    code, again = cli(capsys, "person", "delete", PERSON, "--json")
    assert code == 0 and again["already_deleted"] is True
    code, again = cli(capsys, "person", "delete", PERSON, "--json")
    assert code == 0 and again["already_deleted"] is True


def assert_no_trace(live: Prepared, capsys, find_traces) -> None:
    code, report = cli(capsys, "doctor", "--json")
    assert report["pending_erasures"] == 0 and report["clean"] is True, report
    assert find_traces(live.data, vectors=live.vectors, ids=live.ids, strings=live.strings()) == {}
    assert not live.photos[2].exists()  # the copy under uploads/ (a photo holds no telltale the scan would see)


def test_a_worker_round_finishes_a_pending_erasure(live: Prepared, capsys, monkeypatch, find_traces) -> None:
    from identity.app.core import App
    from identity.services.queue.worker import run_worker

    with monkeypatch.context() as patch:
        patch.setattr(erasure, "_apply_uploads", fail)
        stopped(capsys, "uploads")
    with App.open(settings_for(live.data)) as app:
        run_worker(app, drain=True, poll=0.1)
    assert cli(capsys, "person", "delete", PERSON, "--json")[1]["already_deleted"] is True
    assert_no_trace(live, capsys, find_traces)


KILLED_AT_VECTORS = """
import os, signal, sys
from identity.services.curation import erasure
erasure._apply_vectors = lambda *args: os.kill(os.getpid(), signal.SIGKILL)
from identity_cli.main import main
sys.exit(main(["person", "delete", sys.argv[1], "--json"]))
"""


def test_a_delete_killed_after_its_sql_step_is_finished_by_the_next(live: Prepared, capsys, find_traces) -> None:
    killed = subprocess.run([sys.executable, "-c", KILLED_AT_VECTORS, PERSON], capture_output=True, timeout=120)
    assert killed.returncode == -9
    code, report = cli(capsys, "doctor", "--json")
    assert report["pending_erasures"] == 1 and report["orphan_vectors"] == 3  # the rows went, the vectors not yet
    finish_with_delete(capsys, "vectors")
    assert_no_trace(live, capsys, find_traces)
